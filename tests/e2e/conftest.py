"""Fixtures for end-to-end tests: daemon processes on loopback, real Docker.

* `busybox_image` (session): the deterministic busybox base image, built once
  with `p2pci image build busybox` (fast; reused when present).
* `mesh` (per test): an empty `Mesh` rooted in a short /tmp directory (unix
  socket paths must stay under 108 bytes). Every process is killed at the
  end, also when the test fails; the directory (daemon logs) is kept and
  printed when the test failed, removed otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mesh import Mesh, open_mesh, p2pci_argv, remove_containers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    rep: Any = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    home = tmp_path_factory.mktemp("imagehome")
    cp = subprocess.run(
        [*p2pci_argv(), "--home", str(home), "image", "build", "busybox"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert cp.returncode == 0, f"p2pci image build busybox failed:\n{cp.stderr}\n{cp.stdout}"
    lines = [ln.strip() for ln in cp.stdout.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("sha256:"), f"no image ID printed:\n{cp.stdout}"
    return lines[-1]


@pytest.fixture
def short_tmp(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A short temp directory, kept (and named) when the test fails."""
    root = Path(tempfile.mkdtemp(prefix="p2pci-e2e-"))
    yield root
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n[e2e] daemon homes and logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def mesh(short_tmp: Path) -> AsyncIterator[Mesh]:
    async with open_mesh(short_tmp / "m") as m:
        yield m
    remove_containers(short_tmp)
