#!/usr/bin/env bash
# Starts the real server (default model, CPU) on a free port, runs the browser tests against it,
# and stops it. Expects the site and the server to be built (scripts/test.sh does that).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/debug/safeedit"
PORT="${E2E_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
WORK="$(mktemp -d)"
"$BIN" info > "$WORK/model-info.json"
"$BIN" serve --addr "127.0.0.1:$PORT" --site-root "$LEPTOS_SITE_ROOT" --data-dir "$WORK/data" > "$WORK/server.log" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 1 240); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$WORK/server.log" >&2; exit 1; fi
  sleep 0.5
done
BASE_URL="http://127.0.0.1:$PORT" MODEL_INFO="$WORK/model-info.json" \
  node --test --test-reporter=spec end2end/tests/ || { echo "--- server log" >&2; cat "$WORK/server.log" >&2; exit 1; }
