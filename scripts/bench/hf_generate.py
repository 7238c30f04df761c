"""The PyTorch side of `safeedit bench generate`: same GGUF model (dequantised to f32 by
transformers), same prompt, same thread count. Prints one JSON object with the same fields."""

import argparse
import json
import os
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    text = open(args.prompt_file).read().rstrip()
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])

    runs = []
    with torch.inference_mode():
        for i in range(args.repeat + 1):
            t0 = time.perf_counter()
            model(ids, logits_to_keep=1)  # prefill: the last position's logits, as the engine
            t1 = time.perf_counter()
            g0 = time.perf_counter()
            out = model.generate(
                ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                do_sample=False, pad_token_id=tok.eos_token_id,
            )
            g1 = time.perf_counter()
            assert out.shape[1] - ids.shape[1] == args.new_tokens
            prefill_s = t1 - t0
            # generate() = one prefill + (new_tokens - 1) decode steps.
            decode_s = max((g1 - g0) - prefill_s, 1e-9)
            if i > 0:
                runs.append({"prefill_s": prefill_s, "decode_s": decode_s, "total_s": g1 - g0})

    n = ids.shape[1]
    report = {
        "model": args.gguf,
        "backend": f"pytorch {torch.__version__} (CPU, float32, sdpa)",
        "threads": torch.get_num_threads(),
        "prompt_tokens": n,
        "new_tokens": args.new_tokens,
        "repeat": args.repeat,
        "prefill_tokens_per_s": statistics.median(n / r["prefill_s"] for r in runs),
        "decode_tokens_per_s": statistics.median((args.new_tokens - 1) / r["decode_s"] for r in runs),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
