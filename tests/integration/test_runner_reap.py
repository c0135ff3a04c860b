"""A daemon killed mid-build leaves containers behind; its next start removes them (and only them)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.dockerutil import LABEL, LABEL_OWNER, client
from p2pci.runner.images import resolve_image

pytestmark = pytest.mark.docker


def _left(owner: str) -> tuple[list[str], list[str]]:
    dc = client()
    sel = {"label": [f"{LABEL_OWNER}={owner}"]}
    return [c["Id"] for c in dc.api.containers(all=True, filters=sel)], [v.name for v in dc.volumes.list(filters=sel)]


def _orphan(owner: str, image: str) -> None:
    """What a kill -9 between create and remove leaves: a started and a created container, a volume."""
    dc = client()
    labels = {LABEL: "1", LABEL_OWNER: owner}
    dc.volumes.create(name=f"p2pci-out-test-{uuid.uuid4().hex}", labels=labels)
    dc.containers.create(image=image, command=["sleep", "2147483647"], labels=labels)
    dc.containers.run(image=image, command=["sleep", "2147483647"], labels=labels, detach=True)


def test_reap_removes_own_orphans_only(tmp_path: Path) -> None:
    image = resolve_image("busybox")
    me, other = f"test-me-{uuid.uuid4().hex}", f"test-other-{uuid.uuid4().hex}"
    _orphan(me, image)
    _orphan(other, image)
    try:
        assert len(_left(me)[0]) == 2 and len(_left(me)[1]) == 1
        reaped = DockerRunner(work_dir=tmp_path, holder_image=image, owner=me).reap_orphans()
        assert reaped == 3
        assert _left(me) == ([], [])
        assert len(_left(other)[0]) == 2, "another owner's containers must survive"
    finally:
        DockerRunner(work_dir=tmp_path, holder_image=image, owner=other).reap_orphans()
        DockerRunner(work_dir=tmp_path, holder_image=image, owner=me).reap_orphans()
    assert _left(other) == ([], [])


def test_runner_without_owner_reaps_nothing(tmp_path: Path) -> None:
    assert DockerRunner(work_dir=tmp_path).reap_orphans() == 0
