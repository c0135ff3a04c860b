"""The two examples with pinned registry dependencies are reproducible under `p2pci try`.

`examples/py-pinned` fetches two wheels from PyPI (`pip download --require-hashes`),
`examples/npm-pinned` eleven packages from the npm registry (`npm ci` on its lockfile). The
fetch result is cached under ~/.cache/p2pci-tests/examples/NAME, so only the first run (or one after
the image changed) needs the registry; without a cache and without the registry the test is
skipped with the reason. The npm image is built on first use (minutes) and reused.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.build_cmds import try_command

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CACHE = Path.home() / ".cache" / "p2pci-tests" / "examples"
REGISTRY = {
    "py-pinned": "https://pypi.org/simple/six/",
    "npm-pinned": "https://registry.npmjs.org/terser",
}


def _registry_or_skip(name: str) -> None:
    if any((CACHE / name / "inputs").glob("*.tar")):
        return  # fetched before: a cache hit needs no network (a miss still fails, with its reason)
    url = REGISTRY[name]
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as r:
            r.read(0)
    except OSError as e:
        pytest.skip(f"the registry is unreachable, so the pinned inputs cannot be fetched: {url}: {e}")


# npm-pinned needs the `debian:bookworm+npm` image, which no other test in `make test` builds (about
# 7 minutes on a fresh machine): it runs in `make test-big`; py-pinned's image is shared with test_fetch.
@pytest.mark.parametrize(
    ("name", "files"), [("py-pinned", 3), pytest.param("npm-pinned", 4, marks=pytest.mark.big)]
)
def test_the_pinned_example_is_reproducible(tmp_path: Path, name: str, files: int) -> None:
    _registry_or_skip(name)
    keep = tmp_path / "keep"
    env = {"P2PCI_CACHE_DIR": str(CACHE / name)}
    r = CliRunner().invoke(try_command, [str(EXAMPLES / name), "--keep", str(keep)], env=env)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("reproducible: digest ") and f"({files} files, 2 runs)" in r.stdout
    assert "inputs: " in r.stderr and ", inputs " in r.stderr  # both runs got the pinned inputs
    out = keep / "run-1" / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        {"py-pinned": ["SHA256SUMS", "daysuntil.pyz", "selftest.txt"],
         "npm-pinned": ["SHA256SUMS", "greet-min-1.0.0.tgz", "greet.min.js", "selftest.txt"]}[name]
    )  # fmt: skip
    if name == "py-pinned":  # the zipapp runs on the host too: its dependencies are inside
        got = subprocess.run(
            [sys.executable, str(out / "daysuntil.pyz"), "2030-01-01", "2024-06-15"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        assert got.stdout == "5 years, 6 months, 17 days\n"
    else:
        assert (out / "selftest.txt").read_text() == "Good day, Ada!\nGood day, Linus!\n"
