"""Checks a `safeedit train --lora-rank` output against PEFT: applies DIR/adapter to the base
GGUF model with `PeftModel.from_pretrained`, merges it, and compares (1) every merged weight with
DIR/model.safetensors and (2) the adapter model's logits with DIR loaded as a plain transformers
model. Usage: "$(scripts/bench/reference-venv.sh)" scripts/bench/peft_check.py BASE.gguf DIR."""

import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main() -> None:
    gguf, trained = sys.argv[1], sys.argv[2]
    folder, name = os.path.split(os.path.abspath(gguf))
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314, 1345, 30]])
    peft = PeftModel.from_pretrained(base, os.path.join(trained, "adapter"))
    with torch.no_grad():
        adapter_logits = peft(ids).logits
    merged = peft.merge_and_unload().state_dict()
    ours = load_file(os.path.join(trained, "model.safetensors"))
    weight_diff = max((merged[k] - v).abs().max().item() for k, v in ours.items() if k in merged)
    plain = AutoModelForCausalLM.from_pretrained(trained, dtype=torch.float32)
    with torch.no_grad():
        logit_diff = (adapter_logits - plain(ids).logits).abs().max().item()
    compared = sum(k in merged for k in ours)
    print(f"tensors compared {compared}, largest weight difference {weight_diff:.2e}, "
          f"largest logit difference (PEFT adapter on base vs merged dir) {logit_diff:.2e}")


if __name__ == "__main__":
    main()
