#!/usr/bin/env bash
# Evaluation throughput: wall seconds per SafeEdit test instance for vanilla and DINM evaluation
# (the five inputs answered greedily, DINM editing first; judge included), from `safeedit eval`'s
# instances.jsonl, on the first K records of the shipped sample. With EASYEDIT=DIR (a checkout of
# zjunlp/EasyEdit) EasyEdit's own pipeline runs on the same records, threads and token limit
# (scripts/bench/easyedit_eval.py) and the table gains its column.
# Usage: [BIN=other/safeedit] [EASYEDIT=dir] [TOKENS=32] scripts/bench-eval.sh [threads] [instances]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
THREADS="${1:-2}"; K="${2:-4}"; TOKENS="${TOKENS:-32}"
GGUF="$(scripts/fetch-model.sh)"
if [ -z "${BIN:-}" ]; then
  cargo build --locked --release -p server >&2
  BIN="$CARGO_TARGET_DIR/release/safeedit"
fi
OUT="${BENCH_OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
for method in vanilla dinm; do
  rm -rf "$OUT/$method"
  RAYON_NUM_THREADS="$THREADS" "$BIN" eval --method "$method" --limit "$K" \
    --max-new-tokens "$TOKENS" --model "$GGUF" --no-db --out "$OUT/$method" \
    > "$OUT/$method.log" 2>&1 || { cat "$OUT/$method.log" >&2; exit 1; }
done
if [ -n "${EASYEDIT:-}" ]; then
  PY="$(scripts/bench/reference-venv.sh)"
  OMP_NUM_THREADS="$THREADS" "$PY" scripts/bench/easyedit_eval.py --easyedit "$EASYEDIT" \
    --gguf "$GGUF" --threads "$THREADS" --records "$K" --max-new-tokens "$TOKENS" \
    > "$OUT/easyedit.json"
fi
python3 - "$OUT" "$THREADS" <<'PY'
import json, os, sys
out, threads = sys.argv[1], sys.argv[2]
def ours(method):
    rows = [json.loads(l) for l in open(os.path.join(out, method, "instances.jsonl"))]
    return {r["id"]: r["seconds"] for r in rows}
van, dinm = ours("vanilla"), ours("dinm")
ee = None
path = os.path.join(out, "easyedit.json")
if os.path.exists(path):
    ee = json.load(open(path))
print(f"threads {threads}; seconds per instance (ours from instances.jsonl)")
print(f"{'id':>6}{'vanilla':>10}{'dinm':>10}")
for i in van:
    print(f"{i:>6}{van[i]:>10.2f}{dinm.get(i, float('nan')):>10.2f}")
for name, d in (("vanilla", van), ("dinm", dinm)):
    mean = sum(d.values()) / len(d)
    line = f"{name}: {mean:.2f} s per instance, {3600 / mean:.0f} instances/hour"
    if ee is not None:
        theirs = ee[f"mean_{name}_s"]
        line += f"; EasyEdit {theirs:.2f} s, {3600 / theirs:.0f}/hour; ratio {theirs / mean:.2f}x"
    print(line)
PY
echo "raw results: $OUT" >&2
