"""Fixtures for end-to-end tests: daemon processes on loopback, real Docker.

* `busybox_image` (session): the deterministic busybox base image, built once
  with `p2pci image build busybox` (fast; reused when present).
* `mesh` (per test): an empty `Mesh` rooted in a short /tmp directory (unix
  socket paths must stay under 108 bytes). Every process is killed at the
  end, also when the test fails; the directory (daemon logs) is kept and
  printed when the test failed, removed otherwise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mesh import Mesh, open_mesh, remove_containers


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
def busybox_image() -> str:
    """The deterministic busybox image (built once, reused when present)."""
    from p2pci.runner.images import resolve_image

    image_id = resolve_image("busybox")
    assert image_id.startswith("sha256:"), image_id
    return image_id


@pytest.fixture
def short_tmp(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A short temp directory, kept (and named) when the test fails."""
    # /tmp, not $TMPDIR: a control socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="p2pci-e2e-", dir="/tmp" if os.path.isdir("/tmp") else None))
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
