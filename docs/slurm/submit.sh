#!/usr/bin/env bash
# Submits a sharded evaluation: an array of N shard tasks, then the merge, which starts only
# when every task has succeeded. Prints the two job ids.
#
# Usage: SAFEEDIT_OUT=/shared/runs/NAME docs/slurm/submit.sh N [EVAL ARGS...]
#   e.g. SAFEEDIT_OUT=/shared/runs/dinm-llama2 SAFEEDIT_SBATCH_ARGS="--partition=gpu --gres=gpu:1" \
#        docs/slurm/submit.sh 8 --model /models/llama-2-7b-chat --method dinm --data /data/SafeEdit_test.json
# Environment: SAFEEDIT (the binary), SAFEEDIT_SBATCH_ARGS (sbatch options for every job:
# partition, GPUs, time, account), SAFEEDIT_MERGE_ARGS (extra eval-merge flags).
set -euo pipefail
[ $# -ge 1 ] && [ "$1" -ge 1 ] 2>/dev/null || { echo "usage: SAFEEDIT_OUT=DIR $0 N [EVAL ARGS...]" >&2; exit 2; }
: "${SAFEEDIT_OUT:?set SAFEEDIT_OUT to the run folder on shared storage}"
shards=$1; shift
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$SAFEEDIT_OUT/logs"
# shellcheck disable=SC2086 # SAFEEDIT_SBATCH_ARGS holds several options
array=$(sbatch --parsable --array="0-$((shards - 1))" ${SAFEEDIT_SBATCH_ARGS:-} \
  --output="$SAFEEDIT_OUT/logs/eval-%A_%a.out" "$here/eval-shards.sbatch" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes ${SAFEEDIT_SBATCH_ARGS:-} \
  --output="$SAFEEDIT_OUT/logs/merge-%j.out" "$here/merge.sbatch" ${SAFEEDIT_MERGE_ARGS:-})
merge=${merge%%;*}
echo "$array $merge"
