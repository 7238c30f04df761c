#!/usr/bin/env bash
# Builds the browser half of the site without cargo-leptos: the `frontend` crate for wasm32 with
# the `hydrate` feature, wasm-bindgen (pinned to the wasm-bindgen crate's version) into
# $LEPTOS_SITE_ROOT/pkg, binaryen's wasm-opt on the result (scripts/site-tools, installed by
# scripts/setup.sh), then the stylesheet and public assets.
# SAFEEDIT_WASM_OPT=0 skips wasm-opt (a quicker build of a larger bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
mkdir -p "$LEPTOS_SITE_ROOT/pkg"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$LEPTOS_SITE_ROOT/pkg" --out-name safeedit \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm"
wasm="$LEPTOS_SITE_ROOT/pkg/safeedit_bg.wasm"
wasm_opt=scripts/site-tools/node_modules/binaryen/bin/wasm-opt
if [ "${SAFEEDIT_WASM_OPT:-1}" = 0 ]; then
  echo "SAFEEDIT_WASM_OPT=0: the bundle is not optimised by wasm-opt" >&2
elif [ -x "$wasm_opt" ] && command -v node >/dev/null; then
  # -Oz with inlining off: inlining (one-caller inlining above all) shrinks the module but makes
  # it compress worse, and what a reader waits for is the compressed bytes (BENCHMARKS.md, "Page
  # weight"). The features are those rustc's wasm32 target enables.
  before=$(stat -c %s "$wasm")
  "$wasm_opt" -Oz --always-inline-max-function-size=0 --flexible-inline-max-function-size=0 \
    --one-caller-inline-max-function-size=0 \
    --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext \
    "$wasm" -o "$wasm.opt" || { rm -f "$wasm.opt"; exit 1; }
  mv "$wasm.opt" "$wasm"
  echo "wasm-opt: $before -> $(stat -c %s "$wasm") bytes" >&2
else
  echo "warning: binaryen's wasm-opt is not installed (scripts/setup.sh installs it into scripts/site-tools);" \
    "the WebAssembly bundle is left unoptimised" >&2
fi
cp style/main.css "$LEPTOS_SITE_ROOT/pkg/safeedit.css"
cp -r public/. "$LEPTOS_SITE_ROOT/"
echo "site built in $LEPTOS_SITE_ROOT" >&2
