#!/usr/bin/env bash
# Evaluation throughput: wall seconds per SafeEdit test instance for vanilla and DINM evaluation
# (the five inputs answered greedily, DINM editing first), with and without the judge and by
# phase, from `safeedit eval`'s instances.jsonl, on the first K records of the shipped sample.
# With EASYEDIT=DIR (a checkout of zjunlp/EasyEdit) EasyEdit's own pipeline runs on the same
# records, threads and token limit (scripts/bench/easyedit_eval.py; its seconds leave its judge
# out, so the ratio is taken against ours without the judge) and the table gains its column.
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
  # What EasyEdit's evaluate_utils imports at the top, beyond the reference venv.
  "$PY" -c "import scipy, nltk, sklearn, openai, regex" 2>/dev/null \
    || "$PY" -m pip install --quiet scipy scikit-learn nltk openai regex >&2
  OMP_NUM_THREADS="$THREADS" "$PY" scripts/bench/easyedit_eval.py --easyedit "$EASYEDIT" \
    --gguf "$GGUF" --threads "$THREADS" --records "$K" --max-new-tokens "$TOKENS" \
    > "$OUT/easyedit.json"
fi
python3 - "$OUT" "$THREADS" <<'PY'
import json, os, sys
out, threads = sys.argv[1], sys.argv[2]
def ours(method):
    return [json.loads(l) for l in open(os.path.join(out, method, "instances.jsonl"))]
runs = {m: ours(m) for m in ("vanilla", "dinm")}
ee = None
path = os.path.join(out, "easyedit.json")
if os.path.exists(path):
    ee = json.load(open(path))
print(f"threads {threads}; seconds per instance (ours from instances.jsonl; 'no judge' leaves the")
print("judge out, as EasyEdit's column does)")
print(f"{'method':>8}{'id':>6}{'total':>8}{'edit':>7}{'prefill':>9}{'decode':>8}{'judge':>7}"
      f"{'no judge':>10}{'prompt tok':>12}{'shared':>8}")
for method, rows in runs.items():
    for r in rows:
        t = r.get("timings") or {}
        nj = r["seconds"] - t.get("judge_s", 0.0)
        print(f"{method:>8}{r['id']:>6}{r['seconds']:>8.2f}{t.get('edit_s', 0):>7.2f}"
              f"{t.get('prefill_s', 0):>9.2f}{t.get('decode_s', 0):>8.2f}{t.get('judge_s', 0):>7.2f}"
              f"{nj:>10.2f}{t.get('prompt_tokens', 0):>12}{t.get('shared_prompt_tokens', 0):>8}")
for method, rows in runs.items():
    mean = sum(r["seconds"] for r in rows) / len(rows)
    no_judge = sum(r["seconds"] - (r.get("timings") or {}).get("judge_s", 0.0) for r in rows) / len(rows)
    line = (f"{method}: {mean:.2f} s per instance ({3600 / mean:.0f}/hour); without the judge "
            f"{no_judge:.2f} s ({3600 / no_judge:.0f}/hour)")
    if ee is not None:
        theirs = ee[f"mean_{method}_s"]
        line += (f"; EasyEdit without its judge {theirs:.2f} s ({3600 / theirs:.0f}/hour); "
                 f"ratio {theirs / no_judge:.2f}x")
    print(line)
PY
echo "raw results: $OUT" >&2
