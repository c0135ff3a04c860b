"""SIGTERM during a build: the daemon drains (the build finishes within `[worker] drain_grace_s`,
its result is committed and revealed, then the daemon stops); a build longer than the grace is
killed and its container removed."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import trio

from p2pci.testing.mesh import DRAIN_GRACE_S
from tests.e2e.mesh import Mesh, wait_for, write_project


def containers_under(home: Path) -> list[str]:
    """Ids of p2pci containers mounting something under `home`.

    The low-level list carries the mounts: no per-container inspect that races with other
    tests' containers going away.
    """
    import docker

    client: Any = docker.from_env()
    prefix = str(home.resolve())
    return [
        c["Id"]
        for c in client.api.containers(all=True, filters={"label": "p2pci"})
        if any(str(m.get("Source", "")).startswith(prefix) for m in (c.get("Mounts") or []))
    ]


async def test_sigterm_after_the_drain_grace_removes_the_container(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    with trio.fail_after(60):
        boot = await mesh.add("boot", build=False)
        worker = await mesh.add("w", bootstrap=[boot])
        await mesh.wait_connected(minimum=1)
    project = write_project(
        short_tmp / "p", "slow", image=busybox_image, script="echo started; sleep 120",
        replicas=1, quorum=1, workers=[worker.peer_id],
    )
    await mesh.cli(boot, "publish", str(project), "--json")

    async def running() -> bool:
        return bool(await mesh.building(worker)) and bool(containers_under(worker.home))

    with trio.fail_after(60):
        await wait_for(running, "the build container", node=worker)
    t0 = time.monotonic()
    await mesh.stop(worker)  # SIGTERM (drain, grace DRAIN_GRACE_S = 2 s), SIGKILL only after 15 s
    assert worker.proc is not None and worker.proc.returncode == 0, worker.proc.returncode if worker.proc else None
    assert DRAIN_GRACE_S <= time.monotonic() - t0 < 14
    assert "draining" in worker.log_tail() and "grace period over" in worker.log_tail()
    assert containers_under(worker.home) == []
    assert not (worker.home / "control.sock").exists()


async def test_sigterm_drains_the_running_build_then_stops(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    """The issue-16 case: SIGTERM no longer kills a running build. The build finishes, its result
    is committed and revealed (the job REPRODUCES), then the daemon exits 0; meanwhile it takes
    no new work."""
    with trio.fail_after(60):
        boot = await mesh.add("boot", build=False)
        worker = await mesh.add("w", bootstrap=[boot], config={"worker": {"drain_grace_s": 60}})
        await mesh.wait_connected(minimum=1)
    project = write_project(
        short_tmp / "p", "drain", image=busybox_image, script="echo started; sleep 4; cp /build/src/hello.txt /out/",
        replicas=1, quorum=1, workers=[worker.peer_id],
    )
    job = (await mesh.cli(boot, "publish", str(project), "--json")).json()["job"]

    async def running() -> bool:
        return bool(await mesh.building(worker))

    with trio.fail_after(60):
        await wait_for(running, "the build", node=worker)
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(40):
        await worker.proc.wait()
    assert worker.proc.returncode == 0
    tail = worker.log_tail()
    assert "SIGTERM, draining" in tail and "drained, shutting down" in tail
    with trio.fail_after(30):
        final = await mesh.wait_verdict(job, [boot])
    assert final["verdict"] == "REPRODUCED"
    assert containers_under(worker.home) == []
