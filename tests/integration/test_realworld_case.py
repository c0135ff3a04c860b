"""One row of `make realworld` (docs/realworld.md) in `make test`: cJSON 1.7.15, the smallest.

The case is the table's own (bench/realworld.py, `cjson-make`): Debian's upstream tarball pinned
by `[[input]]` (about 350 kB, fetched once by the publisher and cached), built with gcc in the
`debian:bookworm+build-essential` image that other integration tests build too. It goes through
`p2pci try` (two varied runs) and through a mesh of real daemons: a publisher and 4 workers on
loopback, `publish --replicas 4 --quorum 4`, then `p2pci fetch` checks every file against the
agreed manifest.

Skipped, with the reason, only when the Debian archive does not answer (no network); the image
is built on first use (minutes) and reused.
"""

from __future__ import annotations

import tarfile
import urllib.request
from pathlib import Path

import pytest

from bench.realworld import CASES, MESH_WORKERS, render, run_case, run_mesh

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.e2e]

CASE = next(c for c in CASES if c.name == "cjson-make")
URL = "http://deb.debian.org/debian/pool/main/c/cjson/cjson_1.7.15.orig.tar.gz"


def _registry_or_skip(cache: Path) -> None:
    if any((cache / "inputs").glob("*.tar")):
        return  # fetched before: no network needed
    try:
        with urllib.request.urlopen(urllib.request.Request(URL, method="HEAD"), timeout=30) as r:
            r.read(0)
    except OSError as e:
        pytest.skip(f"the Debian archive is unreachable, so the pinned input cannot be fetched: {URL}: {e}")


def test_the_cjson_row_reproduces_under_try_and_a_4_worker_mesh(tmp_path: Path) -> None:
    cache = Path.home() / ".cache" / "p2pci-tests" / "realworld"
    _registry_or_skip(cache)
    assert URL in CASE.files["p2pci.toml"]

    row = run_case(CASE, tmp_path, cache)
    assert row.verdict == "reproducible", (row.verdict, row.notes)
    assert row.out_files == 2 and row.out_bytes is not None and row.out_bytes > 10_000
    out = tmp_path / "cjson-make.keep" / "run-1" / "out"
    assert (out / "selftest.txt").read_text().startswith("Version: 1.7.15\n")
    with tarfile.open(out / "cjson-1.7.15-linux-x86_64.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"usr/lib/libcjson.so.1.7.15", "usr/lib/libcjson.a", "usr/include/cjson/cJSON.h"} <= set(members)
    assert members["usr/lib/libcjson.so"].issym()
    assert {m.mtime for m in members.values()} == {1700000000}  # the recipe's SOURCE_DATE_EPOCH

    run_mesh([row], tmp_path, cache)
    assert row.mesh is not None, "the mesh did not run"
    assert row.mesh.verdict == "REPRODUCED", row.mesh
    assert (row.mesh.agreeing, row.mesh.groups) == (MESH_WORKERS, 1)
    assert (row.mesh.out_bytes, row.mesh.out_files) == (row.out_bytes, row.out_files)
    fetched = tmp_path / "cjson-make.mesh-out"
    for name in ("selftest.txt", "cjson-1.7.15-linux-x86_64.tar.gz"):
        assert (fetched / name).read_bytes() == (out / name).read_bytes(), name
    assert f"REPRODUCED ({MESH_WORKERS}/{MESH_WORKERS} agree)" in render([row])
