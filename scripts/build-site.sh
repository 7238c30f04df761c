#!/usr/bin/env bash
# Builds the browser half of the site without cargo-leptos: the `frontend` crate for wasm32 with
# the `hydrate` feature, wasm-bindgen (pinned to the wasm-bindgen crate's version) into
# $LEPTOS_SITE_ROOT/pkg, then the stylesheet and public assets.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
mkdir -p "$LEPTOS_SITE_ROOT/pkg"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$LEPTOS_SITE_ROOT/pkg" --out-name safeedit \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm"
cp style/main.css "$LEPTOS_SITE_ROOT/pkg/safeedit.css"
cp -r public/. "$LEPTOS_SITE_ROOT/"
echo "site built in $LEPTOS_SITE_ROOT" >&2
