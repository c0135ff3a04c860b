#!/usr/bin/env bash
# `make dist`: the normal wheel + sdist of p2pci, and a single-file
# dist/p2pci.pyz (shiv) that carries p2pci and every dependency, including
# the native wheels for this platform (pynacl, msgpack, coincurve, ...).
# The .pyz needs only a CPython 3.11 on the same OS/arch: `python3 p2pci.pyz --help`.
# Dependencies come from PyPI through pip (or its cache); nothing else is fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PY:-$VENV/bin/python}
OUT=${DIST_DIR:-dist}
# Reproducible archives: fixed timestamps inside the wheel and the .pyz.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}

"$PY" -m pip --version >/dev/null
# The tools that package us (also listed in the dev extras of pyproject.toml).
"$PY" -c 'import build, shiv' 2>/dev/null || "$PY" -m pip install -q build shiv

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
rm -f "$OUT"/p2pci-*.whl "$OUT"/p2pci-*.tar.gz "$OUT"/p2pci.pyz

echo "== wheel and sdist" >&2
"$PY" -m build --sdist --wheel --outdir "$OUT" . >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
wheel=$(ls "$OUT"/p2pci-*.whl)

echo "== wheelhouse (p2pci + dependencies for $("$PY" -c 'import sysconfig; print(sysconfig.get_platform())'), cp311)" >&2
"$PY" -m pip wheel -q --wheel-dir "$work/wheels" "$wheel"

echo "== $OUT/p2pci.pyz" >&2
"$VENV/bin/shiv" --quiet --reproducible --compressed \
  --python '/usr/bin/env python3' \
  --entry-point p2pci.cli.main:main \
  --output-file "$OUT/p2pci.pyz" \
  --no-index --find-links "$work/wheels" \
  p2pci

ls -l "$OUT"/p2pci.pyz "$OUT"/p2pci-*.whl "$OUT"/p2pci-*.tar.gz >&2
echo "$OUT/p2pci.pyz"
