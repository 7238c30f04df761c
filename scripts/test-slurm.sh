#!/usr/bin/env bash
# The Slurm test (scripts/test.sh runs it): starts a throwaway single-node Slurm cluster here
# (Debian's slurmctld and slurmd, authenticated by its own munged; every file, socket and port
# its own, all stopped at the end), submits docs/slurm's array job over 2 shards on the tiny model
# and its merge, and checks that the merged summary is the one a single `safeedit eval` writes.
# If Slurm cannot start, the test fails and says why; it never passes without running.
# Usage: scripts/test-slurm.sh [SAFEEDIT_BINARY]   (as root; default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN="$(realpath "${1:-$CARGO_TARGET_DIR/debug/safeedit}")"
T="$(mktemp -d /tmp/safeedit-slurm.XXXXXX)"
chmod 755 "$T"

show_logs() {
  for f in "$T"/munge/munged.log "$T"/slurmctld.log "$T"/slurmd.log "$T"/sharded/logs/*; do
    [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 25 "$f" >&2; }
  done
  return 0
}
fail() { echo "slurm test FAILED: $*" >&2; show_logs; exit 1; }
stop() {
  for pid in "$T"/slurmd.pid "$T"/slurmctld.pid "$T"/munge/munged.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  sleep 1
  rm -rf "$T"
}
trap stop EXIT

[ "$(id -u)" = 0 ] || fail "needs root (it starts munged, slurmctld and slurmd as CI does)"
for cmd in munged slurmctld slurmd sbatch scontrol sinfo; do
  command -v "$cmd" >/dev/null || fail "$cmd is not installed (scripts/setup.sh --test installs slurmctld, slurmd, slurm-client and munge)"
done
[ -x "$BIN" ] || fail "$BIN is not built"

# munge: its own key and socket.
mkdir -m 755 "$T/munge"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
munged --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.socket" \
  --pid-file="$T/munge/munged.pid" --log-file="$T/munge/munged.log" \
  --seed-file="$T/munge/munged.seed" || fail "munged did not start"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
host="$(hostname -s)"
cpus="$(nproc)"
mkdir -p "$T/state" "$T/spool"
cat > "$T/slurm.conf" <<CONF
ClusterName=safeedit-test
SlurmctldHost=$host
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.socket
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF="$T/slurm.conf"
slurmctld -c || fail "slurmctld did not start"
slurmd -c || fail "slurmd did not start"
for _ in $(seq 60); do
  state="$(sinfo -h -o %t 2>/dev/null || true)"
  case "$state" in idle*|mix*|alloc*) break ;; esac
  sleep 1
done
case "$state" in idle*|mix*|alloc*) ;; *) fail "the node did not come up (sinfo says '${state:-nothing}')" ;; esac
echo "slurm: node $host is $state" >&2

# The run Slurm shards, and the same evaluation in one process.
args=(--model tiny --method vanilla --limit 4 --max-new-tokens 3)
"$BIN" eval "${args[@]}" --no-db --out "$T/one" 2>"$T/one.log" || { cat "$T/one.log" >&2; fail "the one-process eval failed"; }
export SAFEEDIT="$BIN" SAFEEDIT_OUT="$T/sharded" SAFEEDIT_DATA_DIR="$T/db"
read -r array merge < <(docs/slurm/submit.sh 2 "${args[@]}") || fail "sbatch refused the jobs"
echo "slurm: array job $array, merge job $merge" >&2

job_state() { scontrol show job "$1" -o 2>/dev/null | grep -o 'JobState=[A-Z_]*' | sort -u | cut -d= -f2 | tr '\n' ' '; }
for _ in $(seq 600); do
  s="$(job_state "$merge")"
  case "$s" in
    "COMPLETED ") break ;;
    *FAILED*|*CANCELLED*|*TIMEOUT*|*NODE_FAIL*|*OUT_OF_MEMORY*)
      fail "merge job $merge ended $s(array job: $(job_state "$array"))" ;;
  esac
  sleep 1
done
[ "$(job_state "$merge")" = "COMPLETED " ] || fail "merge job $merge did not finish in 10 minutes ($(job_state "$merge"))"
for k in 1 2; do
  [ -f "$T/sharded/shard-$k-of-2/instances.jsonl" ] || fail "shard $k of 2 wrote no results"
done
cmp "$T/one/summary.json" "$T/sharded/merged/summary.json" \
  || fail "the merged summary differs from the one-process run's"
slug="$(head -n1 "$T/sharded/merged/slug.txt" 2>/dev/null)" || fail "the merge stored nothing (no slug.txt)"
echo "slurm test passed: 2 shards on Slurm, merged ($slug) = one process" >&2
