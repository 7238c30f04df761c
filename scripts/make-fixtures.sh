#!/usr/bin/env bash
# Regenerates the golden fixtures of the engine's parity tests with PyTorch + transformers.
# Run on demand (not in CI): it installs torch, transformers, gguf and accelerate from PyPI into
# a virtual environment under the cache (several GB the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SAFEEDIT_CACHE:-$HOME/.cache/safeedit}"
VENV="$CACHE/venv-ref"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet torch transformers gguf accelerate numpy nltk rouge_score
GGUF="$(scripts/fetch-model.sh)"
THREADS="${THREADS:-2}" "$VENV/bin/python" scripts/fixtures/make_golden.py \
  --gguf "$GGUF" \
  --safeedit data/safeedit/SafeEdit_test_sample.json \
  --out crates/engine/tests/fixtures/smollm2_golden.json
THREADS="${THREADS:-2}" "$VENV/bin/python" scripts/fixtures/make_dinm_reference.py \
  --gguf "$GGUF" \
  --instances data/safeedit/three_instances_for_editing.json \
  --out crates/engine/tests/fixtures/smollm2_dinm_reference.json
"$VENV/bin/python" scripts/fixtures/make_judge_reference.py \
  --minilm "$(scripts/fetch-judge.sh)" \
  --safeedit data/safeedit/SafeEdit_test_sample.json \
  --out crates/engine/tests/fixtures
"$VENV/bin/python" scripts/fixtures/make_fluency_reference.py \
  --safeedit data/safeedit/SafeEdit_test_sample.json \
  --alpaca data/general/alpaca_eval.jsonl \
  --nlpcc data/safeedit_extra/nlpcc2024_track2_detoxify_val.json \
  --out crates/core/tests/fixtures/fluency_nltk.json
OPENCOMPASS="$CACHE/opencompass-0.5.4"
if [ ! -d "$OPENCOMPASS/opencompass" ]; then
  "$VENV/bin/pip" download --quiet --no-deps opencompass==0.5.4 -d "$CACHE/wheels"
  mkdir -p "$OPENCOMPASS"
  (cd "$OPENCOMPASS" && unzip -q -o "$CACHE"/wheels/opencompass-0.5.4-py3-none-any.whl 'opencompass/*')
fi
"$VENV/bin/python" scripts/fixtures/make_general_reference.py \
  --opencompass "$OPENCOMPASS" \
  --xsum data/general/xsum_dev_200.jsonl \
  --safeedit data/safeedit/SafeEdit_test_sample.json \
  --trivia crates/core/tests/fixtures/trivia-dev.qa.csv \
  --out crates/core/tests/fixtures/general_reference.json
