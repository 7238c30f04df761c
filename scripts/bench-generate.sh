#!/usr/bin/env bash
# Prompt-processing and greedy-decoding speed of the default model: safeedit (burn) and
# transformers (PyTorch) side by side, same GGUF, same prompt, same thread count.
# Usage: [REPEAT=5] scripts/bench-generate.sh [threads] [new_tokens] [prompt_file]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
THREADS="${1:-2}"; NEW="${2:-64}"; PROMPT="${3:-server/bench/prompt.txt}"; REPEAT="${REPEAT:-5}"
GGUF="$(scripts/fetch-model.sh)"
PY="$(scripts/bench/reference-venv.sh)"
cargo build --locked --release -p server >&2
OUT="${BENCH_OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
RAYON_NUM_THREADS="$THREADS" "$CARGO_TARGET_DIR/release/safeedit" bench generate \
  --model "$GGUF" --prompt-file "$PROMPT" --new-tokens "$NEW" --repeat "$REPEAT" > "$OUT/burn.json"
OMP_NUM_THREADS="$THREADS" "$PY" scripts/bench/hf_generate.py \
  --gguf "$GGUF" --prompt-file "$PROMPT" --new-tokens "$NEW" --threads "$THREADS" --repeat "$REPEAT" > "$OUT/torch.json"
python3 - "$OUT/burn.json" "$OUT/torch.json" <<'PY'
import json, sys
b, t = (json.load(open(p)) for p in sys.argv[1:3])
print(f"prompt tokens {b['prompt_tokens']}, new tokens {b['new_tokens']}, threads {t['threads']}")
print(f"{'':22}{'safeedit (burn)':>18}{'transformers':>16}{'ratio':>8}")
for key, label in [("prefill_tokens_per_s", "prefill tok/s"), ("decode_tokens_per_s", "decode tok/s")]:
    print(f"{label:22}{b[key]:18.1f}{t[key]:16.1f}{b[key] / t[key]:8.2f}")
PY
echo "raw results: $OUT" >&2
