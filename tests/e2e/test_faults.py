"""Faults, with separate daemon processes on loopback and real Docker builds.

* kill -9 a selected worker mid-build: its lease lapses, the next-ranked
  claimant builds, the job still reaches its verdict;
* restart a daemon: same peer ID, every fact still there, it keeps working
  (also when it was killed mid-build: it builds again and its vote counts);
* a node started after the job finished converges through anti-entropy;
* the publisher goes offline once the workers have the source: the job
  still completes.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.mesh import Mesh, Node, build_runs, canon, publish_job, wait_for, write_project

QUICK = "cp /build/src/hello.txt /out/hello.txt"
# A build that runs until the test releases it (`touch /tmp/go` in its container): "still running
# when killed" holds on any machine, however slow, and nothing waits on a fixed duration.
SLOW = "until [ -e /tmp/go ]; do sleep 0.1; done; cp /build/src/hello.txt /out/hello.txt"


def release_builds(homes: list[Path]) -> None:
    """Let the gated builds of these homes finish."""
    import docker

    api: Any = docker.from_env().api
    prefixes = [str(h.resolve()) + os.sep for h in homes]
    for c in api.containers(filters={"label": "p2pci", "status": "running"}):
        mounts = [str(m.get("Source", "")) for m in (c.get("Mounts") or [])]
        if any(m.startswith(p) for m in mounts for p in prefixes):
            with contextlib.suppress(docker.errors.APIError):
                api.exec_start(api.exec_create(c["Id"], ["touch", "/tmp/go"])["Id"])


async def verdict_releasing(mesh: Mesh, job: str, nodes: list[Node], among: list[Node] | None = None) -> Any:
    """The job's verdict, releasing every gated build of `nodes` (also ones started later) meanwhile."""

    async def keep_releasing() -> None:
        while True:  # polls a condition (a running gated container), under the caller's fail_after
            await trio.to_thread.run_sync(release_builds, [n.home for n in nodes])
            await trio.sleep(0.2)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_releasing)
        view = await (mesh.wait_verdict(job, among) if among is not None else mesh.wait_verdict(job))
        nursery.cancel_scope.cancel()
    return view


async def start(mesh: Mesh, *names: str, build: bool = True) -> list[Node]:
    nodes: list[Node] = []
    for name in names:
        nodes.append(await mesh.add(name, build=build))
    return nodes


async def building_nodes(nodes: list[Node]) -> list[Node]:
    """Workers whose build runs in its container (so the source is fetched and unpacked).

    Waiting for the container, not just the daemon's "building", also means a
    kill -9 leaves a container the `mesh` fixture can find and remove.
    """
    runs = await trio.to_thread.run_sync(lambda: {n.name: build_runs(n.home) for n in nodes})
    return [n for n in nodes if n.alive and runs[n.name]]


@pytest.mark.slow
async def test_kill9_selected_worker_mid_build(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        workers = await start(mesh, "w1", "w2", "w3")
        await mesh.wait_connected()
    project = write_project(short_tmp, "slow", image=busybox_image, script=SLOW, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)

    async def someone_building() -> list[Node]:
        return await building_nodes(workers)

    with trio.fail_after(60):
        victim = (await wait_for(someone_building, "a worker to start building"))[0]
    await mesh.kill(victim, signal.SIGKILL)
    assert not victim.alive

    with trio.fail_after(120):
        view = await verdict_releasing(mesh, job, workers, mesh.running)
    assert view["verdict"] == "REPRODUCED", view
    (group,) = view["groups"]
    assert len(group["workers"]) == 2, view
    assert victim.peer_id not in group["workers"], "the killed worker cannot have revealed"


async def test_restart_keeps_identity_and_facts(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        w1, w2 = await start(mesh, "w1", "w2")
        await mesh.wait_connected()
    first = write_project(short_tmp, "first", image=busybox_image, script=QUICK, replicas=2, quorum=2)
    job1 = await publish_job(mesh, boot, first)
    with trio.fail_after(120):
        before = await mesh.wait_verdict(job1)
    assert before["verdict"] == "REPRODUCED", before
    bundle_before = (await mesh.cli(w1, "export", job1)).stdout
    peer_before = w1.peer_id

    await mesh.kill(w1, signal.SIGKILL)  # no chance to flush anything
    with trio.fail_after(60):
        await mesh.start(w1)
        await mesh.wait_connected(minimum=1)
    assert w1.peer_id == peer_before
    ident = (await mesh.cli(w1, "id", "--json")).json()
    assert ident["peer_id"] == peer_before
    assert await mesh.show(w1, job1) == before, "the restarted node lost or changed facts"
    assert (await mesh.cli(w1, "export", job1)).stdout == bundle_before

    # It continues: a new job needs both workers (replicas 2 of 2), the restarted one included.
    second = write_project(short_tmp, "second", image=busybox_image, script=QUICK, replicas=2, quorum=2)
    job2 = await publish_job(mesh, boot, second)
    with trio.fail_after(120):
        view = await mesh.wait_verdict(job2)
    assert view["verdict"] == "REPRODUCED", view
    assert sorted(view["groups"][0]["workers"]) == sorted([w1.peer_id, w2.peer_id])


async def test_late_joiner_converges(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        await start(mesh, "w1", "w2")
        await mesh.wait_connected()
    project = write_project(short_tmp, "early", image=busybox_image, script=QUICK, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)
    with trio.fail_after(120):
        done = await mesh.wait_verdict(job)
    assert done["verdict"] == "REPRODUCED", done

    with trio.fail_after(60):
        late = await mesh.add("late", build=False)
    with trio.fail_after(60):
        seen = await mesh.wait_verdict(job, [late], agree=False)
    assert canon(seen) == canon(done)


@pytest.mark.slow
async def test_publisher_offline_after_source_fetched(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        (pub,) = await start(mesh, "pub", build=False)
        workers = await start(mesh, "w1", "w2")
        await mesh.wait_connected()
    project = write_project(short_tmp, "orphan", image=busybox_image, script=SLOW, replicas=2, quorum=2)
    job = await publish_job(mesh, pub, project)

    async def all_building() -> bool:
        return len(await building_nodes(workers)) == len(workers)

    with trio.fail_after(60):
        await wait_for(all_building, "both workers to fetch the source and build")
    await mesh.kill(pub, signal.SIGKILL)

    with trio.fail_after(120):
        view = await verdict_releasing(mesh, job, workers, [boot, *workers])
    assert view["verdict"] == "REPRODUCED", view
    assert sorted(view["groups"][0]["workers"]) == sorted(w.peer_id for w in workers)


@pytest.mark.slow
async def test_restart_mid_build_continues(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    """kill -9 and restart a worker mid-build: it comes back and its vote is needed (2 of 2)."""
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        w1, w2 = await start(mesh, "w1", "w2")
        await mesh.wait_connected()
    project = write_project(short_tmp, "resumed", image=busybox_image, script=SLOW, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)

    async def w1_building() -> bool:
        return bool(await building_nodes([w1]))

    with trio.fail_after(60):
        await wait_for(w1_building, "w1 to build")
    peer = w1.peer_id
    await mesh.kill(w1, signal.SIGKILL)
    with trio.fail_after(60):
        await mesh.start(w1)
    assert w1.peer_id == peer
    with trio.fail_after(120):
        view = await verdict_releasing(mesh, job, [w1, w2])
    assert view["verdict"] == "REPRODUCED", view
    assert sorted(view["groups"][0]["workers"]) == sorted([w1.peer_id, w2.peer_id])
