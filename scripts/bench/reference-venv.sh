#!/usr/bin/env bash
# The PyTorch reference's Python (torch, transformers, gguf, accelerate, peft from PyPI), made on
# first use under the cache folder; prints its path. Used by the bench scripts.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
VENV="$SAFEEDIT_CACHE/venv-ref"
if ! "$VENV/bin/python" -c "import torch, transformers, gguf, peft" 2>/dev/null; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet torch transformers gguf accelerate peft >&2
fi
echo "$VENV/bin/python"
