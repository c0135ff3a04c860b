#!/bin/sh
# Build daysuntil.pyz, a zipapp with its pinned dependencies inside, offline and reproducibly.
# The dependencies come from /build/inputs (the wheels [fetch] downloaded, pinned by the offer);
# pip installs them with no index and checks their hashes again.
set -eu
out=${1:-/out}
umask 022
app=/tmp/app
rm -rf "$app"
python3 -m pip install --no-index --find-links /build/inputs --require-hashes -r requirements.txt \
    --target "$app" --no-compile --no-cache-dir --disable-pip-version-check --quiet
rm -rf "$app/bin"                       # console scripts: not used by a zipapp
cp -r src/daysuntil "$app/"
python3 make_pyz.py "$app" "$out/daysuntil.pyz"
python3 "$out/daysuntil.pyz" 2030-01-01 2024-06-15 > "$out/selftest.txt"
cd "$out" && sha256sum daysuntil.pyz > SHA256SUMS
