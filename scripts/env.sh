# Shared settings for the scripts (sourced, not run).
# The cargo target directory lives outside the clone so repeat runs (and fresh clones on the same
# machine) reuse compiled dependencies.
export SAFEEDIT_CACHE="${SAFEEDIT_CACHE:-$HOME/.cache/safeedit}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SAFEEDIT_CACHE/target}"
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-$CARGO_TARGET_DIR/site}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
WASM_BINDGEN_VERSION=0.2.130
# Incremental compilation caches grow by gigabytes per edit of the server crate and are never
# collected; the scripts build without them unless the caller asks.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
