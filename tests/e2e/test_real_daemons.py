"""Behaviours once tested only with fakes and memory nets, now with daemon processes, real libp2p
on loopback and real Docker builds: cancel, a worker policy from config.toml, observer trust,
kill -9 after commit then restart.

Builds are gated (tests/e2e/test_faults.py SLOW): they run until the test releases them, so
"while it builds" holds on any machine and nothing waits on a duration.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from p2pci.core.evidence import load_bundle
from p2pci.core.signing import peer_id_of
from p2pci.core.tally import R_NOT_TRUSTED
from tests.e2e.mesh import Mesh, build_runs, publish_job, wait_for, write_project
from tests.e2e.test_faults import QUICK, SLOW, building_nodes, release_builds, start, verdict_releasing


@pytest.mark.slow
async def test_cancel_stops_the_running_builds(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        workers = await start(mesh, "w1", "w2")
        await mesh.wait_connected()
    project = write_project(short_tmp, "cancelled", image=busybox_image, script=SLOW, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)

    async def both_building() -> bool:
        return len(await building_nodes(workers)) == 2

    with trio.fail_after(90):
        await wait_for(both_building, "both workers to build")
    res = await mesh.cli(boot, "cancel", job, check=False)
    assert res.returncode == 0 and "CANCELLED" in res.stdout, (res.stdout, res.stderr)
    with trio.fail_after(60):
        view = await mesh.wait_verdict(job, states=frozenset({"CANCELLED"}))
    assert view["verdict"] == "CANCELLED"

    async def containers_gone() -> bool:  # the gated builds never finish: only the cancel ends them
        runs = await trio.to_thread.run_sync(lambda: [build_runs(w.home) for w in workers])
        return not any(runs)

    with trio.fail_after(60):
        await wait_for(containers_gone, "the cancelled builds' containers to be removed")


@pytest.mark.slow
async def test_worker_policy_in_config_toml_is_obeyed(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    """replicas 4 with four workers: every eligible worker claims, so the two whose config.toml
    refuses the job (open jobs off; a lower time limit) show up in the job's facts if they did."""
    with trio.fail_after(120):
        (boot,) = await start(mesh, "boot", build=False)
        open1 = await mesh.add("open1")
        open2 = await mesh.add("open2")
        closed = await mesh.add("closed", config={"worker": {"open_jobs": False}})
        small = await mesh.add("small", config={"worker": {"max_timeout_s": 30}})
        await mesh.wait_connected()
    project = write_project(short_tmp, "policy", image=busybox_image, script=QUICK, replicas=4, quorum=2, timeout_s=120)
    job = await publish_job(mesh, boot, project)
    with trio.fail_after(120):
        view = await mesh.wait_verdict(job, [boot, open1, open2])
    assert view["verdict"] == "REPRODUCED", view
    assert sorted(view["groups"][0]["workers"]) == sorted([open1.peer_id, open2.peer_id])
    bundle = (short_tmp / "policy.p2pci")
    await mesh.cli(open1, "export", job, "-o", str(bundle))
    claimants = {peer_id_of(k) for k in load_bundle(bundle.read_bytes()).claims}
    assert claimants == {open1.peer_id, open2.peer_id}, claimants
    assert closed.alive and small.alive


@pytest.mark.slow
async def test_observer_trust_set_from_config_counts_only_trusted_votes(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    with trio.fail_after(120):
        (boot,) = await start(mesh, "boot", build=False)
        w1, w2 = await start(mesh, "w1", "w2")
        observer = await mesh.add("observer", build=False, config={"trust": {"keys": [w1.peer_id]}})
        await mesh.wait_connected()
    project = write_project(short_tmp, "observed", image=busybox_image, script=SLOW, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)
    with trio.fail_after(120):
        view = await verdict_releasing(mesh, job, [w1, w2], [boot, w1, w2])
    assert view["verdict"] == "REPRODUCED", view

    async def observer_has_both_reveals() -> dict[str, object] | None:
        v = await mesh.show(observer, job)
        ignored = {(i["worker"], i["reason"]) for i in (v or {}).get("ignored", [])}
        return v if (w2.peer_id, R_NOT_TRUSTED) in ignored else None

    with trio.fail_after(60):
        seen = await wait_for(observer_has_both_reveals, "the observer to hold both reveals")
    # one trusted vote of a quorum of 2: the observer does not call it reproduced
    assert seen["verdict"] == "PENDING", seen
    assert [g["workers"] for g in seen["groups"]] == [[w1.peer_id]], seen  # type: ignore[index]


@pytest.mark.slow
async def test_kill9_after_commit_then_restart_still_reveals(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    """w1 commits while w2 still builds (so w1 cannot reveal yet), is killed with SIGKILL and
    restarted on the same home: it reveals from its persisted salt and result, and its vote counts."""
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        w1, w2 = await start(mesh, "w1", "w2")
        await mesh.wait_connected()
    project = write_project(short_tmp, "committed", image=busybox_image, script=SLOW, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)

    async def both_building() -> bool:
        return len(await building_nodes([w1, w2])) == 2

    with trio.fail_after(90):
        await wait_for(both_building, "both workers to build")
    bundle = short_tmp / "committed.p2pci"

    async def w1_committed() -> bool:
        await trio.to_thread.run_sync(release_builds, [w1.home])  # only w1's build may finish
        res = await mesh.cli(boot, "export", job, "-o", str(bundle), check=False)
        if res.returncode != 0:
            return False
        view = load_bundle(bundle.read_bytes())
        return any(peer_id_of(k) == w1.peer_id for k in view.commits) and not view.reveals

    with trio.fail_after(90):
        await wait_for(w1_committed, "w1 to commit while w2 still builds")
    await mesh.kill(w1, signal.SIGKILL)
    with trio.fail_after(60):
        await mesh.start(w1)
    with trio.fail_after(120):
        view = await verdict_releasing(mesh, job, [w1, w2])
    assert view["verdict"] == "REPRODUCED", view
    assert sorted(view["groups"][0]["workers"]) == sorted([w1.peer_id, w2.peer_id])
