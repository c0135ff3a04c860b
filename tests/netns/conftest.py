"""Namespace tests: root only; every test here is marked slow (still run by `make test`).

Run them alone with `make test PYTEST_ARGS=tests/netns` (or
`.venv/bin/python -m pytest tests/netns -q`). They skip with the reason when
not root or when `ip`/`iptables` are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.netns.topo import Topology, available


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
            reason = available()
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"namespace tests: {reason}"))


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology() as t:
        yield t


@pytest.fixture(scope="session")
def busybox_image() -> str:
    """The deterministic busybox image (built once, reused when present)."""
    from p2pci.runner.images import resolve_image

    image_id = resolve_image("busybox")
    assert image_id.startswith("sha256:"), image_id
    return image_id
