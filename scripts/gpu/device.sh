#!/usr/bin/env bash
# The device side of the GPU check (made by scripts/gpu-check.sh --bundle): run it on a machine
# with an NVIDIA GPU, its driver, Python with torch + transformers + numpy; no Rust, no network.
# Usage: bash run.sh RESULTS_DIR   (about 9 minutes on an H200; every step has its own time limit and a
# failed step is recorded and skipped). Writes JSON results and logs into RESULTS_DIR.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
W="${SAFEEDIT_GPU_WORK:-/tmp/safeedit-gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$W"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log" >&2; }
# step NAME LIMIT_S CMD... : runs with a time limit, stdout to OUT/NAME.json, stderr to OUT/NAME.err
# SAFEEDIT_GPU_SKIP="name ..." skips steps (a rerun that completes an earlier one).
step() {
  local name=$1 limit=$2; shift 2
  case " ${SAFEEDIT_GPU_SKIP:-} " in *" $name "*) log "$name skipped"; return 0;; esac
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  local rc=$?
  log "$name rc=$rc $((SECONDS - t0))s"
  tail -c 2000 "$OUT/$name.err" | tail -5 >&2
  return $rc
}
log "bundle $B, work $W"
# burn-cuda loads libcuda and NVRTC at run time: add the CUDA libraries PyTorch's wheels carry
# (site-packages/nvidia/*/lib) and the toolkit's usual place to the search path.
NV_LIBS="$("$PY" -c 'import glob, os, site; print(":".join(sorted({d for s in site.getsitepackages() for d in glob.glob(os.path.join(s, "nvidia", "*", "lib"))})))' 2>/dev/null)"
export LD_LIBRARY_PATH="${NV_LIBS:+$NV_LIBS:}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
{ echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldconfig -p | grep -E "libcuda|nvrtc" ; } > "$OUT/libraries.txt" 2>&1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PY" -c 'import json, torch, transformers; print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}))' > "$OUT/env.json"
for bin in safeedit safeedit-cpu; do
  if [ -f "$B/$bin.xz" ]; then xz -dc "$B/$bin.xz" > "$W/$bin"; else cp "$B/$bin" "$W/$bin"; fi
  chmod +x "$W/$bin"
done
# SAFEEDIT_GPU_DRY=1 (a test of these scripts without a GPU): the CPU build plays both parts.
[ "${SAFEEDIT_GPU_DRY:-}" = 1 ] && cp "$W/safeedit-cpu" "$W/safeedit"
# Peak GPU memory of whatever runs: nvidia-smi sampled every 100 ms into a file per phase.
sample() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/$1.mem" 2>/dev/null & echo $!; }
peak() { sort -n "$OUT/$1.mem" | tail -1; }

IDS="$(cat "$B/ids.txt")"
step models 180 "$PY" "$B/torch_side.py" models --tokenizer "$B/tokenizer" --out "$W"
S="$W/smollm2-shape"; L="$W/llama2-7b-shape"

# 1. Parity on the small model: CUDA vs PyTorch (GPU, f32), CUDA vs our CPU backend.
step logits_cuda 150 "$W/safeedit" bench logits --model "$S" --ids "$IDS" --out "$W/ours-cuda"
step logits_cpu 120 "$W/safeedit-cpu" bench logits --model "$S" --ids "$IDS" --out "$W/ours-cpu"
step logits_torch 120 "$PY" "$B/torch_side.py" logits --model "$S" --ids "$IDS" --out "$W/torch"
step parity_cuda_vs_torch 60 "$PY" "$B/torch_side.py" compare "$W/ours-cuda" "$W/torch" --a-name "safeedit cuda" --b-name "pytorch cuda f32"
step parity_cuda_vs_cpu 60 "$PY" "$B/torch_side.py" compare "$W/ours-cuda" "$W/ours-cpu" --a-name "safeedit cuda" --b-name "safeedit cpu (flex)"

# 2. The same with the matrices kept in bf16 (--dtype bf16; both compute in f32 from the same
#    rounded weights, so CUDA and the CPU backend should agree as closely as in f32).
step logits_cuda_bf16 150 "$W/safeedit" bench logits --dtype bf16 --model "$S" --ids "$IDS" --out "$W/ours-cuda-bf16"
step logits_cpu_bf16 120 "$W/safeedit-cpu" bench logits --dtype bf16 --model "$S" --ids "$IDS" --out "$W/ours-cpu-bf16"
step parity_bf16_cuda_vs_cpu 60 "$PY" "$B/torch_side.py" compare "$W/ours-cuda-bf16" "$W/ours-cpu-bf16" --a-name "safeedit cuda bf16" --b-name "safeedit cpu bf16"
step parity_bf16_cuda_vs_torch_f32 60 "$PY" "$B/torch_side.py" compare "$W/ours-cuda-bf16" "$W/torch" --a-name "safeedit cuda bf16" --b-name "pytorch cuda f32"

# 3. The 7B-shaped model: DINM (locate + steps, two edits in one process) and generation, ours
#    then PyTorch. SAFEEDIT_GPU_7B="bf16 f32" chooses the precisions (default bf16: f32 was
#    measured on an H200 on 2026-11-28, see BENCHMARKS.md).
for dt in ${SAFEEDIT_GPU_7B:-bf16}; do
  case "$dt" in bf16) torch_dt=bfloat16;; f32) torch_dt=float32;; *) log "unknown precision $dt"; continue;; esac
  sfx=""; [ "$dt" = f32 ] || sfx="_$dt"
  m=$(sample "dinm_7b_ours$sfx")
  step "dinm_7b_ours$sfx" 300 "$W/safeedit" bench edit --dtype "$dt" --model "$L" --data "$B/instances.json" --instances 1 --repeat 2
  kill "$m"; log "dinm_7b_ours$sfx peak GPU memory (MiB, nvidia-smi): $(peak "dinm_7b_ours$sfx")"
  m=$(sample "gen_7b_ours$sfx")
  step "gen_7b_ours$sfx" 180 "$W/safeedit" bench generate --dtype "$dt" --model "$L" --prompt-file "$B/prompt.txt" --new-tokens 32 --repeat 2
  kill "$m"; log "gen_7b_ours$sfx peak GPU memory (MiB, nvidia-smi): $(peak "gen_7b_ours$sfx")"
  m=$(sample "torch_7b$sfx")
  step "torch_7b$sfx" 240 "$PY" "$B/torch_side.py" bench --model "$L" --dtype "$torch_dt" --ids "$IDS" --new-tokens 32 --repeat 2 --ours "${SAFEEDIT_GPU_OURS_DINM:-$OUT/dinm_7b_ours$sfx.json}" --data "$B/instances.json"
  kill "$m"; log "torch_7b$sfx peak GPU memory (MiB, nvidia-smi): $(peak "torch_7b$sfx")"
done
log done
# One archive of everything (some hosts return few files).
tar czf "$OUT.tgz" -C "$OUT" . && log "archive: $OUT.tgz"
