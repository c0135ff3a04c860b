"""Source prefetch and retention with daemon processes, real libp2p on loopback, real Docker and
the daemons' real SQLite files (until now tested with in-process nodes on the memory network).

* prefetch: every claimant fetches a small source as soon as it claims, so a claimant the
  publisher does not select holds the source without ever building;
* retention: a node with `retention_days = 0` deletes from disk, at its next start, the facts of
  decided jobs, and keeps the job it exported (pinned) and the one still undecided; nodes with
  the default 30 days keep everything.

Builds are gated (SLOW): "still building" holds on any machine; nothing waits on a duration.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from p2pci.core.board import JobView
from p2pci.core.evidence import load_bundle
from p2pci.core.selection import selection
from p2pci.core.signing import peer_id_of
from tests.e2e.mesh import Mesh, Node, build_runs, publish_job, wait_for, write_project
from tests.e2e.test_faults import QUICK, SLOW, building_nodes, start, verdict_releasing


async def bundle_of(mesh: Mesh, node: Node, job: str, out: Path) -> JobView | None:
    res = await mesh.cli(node, "export", job, "-o", str(out), check=False)
    return load_bundle(await trio.Path(out).read_bytes()) if res.returncode == 0 else None


def blob_size(node: Node, sha: bytes) -> int | None:
    h = sha.hex()
    p = node.home / "blobs" / h[:2] / h
    return p.stat().st_size if p.is_file() else None


def facts_on_disk(node: Node, job: str) -> int:
    """Rows of `job` in the node's own state.sqlite (read-only; the daemon may be running)."""
    db = sqlite3.connect(f"file:{node.home / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM facts WHERE job=?", (bytes.fromhex(job),)).fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
async def test_an_unselected_claimant_has_prefetched_the_source(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    with trio.fail_after(120):
        (boot,) = await start(mesh, "boot", build=False)
        workers = await start(mesh, "w1", "w2", "w3")
        await mesh.wait_connected()
    # traditional mode (open mode needs 2 replicas): one build among three listed workers
    ids = [w.peer_id for w in workers]
    project = write_project(
        short_tmp, "prefetched", image=busybox_image, script=SLOW, replicas=1, quorum=1, workers=ids
    )
    job = await publish_job(mesh, boot, project)
    by_key = {w.peer_id: w for w in workers}
    seen: dict[str, JobView] = {}

    async def all_claimed_one_building() -> bool:
        # the gated build cannot commit, so nothing staffs the job: every worker claims
        view = await bundle_of(mesh, boot, job, short_tmp / "b.p2pci")
        if view is None or len(view.claims) < len(workers) or not selection(view).selected:
            return False
        seen["view"] = view
        return len(await building_nodes(workers)) >= 1

    with trio.fail_after(120):
        await wait_for(all_claimed_one_building, "three claims, a selection and one build")
    view = seen["view"]
    offer = view.offer_msg
    assert offer is not None
    selected = {peer_id_of(k) for k in selection(view).selected}
    standby = [w for w in workers if w.peer_id not in selected]
    assert len(selected) == 1 and len(standby) == 2, (selected, [w.name for w in standby])

    async def standby_hold_the_source() -> bool:
        return all(blob_size(w, offer.source.sha256) == offer.source.size for w in standby)

    with trio.fail_after(90):
        await wait_for(standby_hold_the_source, "the unselected claimants to prefetch the source")
    # ...while the selected worker's gated build runs and theirs never started: the source came by
    # the prefetch at claim time, not by a build's fetch
    runs = await trio.to_thread.run_sync(lambda: {w.name: build_runs(w.home) for w in workers})
    assert runs[by_key[next(iter(selected))].name] and all(not runs[w.name] for w in standby), runs
    with trio.fail_after(120):
        final = await verdict_releasing(mesh, job, workers)
    assert final["verdict"] == "REPRODUCED", final
    assert [g["workers"] for g in final["groups"]] == [sorted(selected)]
    done = await bundle_of(mesh, boot, job, short_tmp / "done.p2pci")
    assert done is not None and {peer_id_of(k) for k in done.commits} == selected  # no standby built


@pytest.mark.slow
async def test_retention_prunes_decided_jobs_at_the_next_start(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    with trio.fail_after(120):
        (boot,) = await start(mesh, "boot", build=False)
        (w1,) = await start(mesh, "w1")
        obs = await mesh.add("obs", build=False, config={"retention_days": 0})
        await mesh.wait_connected()
    jobs: dict[str, str] = {}
    for name in ("decided", "exported"):
        project = write_project(
            short_tmp, name, image=busybox_image, script=QUICK, replicas=1, quorum=1, workers=[w1.peer_id]
        )
        jobs[name] = await publish_job(mesh, boot, project)
        with trio.fail_after(120):
            view = await mesh.wait_verdict(jobs[name])
        assert view["verdict"] == "REPRODUCED", view
    assert await bundle_of(mesh, obs, jobs["exported"], short_tmp / "pin.p2pci") is not None  # pins it
    pending = write_project(
        short_tmp, "pending", image=busybox_image, script=SLOW, replicas=1, quorum=1, workers=[w1.peer_id]
    )
    jobs["pending"] = await publish_job(mesh, boot, pending)

    async def pending_known_and_building() -> bool:
        return facts_on_disk(obs, jobs["pending"]) > 0 and len(await building_nodes([w1])) == 1

    with trio.fail_after(120):
        await wait_for(pending_known_and_building, "obs to store the pending job while w1 builds it")
    before = {n: facts_on_disk(obs, j) for n, j in jobs.items()}
    assert all(before.values()), before

    # retention runs when the daemon starts (then every 6 h): restart obs
    with trio.fail_after(60):
        await mesh.stop(obs)
        await mesh.start(obs)

    async def decided_pruned() -> bool:
        return facts_on_disk(obs, jobs["decided"]) == 0

    with trio.fail_after(60):
        await wait_for(decided_pruned, "obs to prune the decided job from disk")
    after = {n: facts_on_disk(obs, j) for n, j in jobs.items()}
    assert after["exported"] == before["exported"], after  # pinned by `export`
    assert after["pending"] >= before["pending"], after  # no final verdict yet
    # the default retention (30 days) keeps every fact on the other nodes
    assert all(facts_on_disk(n, jobs["decided"]) > 0 for n in (boot, w1))
