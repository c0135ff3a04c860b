"""Nodes on the in-memory network with a scripted runner."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from p2pci.core.signing import peer_id_of
from p2pci.testing.cluster import ScriptedRunner, open_cluster, with_timing


async def test_three_nodes_reproduce(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3) as c:
        job = await c.publish(c.nodes[0], replicas=2, quorum=2)
        with trio.fail_after(10):
            objs = await c.wait_converged(job)
        assert [o["verdict"] for o in objs] == ["REPRODUCED"] * 3
        assert objs[0] == objs[1] == objs[2]
        # replicas 2; a third build is possible (views differ during the claim window): extra evidence
        assert len(objs[0]["groups"]) == 1 and len(objs[0]["groups"][0]["workers"]) >= 2


async def test_vanished_selected_worker_is_replaced(tmp_path: Path) -> None:
    """A selected worker dies mid-build; a worker that joins later claims in its place."""
    gate = threading.Event()  # never set: the doomed worker's build hangs until it dies
    doomed = ScriptedRunner(gate=gate)
    async with open_cluster(tmp_path, 4, runners=[None, ScriptedRunner(), ScriptedRunner(), doomed], timing=with_timing(lease_ms=3000)) as c:
        job = await c.publish(c.nodes[0], replicas=3, quorum=3)
        # it builds, so it was selected
        assert await trio.to_thread.run_sync(doomed.started.wait, 10)
        c.kill(3)
        late = await c.add_node(ScriptedRunner())
        with trio.fail_after(20):
            objs = await c.wait_converged(job)
        assert {o["verdict"] for o in objs} == {"REPRODUCED"}
        assert all(o == objs[0] for o in objs)
        voters = [w for g in objs[0]["groups"] for w in g["workers"]]
        # three builds at least; on a loaded machine a healthy worker's lease may also run out and a
        # fourth build join in (extra evidence, not an error): no exact count
        assert len(voters) >= 3 and len(set(voters)) == len(voters)
        assert peer_id_of(c.nodes[3].me) not in voters
        assert peer_id_of(late.me) in voters


# Time limits far above what the scripted builds need (they take no time): 10 nodes share one trio
# loop, and on a starved machine (load 11-13 on 2 cores: this process got a quarter of a core) leases
# of 2 s ran out before a worker could commit, rounds emptied and refilled, and 9-14 of 20 jobs ended
# EXPIRED (5 s timeout, also at 20 s); with these, 18-19 of 20 REPRODUCED under the same load.
LIMITS = {"timeout_s": 40, "memory_mb": 64, "cpus": 1, "pids": 64, "out_mb": 1}
LEASE_MS = 8000


@pytest.mark.slow
async def test_ten_nodes_twenty_jobs_agree(tmp_path: Path) -> None:
    """2 publishers (no build), 5 honest, 2 lying, 1 vanishing worker; 20 jobs, 3 replicas, quorum 2."""
    vanishing = ScriptedRunner(gate=threading.Event())
    runners: list[ScriptedRunner | None] = [None, None]
    runners += [ScriptedRunner() for _ in range(5)]
    runners += [ScriptedRunner(lie=True, lie_tag="a"), ScriptedRunner(lie=True, lie_tag="b")]
    runners += [vanishing]
    async with open_cluster(tmp_path, 10, runners=runners, timing=with_timing(lease_ms=LEASE_MS)) as c:
        jobs: list[str] = []

        async def publish(i: int) -> None:
            jobs.append(await c.publish(c.nodes[i % 2], replicas=3, quorum=2, project=f"p{i}", salt=str(i), limits=LIMITS))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(publish, i)
                await trio.sleep(0.1)  # pacing the publishers, not waiting for anything
        assert await trio.to_thread.run_sync(vanishing.started.wait, 10)
        c.kill(9)
        with trio.fail_after(600):  # a hang guard only: ~20 s alone, minutes on a loaded 2-core machine
            results = {job: await c.wait_converged(job) for job in jobs}
    verdicts = {job: objs[0]["verdict"] for job, objs in results.items()}
    for objs in results.values():
        assert all(o == objs[0] for o in objs), [(o["verdict"], o["groups"], o["ignored"]) for o in objs]  # every node: the same verdict, groups, dissenters
        # EXPIRED is possible: a job with both liars and the vanishing worker selected may run out of
        # workers that can still agree before its deadline
        assert objs[0]["verdict"] in ("REPRODUCED", "DISPUTED", "EXPIRED")
    liars = {peer_id_of(c.nodes[i].me) for i in (7, 8)}
    for objs in results.values():
        o = objs[0]
        if o["verdict"] == "REPRODUCED":
            winners = set(o["groups"][0]["workers"])
            assert not winners & liars  # liars never agree with anyone
        if o["verdict"] == "DISPUTED":
            # honest workers always agree, so a job is DISPUTED only when both liars were counted and
            # left one honest vote alone: three groups of one. How often that happens is chance (the
            # publishers' seeds pick both liars for about 1 job in 7; CI once saw 7 of 20), so it is
            # checked per job, not counted against a threshold.
            voters = [w for g in o["groups"] for w in g["workers"]]
            assert liars <= set(voters) and all(len(g["workers"]) == 1 for g in o["groups"]), o["groups"]
    # EXPIRED comes from a starved machine (leases running out), never from the liars: at most 6 of 20
    # even at load 13 (18-19 of 20 ended before their deadline there)
    assert sum(v != "EXPIRED" for v in verdicts.values()) >= 14, verdicts
    assert list(verdicts.values()).count("REPRODUCED") >= 10, verdicts  # chance alone: P(< 10) ~ 1e-5
    assert peer_id_of(c.nodes[9].me) not in {w for objs in results.values() for g in objs[0]["groups"] for w in g["workers"]}


async def test_publisher_vanished_before_selecting_ends_expired_with_the_reason(tmp_path: Path) -> None:
    """The publisher stops right after publishing: nobody is ever selected, nobody builds, and every
    node ends the job EXPIRED saying that the publisher never selected (what `show` prints)."""
    runners = [None, ScriptedRunner(), ScriptedRunner(), ScriptedRunner()]
    async with open_cluster(tmp_path, 4, runners=runners, timing=with_timing(lease_ms=600, commit_slack_ms=500)) as c:
        limits = {"timeout_s": 1, "memory_mb": 64, "cpus": 1, "pids": 64, "out_mb": 1}
        job = await c.publish(c.nodes[0], replicas=2, quorum=2, limits=limits)
        jid = bytes.fromhex(job)
        # the offer reached the workers before the publisher goes
        with trio.fail_after(10):
            for n in c.nodes[1:]:
                while n.board.job(jid) is None:
                    await n.changed.wait()
        c.kill(0)
        with trio.fail_after(30):
            objs = await c.wait_converged(job)
        shown = [await n.control_op("show", {"job": job}) for n in c.live_nodes()]
    for o in [*objs, *shown]:
        assert o["verdict"] == "EXPIRED"
        assert "never selected" in o["reason"] and "online" in o["reason"], o["reason"]
    assert all(r.runs == 0 for r in runners[1:] if r is not None)  # nobody was selected, nobody built
