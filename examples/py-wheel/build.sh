#!/bin/sh
# Build the wheel offline, reproducibly, into /out (or $1).
# The source at /build/src is read-only, so build in a copy under /tmp.
# SOURCE_DATE_EPOCH (set by the recipe) fixes the zip timestamps; the wheel
# package writes its entries in sorted order; umask fixes the file modes.
set -eu
out=${1:-/out}
umask 022
rm -rf /tmp/src
cp -r "$(dirname "$0")" /tmp/src
cd /tmp/src
# Call the PEP 517 backend directly: no pip, no network, no build isolation.
python3 -c 'import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))' "$out"
cd "$out" && sha256sum ./*.whl > SHA256SUMS
