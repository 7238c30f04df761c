"""The PyTorch side of `safeedit bench edit`: DINM's locate + 10-step edit on the default model
with the reference implementation of scripts/fixtures/make_dinm_reference.py (full forward per
step, as EasyEdit), same instances, same thread count. Prints one JSON object."""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from make_dinm_reference import edit, locate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--instances", required=True, help="comma-separated ids")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    records = {r["id"]: r for r in json.load(open(args.data))}
    rows = []
    for i in map(int, args.instances.split(",")):
        r = records[i]
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            loc = locate(model, tok, r["safe generation"], r["unsafe generation"], "right")
            t1 = time.perf_counter()
            e = edit(model, tok, r, loc["layer"], greedy_tokens=0)
            runs.append((t1 - t0, e["tune_seconds"]))
        rows.append({
            "instance": i, "layer": loc["layer"], "edit_tokens": len(e["edit_ids"]),
            "locate_s": statistics.median(a for a, _ in runs),
            "tune_s": statistics.median(b for _, b in runs),
        })
    print(json.dumps({"backend": f"pytorch {torch.__version__} (CPU, float32, sdpa)",
                      "threads": torch.get_num_threads(), "instances": rows}, indent=2))


if __name__ == "__main__":
    main()
