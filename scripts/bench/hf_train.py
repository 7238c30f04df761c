"""The PyTorch side of `safeedit bench train`: the same SFT or DPO optimiser steps on the same
token ids, in the same order, with the reference repository's update (per-pair backward of
loss / batch, global-norm clip 10, torch.optim.RMSprop), on the same GGUF dequantised to f32 by
transformers. Reads the file `safeedit bench train --examples-out` wrote; prints one JSON object
with the step times, the losses (to compare with ours) and the peak resident memory."""

import argparse
import json
import os
import resource
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM


def response_logps(model, prompt, responses, pad_id):
    """Sum of log p(response_t | prompt, response_<t) per response, right-padded in one batch."""
    rows = [prompt + r for r in responses]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    logits = model(input_ids=ids, attention_mask=mask).logits
    p = len(prompt)
    longest = max(len(r) for r in responses)
    logits = logits[:, p - 1 : p - 1 + longest]
    targets = torch.tensor([r + [0] * (longest - len(r)) for r in responses])
    keep = torch.tensor([[1.0] * len(r) + [0.0] * (longest - len(r)) for r in responses])
    logp = torch.log_softmax(logits.float(), dim=-1).gather(2, targets.unsqueeze(2)).squeeze(2)
    return (logp * keep).sum(dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--examples", required=True, help="written by safeedit bench train --examples-out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    spec = json.load(open(args.examples))
    config, examples = spec["config"], spec["examples"]
    objective, batch = spec["objective"], config["batch_size"]
    order, pad_id = spec["order"], spec["pad_id"]
    folder, name = os.path.split(os.path.abspath(args.gguf))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.train()
    # No dropout in this family; train() only matters for modules that have it.
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.RMSprop(params, lr=config["lr"])

    reference_s = None
    reference = spec["reference_logps"]
    if objective == "dpo":
        t0 = time.perf_counter()
        with torch.no_grad():
            mine = [response_logps(model, e["prompt"], [e["chosen"], e["rejected"]], pad_id).tolist()
                    for e in examples]
        reference_s = time.perf_counter() - t0
        # Ours computed them on the same weights: they must agree closely.
        worst = max(abs(a - b) for m, r in zip(mine, reference) for a, b in zip(m, r))
        reference = mine
    steps = []
    n_steps = len(order) // batch
    for step in range(n_steps):
        t0 = time.perf_counter()
        indices = order[step * batch : (step + 1) * batch]
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for i in indices:
            e = examples[i]
            if objective == "sft":
                loss = -response_logps(model, e["prompt"], [e["chosen"]], pad_id)[0]
            else:
                logps = response_logps(model, e["prompt"], [e["chosen"], e["rejected"]], pad_id)
                ref_c, ref_r = reference[i]
                margin = (logps[0] - logps[1]) - (ref_c - ref_r)
                loss = -F.logsigmoid(config["beta"] * margin)
            total += loss.item()
            (loss / len(indices)).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, config["max_grad_norm"]).item()
        for group in opt.param_groups:
            group["lr"] = config["lr"] * min(1.0, (step + 1) / (config["warmup_steps"] + 1))
        opt.step()
        steps.append({"seconds": time.perf_counter() - t0, "loss": total / len(indices), "grad_norm": norm})

    timed = steps[1:]
    tok = 0
    for i in order[batch:]:
        e = examples[i]
        tok += (len(e["prompt"]) + len(e["chosen"]) if objective == "sft"
                else 2 * (len(e["prompt"]) + max(len(e["chosen"]), len(e["rejected"]))))
    seconds = sum(s["seconds"] for s in timed)
    out = {
        "backend": f"pytorch {torch.__version__} (CPU, float32, sdpa)",
        "threads": torch.get_num_threads(),
        "objective": objective,
        "batch_size": batch,
        "timed_steps": len(timed),
        "reference_logps_s": reference_s,
        "seconds_per_step": seconds / len(timed),
        "seconds_per_pair": seconds / (len(timed) * batch),
        "tokens_per_s": tok / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "steps": timed,
    }
    if objective == "dpo":
        out["reference_logps_max_abs_diff"] = worst
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
