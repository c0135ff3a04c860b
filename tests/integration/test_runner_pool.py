"""The ready /out holders of DockerRunner: used when there, never trusted blindly, cleaned up."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pci.core.errors import BuildError
from p2pci.runner.base import BuildSpec, Limits
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.dockerutil import LABEL_OWNER, client
from p2pci.runner.images import resolve_image
from tests.integration.test_runner import _leftovers, labeled_runner, packed_source

pytestmark = pytest.mark.docker

LIMITS = Limits(timeout_s=60, memory_mb=64, cpus=1, pids=32, out_mb=2)


@pytest.fixture(scope="module")
def busybox() -> str:
    return resolve_image("busybox")


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def runner(tmp_path: Path, busybox: str, tag: str) -> Iterator[DockerRunner]:
    with labeled_runner(tmp_path / "work", busybox, tag) as r:
        yield r


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return packed_source(tmp_path, {"hello.txt": "hello\n"})


def _containers(tag: str) -> list[str]:
    return [c["Id"] for c in client().api.containers(all=True, filters={"label": f"p2pci.test={tag}"})]


def _ready_holder(r: DockerRunner, tag: str) -> str:
    r.warm(LIMITS)
    r.drain()
    (holder,) = _containers(tag)  # nothing else runs: the one container is the ready holder
    return holder


def _spec(busybox: str, script: str) -> BuildSpec:
    return BuildSpec(busybox, ("sh", "-c", script), limits=LIMITS)


def test_a_ready_holder_is_used_and_replaced(
    runner: DockerRunner, busybox: str, source: Path, tag: str
) -> None:
    holder = _ready_holder(runner, tag)
    since = int(time.time()) - 1
    r = runner.run(_spec(busybox, "cp hello.txt /out/"), source, cancel=threading.Event())
    assert r.status == "ok" and [e.path for e in r.manifest] == ["hello.txt"]
    r.cleanup()
    runner.drain()
    (refill,) = _containers(tag)  # the used holder is gone, a new one is ready
    assert refill != holder
    events = client().api.events(
        since=since,
        until=int(time.time()) + 1,
        filters={"label": f"p2pci.test={tag}", "event": "start", "type": "container"},
        decode=True,
    )
    started = {e["id"] for e in events} - {holder, refill}
    assert len(started) == 1, "the build alone: it started no holder of its own"


def test_a_dead_ready_holder_is_not_used(runner: DockerRunner, busybox: str, source: Path, tag: str) -> None:
    holder = _ready_holder(runner, tag)
    client().api.kill(holder)  # stopped, still there: its volume would be remounted empty
    r = runner.run(_spec(busybox, "cp hello.txt /out/"), source, cancel=threading.Event())
    assert r.status == "ok" and [e.path for e in r.manifest] == ["hello.txt"]
    r.cleanup()


def test_a_holder_lost_mid_build_is_an_error_not_an_empty_out(
    runner: DockerRunner, busybox: str, source: Path, tag: str
) -> None:
    """Docker unmounts the tmpfs when its last user stops: the outputs are gone, and we say so."""
    holder = _ready_holder(runner, tag)
    running = threading.Event()
    killed = threading.Event()

    def on_log(data: bytes) -> None:
        if b"written" in data:
            running.set()

    def killer() -> None:
        if running.wait(30):
            client().api.kill(holder)
            killed.set()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    script = "echo data > /out/a; echo written; sleep 5"
    with pytest.raises(BuildError, match="outputs lost"):
        runner.run(_spec(busybox, script), source, cancel=threading.Event(), on_log=on_log)
    t.join()
    assert killed.is_set()


def test_close_removes_the_ready_holder(tmp_path: Path, busybox: str, tag: str) -> None:
    r = DockerRunner(work_dir=tmp_path / "w", holder_image=busybox, labels={"p2pci.test": tag})
    _ready_holder(r, tag)
    r.close()
    assert _leftovers(f"p2pci.test={tag}") == ([], [])
    r.warm(LIMITS)  # closed: makes nothing
    r.drain()
    assert _containers(tag) == []


def test_a_killed_runners_ready_holder_is_reaped(tmp_path: Path, busybox: str, tag: str) -> None:
    owner = f"test-pool-{uuid.uuid4().hex}"
    dead = DockerRunner(
        work_dir=tmp_path / "a", holder_image=busybox, labels={"p2pci.test": tag}, owner=owner
    )
    _ready_holder(dead, tag)  # never closed: what a kill -9 leaves
    assert len(client().volumes.list(filters={"label": f"{LABEL_OWNER}={owner}"})) == 1
    assert DockerRunner(work_dir=tmp_path / "b", owner=owner).reap_orphans() == 2  # holder + volume
    assert _leftovers(f"p2pci.test={tag}") == ([], [])
    with dead._lock:  # noqa: SLF001 - the dead process's memory: forget what the reaper removed
        dead._ready.clear()  # noqa: SLF001
