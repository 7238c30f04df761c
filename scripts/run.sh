#!/usr/bin/env bash
# README command 1: set up, build, and serve SafeEdit Studio on http://127.0.0.1:3000 with the
# embedded defaults (CPU backend, the default small model). Extra arguments go to `safeedit serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup.sh
scripts/build-site.sh
cargo build --locked -p server
exec "$CARGO_TARGET_DIR/debug/safeedit" serve --site-root "$LEPTOS_SITE_ROOT" "$@"
