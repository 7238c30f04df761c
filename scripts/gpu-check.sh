#!/usr/bin/env bash
# Prepares the GPU check (issue: speed and the GPU path). Runs here, no GPU needed:
#   scripts/gpu-check.sh --bundle DIR
# builds `safeedit` in release with --features cuda and a CPU build for the CUDA-vs-CPU parity,
# strips and xz-compresses both, and writes into DIR (git-ignored; at most 60 MiB) the binaries,
# the device-side script run.sh (scripts/gpu/device.sh), its PyTorch side (scripts/gpu/torch_side.py),
# SmolLM2's tokenizer (exported from the default GGUF), the benchmark prompt and its token ids, and
# the SafeEdit editing instances. On the GPU machine (NVIDIA driver, Python with torch,
# transformers and numpy; no Rust, no network needed):
#   bash DIR/run.sh RESULTS_DIR
# writes JSON results there in about 9 minutes (H200); BENCHMARKS.md §GPU records them. The 7B
# steps run with bf16 weights by default; SAFEEDIT_GPU_7B="bf16 f32" adds f32 (then the whole
# check may need two calls: SAFEEDIT_GPU_SKIP="step ..." skips what an earlier call finished).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export CARGO_INCREMENTAL=0
[ "${1:-}" = "--bundle" ] && [ -n "${2:-}" ] || { echo "usage: $0 --bundle DIR" >&2; exit 2; }
DIR="$2"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
LIMIT=$((60 * 1024 * 1024))

echo "building safeedit (release, --features cuda) ..." >&2
cargo build --locked --release -p server --features cuda >&2
cp "$CARGO_TARGET_DIR/release/safeedit" "$DIR/safeedit"
echo "building safeedit (CPU, dev profile: dependencies optimised) ..." >&2
cargo build --locked -p server >&2
cp "$CARGO_TARGET_DIR/debug/safeedit" "$DIR/safeedit-cpu"
for bin in safeedit safeedit-cpu; do
  strip "$DIR/$bin"
  rm -f "$DIR/$bin.xz"
  xz -9 -T2 "$DIR/$bin"
done

GGUF="$(scripts/fetch-model.sh)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
xz -dc "$DIR/safeedit-cpu.xz" > "$tmp/safeedit"; chmod +x "$tmp/safeedit"
"$tmp/safeedit" convert --model "$GGUF" --out "$tmp/smollm2" 2>/dev/null
mkdir -p "$DIR/tokenizer"
cp "$tmp/smollm2/tokenizer.json" "$tmp/smollm2/tokenizer_config.json" "$DIR/tokenizer/"
cp server/bench/prompt.txt "$DIR/prompt.txt"
"$tmp/safeedit" bench logits --model "$GGUF" --prompt-file "$DIR/prompt.txt" --out "$tmp/ids" > /dev/null
python3 -c 'import json, sys; print(",".join(map(str, json.load(open(sys.argv[1]))["ids"])))' \
  "$tmp/ids/meta.json" > "$DIR/ids.txt"
cp data/safeedit/three_instances_for_editing.json "$DIR/instances.json"
cp scripts/gpu/device.sh "$DIR/run.sh"
cp scripts/gpu/torch_side.py "$DIR/torch_side.py"
git rev-parse HEAD > "$DIR/commit.txt" 2>/dev/null || true

size=$(du -sb "$DIR" | cut -f1)
echo "bundle $DIR: $(du -sh "$DIR" | cut -f1) ($size bytes)"
ls -l "$DIR" >&2
[ "$size" -le "$LIMIT" ] || { echo "error: $DIR is larger than 60 MiB" >&2; exit 1; }
