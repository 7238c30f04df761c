#!/usr/bin/env bash
# Installs everything the app needs on a fresh machine of this kind (idempotent, quick when done):
# the wasm32 target, wasm-bindgen-cli pinned to the wasm-bindgen crate, binaryen's wasm-opt, the
# default model and the built-in judge's encoder.
# With --test, also what the tests need: rustfmt and clippy, Debian's Chromium, Slurm and munge,
# and the end-to-end test packages.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup" >&2; exit 1; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$WASM_BINDGEN_VERSION" ]; then
  echo "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION ..." >&2
  # --locked first; this registry mirror sometimes lacks a locked version, then resolve afresh.
  env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked \
    || env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# binaryen's wasm-opt, which scripts/build-site.sh runs on the WebAssembly bundle (npm's build of
# binaryen runs on node and is pinned in scripts/site-tools; Debian's is version 108).
pinned="$(sed -n 's/.*"binaryen": "\([^"]*\)".*/\1/p' scripts/site-tools/package.json)"
installed="$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' scripts/site-tools/node_modules/binaryen/package.json 2>/dev/null || true)"
if ! command -v npm >/dev/null; then
  echo "warning: npm not found: binaryen's wasm-opt is not installed and the site's bundle will be larger" >&2
elif [ "$installed" != "$pinned" ]; then
  (cd scripts/site-tools && npm ci --no-audit --no-fund --loglevel=error)
fi

scripts/fetch-model.sh >/dev/null
scripts/fetch-judge.sh >/dev/null

if [ "${1:-}" = "--test" ]; then
  # The tests' formatting check and lints (rustup's default profile has both; a minimal one not).
  for component in rustfmt clippy; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
  done
  # Debian packages: Chromium (end-to-end tests), a single-node Slurm with munge (the sharded
  # evaluation test, scripts/test-slurm.sh), openssl (certificates for the Postgres TLS test).
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v openssl >/dev/null || missing+=(openssl)
  for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ ! -d end2end/node_modules/playwright-core ]; then
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
