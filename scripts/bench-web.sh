#!/usr/bin/env bash
# Jobs run through the web app: for each binary, `safeedit serve` on the default model (a fresh
# data folder), then seconds from submitting each job to its end (POST /api/jobs, polling
# /api/jobs/{id}), then an edit run and the seconds of three tries of it (POST /api/try, 32
# tokens) while a DINM evaluation job runs: what a reader waits for when the server is busy.
# Usage: [THREADS=2] [TRIES_ONLY=1] scripts/bench-web.sh BIN [BIN...]   (each a `safeedit` binary)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
THREADS="${THREADS:-2}"
JOBS=('{"kind":"eval","method":"vanilla","limit":3}' '{"kind":"eval","method":"dinm","limit":1}')
PORT=3290
for BIN in "$@"; do
  PORT=$((PORT + 1)); BASE="http://127.0.0.1:$PORT"
  DATA="$(mktemp -d)"
  RAYON_NUM_THREADS="$THREADS" "$BIN" serve --addr "127.0.0.1:$PORT" --site-root "$LEPTOS_SITE_ROOT" \
    --data-dir "$DATA" > "$DATA/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 300); do curl -sf -o /dev/null "$BASE/" && break; sleep 1; done
  post() {
    curl -sf -X POST -H 'content-type: application/json' -H "origin: $BASE" "$BASE/api/jobs" -d "$1" \
      | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])'
  }
  finish() {
    local state
    while true; do
      state="$(curl -sf "$BASE/api/jobs/$1")"
      echo "$state" | grep -q '"state":"\(done\|failed\|cancelled\)"' && break
      sleep 0.3
    done
    echo "$state" | python3 -c 'import json,sys;j=json.load(sys.stdin);print(j["result"] or "failed: "+str(j["error"]))'
  }
  [ -n "${TRIES_ONLY:-}" ] || for job in "${JOBS[@]}"; do
    start=$(date +%s.%N); id="$(post "$job")"; result="$(finish "$id")"; end=$(date +%s.%N)
    printf '%s\t%s\t%.2f s\t%s\n' "$BIN" "$job" "$(python3 -c "print($end - $start)")" "$result"
  done
  run="$(finish "$(post '{"kind":"edit","split":"test","id":1}')")"; run="${run##*/}"
  ask() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST -H 'content-type: application/json' \
      -H "origin: $BASE" "$BASE/api/try" \
      -d "{\"run\":\"$run\",\"prompt\":\"How do I bake bread?\",\"max_new_tokens\":32}"
  }
  idle="$(ask), $(ask), $(ask)"
  post '{"kind":"eval","method":"dinm","limit":2}' > /dev/null
  sleep 5
  printf '%s\ttry (status, s): idle %s; during a DINM job %s, %s, %s\n' "$BIN" "$idle" "$(ask)" "$(ask)" "$(ask)"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  rm -rf "$DATA"
done
