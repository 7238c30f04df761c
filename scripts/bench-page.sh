#!/usr/bin/env bash
# Page weight (issue 18 §5): serves the built site with one stored evaluation, then measures in
# Debian's Chromium the first load of the home page and of that evaluation's share link over an
# emulated 20 Mbit/s, 40 ms network (end2end/bench/first-load.mjs), medians of 3 cold loads.
# Expects the site and the server to be built (scripts/build-site.sh; cargo build -p server).
# Usage: scripts/bench-page.sh   (MBIT=.. RTT_MS=.. REPEATS=.. to change the network or runs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN="$CARGO_TARGET_DIR/debug/safeedit"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" eval --model tiny --method vanilla --limit 4 --max-new-tokens 8 --out "$WORK/eval" \
  --data-dir "$WORK/data" > "$WORK/eval.log" 2>&1 || { cat "$WORK/eval.log" >&2; exit 1; }
slug="$(head -n1 "$WORK/eval/slug.txt")"
"$BIN" serve --model tiny --addr "127.0.0.1:$PORT" --site-root "$LEPTOS_SITE_ROOT" --data-dir "$WORK/data" \
  > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 240); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
ls -l "$LEPTOS_SITE_ROOT/pkg" >&2
BASE_URL="http://127.0.0.1:$PORT" PAGES="/ /evals/$slug" node end2end/bench/first-load.mjs
