"""SIGTERM during a build: the daemon exits promptly, its container is killed and removed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

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


async def test_sigterm_mid_build_removes_the_container(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
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
    await mesh.stop(worker)  # SIGTERM, SIGKILL only after 15 s
    assert worker.proc is not None and worker.proc.returncode == 0, worker.proc.returncode if worker.proc else None
    assert time.monotonic() - t0 < 14
    assert containers_under(worker.home) == []
    assert not (worker.home / "control.sock").exists()
