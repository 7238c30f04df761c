#!/usr/bin/env bash
# Starts the real server (default model, CPU) on a free port, runs the browser tests against it,
# and stops it. Expects the site and the server to be built (scripts/test.sh does that).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/debug/safeedit"
PORT="${E2E_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" info > "$WORK/model-info.json"
# Two small batch evaluations stored in the server's database (results.test.mjs reads them).
for method in vanilla prompt; do
  "$BIN" eval --method "$method" --limit 2 --max-new-tokens 8 --out "$WORK/eval-$method" \
    --data-dir "$WORK/data" > "$WORK/eval-$method.log" 2>&1 || { cat "$WORK/eval-$method.log" >&2; exit 1; }
done
# A small mechanism analysis (vanilla vs one DINM edit) for mechanisms.test.mjs.
"$BIN" analyze --methods vanilla,dinm --edits 1 --inputs 4 --projection-inputs 4 --probe-tokens 32 \
  --top-k 32 --lens-vectors 2 --lens-tokens 4 --out "$WORK/analysis" --data-dir "$WORK/data" \
  > "$WORK/analysis.log" 2>&1 || { cat "$WORK/analysis.log" >&2; exit 1; }
# Two small SafeEdit_test_ALL runs (vanilla, and FT-L edited on two instances) for test_all.test.mjs.
"$BIN" eval --test-all --method vanilla --limit 6 --max-new-tokens 4 --out "$WORK/all-vanilla" \
  --data-dir "$WORK/data" > "$WORK/all-vanilla.log" 2>&1 || { cat "$WORK/all-vanilla.log" >&2; exit 1; }
"$BIN" eval --test-all --method ftl --edit-instances 1,2 --ftl-steps 1 --limit 6 --max-new-tokens 4 \
  --out "$WORK/all-ftl" --data-dir "$WORK/data" > "$WORK/all-ftl.log" 2>&1 || { cat "$WORK/all-ftl.log" >&2; exit 1; }
"$BIN" serve --addr "127.0.0.1:$PORT" --site-root "$LEPTOS_SITE_ROOT" --data-dir "$WORK/data" > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 240); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$WORK/server.log" >&2; exit 1; fi
  sleep 0.5
done
BASE_URL="http://127.0.0.1:$PORT" MODEL_INFO="$WORK/model-info.json" SAFEEDIT_BIN="$BIN" \
  node --test --test-reporter=spec end2end/tests/ || { echo "--- server log" >&2; cat "$WORK/server.log" >&2; exit 1; }
