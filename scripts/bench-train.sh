#!/usr/bin/env bash
# SFT / DPO training speed: safeedit (burn) and the PyTorch reference side by side on the same
# token ids, order, optimiser and thread count; prints the table and compares the losses.
# Usage: scripts/bench-train.sh [threads] [sft|dpo] [pairs] [batch size] [timed steps]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
THREADS="${1:-2}"; OBJECTIVE="${2:-sft}"; PAIRS="${3:-8}"; BATCH="${4:-4}"; STEPS="${5:-2}"
GGUF="$(scripts/fetch-model.sh)"
PY="$(scripts/bench/reference-venv.sh)"
cargo build --locked --release -p server >&2
OUT="${BENCH_OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
RAYON_NUM_THREADS="$THREADS" "$CARGO_TARGET_DIR/release/safeedit" bench train --model "$GGUF" \
  --objective "$OBJECTIVE" --pairs "$PAIRS" --batch-size "$BATCH" --steps "$STEPS" \
  --examples-out "$OUT/examples.json" > "$OUT/burn.json"
OMP_NUM_THREADS="$THREADS" "$PY" scripts/bench/hf_train.py --gguf "$GGUF" \
  --examples "$OUT/examples.json" --threads "$THREADS" > "$OUT/torch.json"
python3 - "$OUT/burn.json" "$OUT/torch.json" <<'PY'
import json, sys
b, t = (json.load(open(p)) for p in sys.argv[1:3])
print(f"{b['objective']}: {b['timed_steps']} timed steps of {b['batch_size']} pairs, threads {t['threads']}")
print(f"{'':>10}{'s/step':>9}{'s/pair':>9}{'tok/s':>9}{'peak MiB':>10}{'ref logps s':>13}")
for name, r in (("ours", b), ("pytorch", t)):
    ref = r.get("reference_logps_s")
    print(f"{name:>10}{r['seconds_per_step']:>9.2f}{r['seconds_per_pair']:>9.2f}{r['tokens_per_s']:>9.1f}"
          f"{r['peak_rss_mib']:>10.0f}{(f'{ref:.2f}' if ref else '-'):>13}")
print(f"ratio (pytorch time / ours): {t['seconds_per_step'] / b['seconds_per_step']:.2f}")
for i, (x, y) in enumerate(zip(b["steps"], t["steps"]), 1):
    print(f"step {i}: loss ours {x['loss']:.4f} pytorch {y['loss']:.4f}; grad norm {x['grad_norm']:.3f} / {y['grad_norm']:.3f}")
if "reference_logps_max_abs_diff" in t:
    print(f"DPO reference log-probs, largest difference: {t['reference_logps_max_abs_diff']:.2e}")
PY
echo "raw results: $OUT" >&2
