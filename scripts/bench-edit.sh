#!/usr/bin/env bash
# DINM edit wall time per instance (locate + 10 steps): safeedit (burn, with and without the docs/method.md §The edit
# prefix cache) and the PyTorch reference side by side, same instances, same thread count.
# Usage: [DATA=file.json] scripts/bench-edit.sh [threads] [instance ids, comma-separated]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
THREADS="${1:-2}"; IDS="${2:-1,2,3}"
DATA="${DATA:-data/safeedit/three_instances_for_editing.json}"
GGUF="$(scripts/fetch-model.sh)"
PY="$(scripts/bench/reference-venv.sh)"
cargo build --locked --release -p server >&2
OUT="${BENCH_OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
RAYON_NUM_THREADS="$THREADS" "$CARGO_TARGET_DIR/release/safeedit" bench edit --model "$GGUF" \
  --data "$DATA" --instances "$IDS" --compare-full-forward > "$OUT/burn.json"
OMP_NUM_THREADS="$THREADS" "$PY" scripts/bench/hf_dinm.py --gguf "$GGUF" \
  --data "$DATA" --instances "$IDS" --threads "$THREADS" > "$OUT/torch.json"
python3 - "$OUT/burn.json" "$OUT/torch.json" <<'PY'
import json, sys
b, t = (json.load(open(p)) for p in sys.argv[1:3])
tref = {r["instance"]: r for r in t["instances"]}
print(f"threads {t['threads']}; seconds per edit (locate + {b['preset']['num_steps']} steps)")
print(f"{'instance':>8}{'layer':>6}{'tokens':>7}{'ours':>9}{'ours, no cache':>16}{'pytorch':>9}{'ratio':>7}")
for r in b["instances"]:
    ours = r["cached_prefix"]["locate_s"] + r["cached_prefix"]["tune_s"]
    full = r["full_forward"]["locate_s"] + r["full_forward"]["tune_s"]
    ref = tref[r["instance"]]["locate_s"] + tref[r["instance"]]["tune_s"]
    print(f"{r['instance']:>8}{r['layer']:>6}{r['edit_tokens']:>7}{ours:>9.2f}{full:>16.2f}{ref:>9.2f}{ours / ref:>7.2f}")
PY
echo "raw results: $OUT" >&2
