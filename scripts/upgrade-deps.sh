#!/usr/bin/env bash
# `make upgrade-deps`: refresh requirements.lock on purpose. Installs the newest versions that
# pyproject.toml allows (with the dev extras) into a fresh throw-away venv and freezes them.
# Review the diff, run `make lint test`, and commit the lock with the code it was tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=${1:-requirements.lock}
PY=${PY:-python3}
tmp=$(mktemp -d /tmp/p2pci-lock.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q -e '.[dev]'
"$tmp/venv/bin/python" -m pip check
{
  echo "# The exact versions CI tested: \`make venv\` installs these; \`make upgrade-deps\` refreshes them."
  echo "# Frozen with $("$tmp/venv/bin/python" -c 'import platform; print("CPython", platform.python_version())') on $(date -u +%Y-%m-%d)."
  echo "# setuptools is left out (the build backend is fetched by pip; Python 3.12 venvs have none)."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v -E '^(setuptools|p2pci)==' | LC_ALL=C sort -f
} > "$lock.new"
mv "$lock.new" "$lock"
echo "p2pci: wrote $lock ($(grep -c '==' "$lock") pins); review with: git diff $lock" >&2
