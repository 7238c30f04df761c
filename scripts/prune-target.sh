#!/usr/bin/env bash
# Keeps the shared cargo target directory from filling the disk: cargo never removes the test and
# binary executables of earlier builds (one per source change), object files left by a build that
# was killed, or incremental caches. This removes, in debug/ and release/:
#   - every executable in deps/ but the newest two of each name (a binary's own and its unit test's
#     share a name; cargo relinks any other that is needed);
#   - deps/*.rcgu.o (intermediate objects of an interrupted link);
#   - incremental/ when CARGO_INCREMENTAL=0 (the scripts' default).
# Then it fails, saying how much is free, when the disk has less than SAFEEDIT_MIN_FREE_GB
# (default 20) left for the build and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

freed=0
remove() {
  local size
  size=$(du -sk "$1" 2>/dev/null | cut -f1)
  rm -rf -- "$1"
  freed=$(( freed + ${size:-0} ))
}

for profile in debug release; do
  dir="$CARGO_TARGET_DIR/$profile"
  [ -d "$dir/deps" ] || continue
  # Executables are the files without an extension: NAME-HASH.
  declare -A seen=()
  while IFS= read -r file; do
    base=${file##*/}
    name=${base%-*}
    seen[$name]=$(( ${seen[$name]:-0} + 1 ))
    if [ "${seen[$name]}" -gt 2 ]; then remove "$file"; fi
  done < <(find "$dir/deps" -maxdepth 1 -type f -executable -regex '.*/[A-Za-z0-9_]+-[0-9a-f]+' \
             -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
  unset seen
  while IFS= read -r file; do remove "$file"; done \
    < <(find "$dir/deps" -maxdepth 1 -name '*.rcgu.o')
  if [ "$CARGO_INCREMENTAL" = 0 ] && [ -d "$dir/incremental" ]; then remove "$dir/incremental"; fi
done

mkdir -p "$CARGO_TARGET_DIR"
free_gb=$(( $(df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
echo "prune-target: freed $(( freed / 1024 )) MB in $CARGO_TARGET_DIR; $free_gb GB free" >&2
min=${SAFEEDIT_MIN_FREE_GB:-20}
if [ "$free_gb" -lt "$min" ]; then
  echo "prune-target: only $free_gb GB free on the disk of $CARGO_TARGET_DIR; the build and tests" \
       "need about $min GB (set SAFEEDIT_MIN_FREE_GB to change the check, or CARGO_TARGET_DIR to" \
       "build elsewhere)" >&2
  exit 1
fi
