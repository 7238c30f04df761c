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

# Clippy lints as the crates compile: with clippy-driver as the workspace's compiler wrapper (what
# `cargo clippy` runs, given its lint arguments the same way) every workspace crate is linted by
# the build that tests it, so the dependencies are compiled once instead of also being checked
# for a separate `cargo clippy` (about 12 minutes of a cold run). Dependencies compile with plain
# rustc and keep their cache.
RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)" \
  || { echo "error: clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

step "cargo test (and clippy, -D warnings)"
# Without the browser crate: it turns on the app's `hydrate` feature, and with both features in one
# build the server's router tests would render pages whose effects try to run on the server. The
# server binary is built here with `ssr` alone, as it runs (the Slurm and browser tests below use
# this build of it); the browser crate holds no tests and is built (and linted) for wasm by
# build-site.sh below.
cargo test --locked --workspace --exclude frontend

step "cargo clippy --features cuda (the CUDA backend compiles without a GPU)"
# The backend choice lives in the pipeline crate; checking it there checks the CUDA path without
# checking the web crates' dependencies a second time.
cargo clippy --locked -p safeedit-pipeline --features cuda -- -D warnings

step "build the site"
scripts/build-site.sh

step "Slurm: docs/slurm's sharded evaluation on a single-node cluster"
scripts/test-slurm.sh

step "end-to-end tests in Chromium"
end2end/run.sh

step "all tests passed"
