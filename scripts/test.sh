#!/usr/bin/env bash
# README command 2: set up and run every test: formatting, clippy, the workspace's unit and
# integration tests (parity with PyTorch on the real default model included), the CUDA build
# check, docs/slurm's array job on a throwaway Slurm cluster, and the end-to-end browser tests in
# Debian's Chromium against the real server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started ))s)" >&2; }

step setup
scripts/setup.sh --test
scripts/prune-target.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test"
# Without the browser crate: it turns on the app's `hydrate` feature, and with both features in one
# build the server's router tests would render pages whose effects try to run on the server. The
# server binary is built (and tested here) with `ssr` alone, as it runs; the browser crate holds
# no tests and is built for wasm by build-site.sh below.
cargo test --locked --workspace --exclude frontend

step "cargo check --features cuda (compiles without a GPU)"
cargo check --locked -p server --features cuda

step "build the site and the server"
scripts/build-site.sh
cargo build --locked -p server

step "Slurm: docs/slurm's sharded evaluation on a single-node cluster"
scripts/test-slurm.sh

step "end-to-end tests in Chromium"
end2end/run.sh

step "all tests passed"
