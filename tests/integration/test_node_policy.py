"""Worker policy, observer trust and hostile input on in-process nodes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.config import WorkerSettings
from p2pci.control.client import acontrol_call
from p2pci.core.messages import Claim
from p2pci.core.signing import NodeKey, peer_id_of, seal
from p2pci.daemon.node import wall_ms
from p2pci.testing.cluster import ScriptedRunner, open_cluster


async def test_worker_never_claims_outside_its_policy(tmp_path: Path) -> None:
    strict = WorkerSettings(slots=1, max_timeout_s=2)  # the cluster's offers ask for 5 s
    async with open_cluster(tmp_path, 2, runners=[None, ScriptedRunner()], worker=strict) as c:
        job = await c.publish(c.nodes[0], replicas=1, quorum=1, workers=[c.nodes[1].peer_id])
        jid = bytes.fromhex(job)
        worker = c.nodes[1]
        with trio.fail_after(10):
            while jid not in worker.machine.jobs or worker.machine.jobs[jid].phase == "SEEN":
                await worker.changed.wait()
        wj = worker.machine.jobs[jid]
        assert wj.phase == "SKIPPED" and "timeout" in wj.reason
        view = c.nodes[0].board.job(jid)
        assert view is not None and view.claims == {}


async def test_closed_worker_skips_open_jobs(tmp_path: Path) -> None:
    closed = WorkerSettings(slots=1, open_jobs=False)
    async with open_cluster(tmp_path, 2, runners=[None, ScriptedRunner()], worker=closed) as c:
        job = await c.publish(c.nodes[0], replicas=2, quorum=1)  # open mode needs 2 replicas
        jid = bytes.fromhex(job)
        w = c.nodes[1]
        with trio.fail_after(10):
            while jid not in w.machine.jobs or w.machine.jobs[jid].phase == "SEEN":
                await w.changed.wait()
        assert w.machine.jobs[jid].phase == "SKIPPED"


async def test_observer_trust_set_changes_its_verdict(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        home = c.nodes[0].paths.home
        job = await c.publish(c.nodes[0], replicas=2, quorum=2)
        with trio.fail_after(10):
            objs = await c.wait_converged(job)
        assert objs[0]["verdict"] == "REPRODUCED"
        only = peer_id_of(c.nodes[1].me)
        assert await acontrol_call(home, "trust_add", peer_id=only) == [only]
        view = await acontrol_call(home, "show", job=job)
        assert view["verdict"] == "PENDING"  # one trusted vote < quorum 2
        assert {i["reason"] for i in view["ignored"]} == {"not in the observer's trust set"}
        await acontrol_call(home, "trust_remove", peer_id=only)
        assert await acontrol_call(home, "trust_list") == []
        # fail closed (P6): an empty listed set counts nobody, it never means "everyone"
        view = await acontrol_call(home, "show", job=job)
        assert view["verdict"] == "PENDING" and len(view["ignored"]) == 2
        assert await acontrol_call(home, "trust_count", mode="all") == "all"
        assert (await acontrol_call(home, "show", job=job))["verdict"] == "REPRODUCED"


async def test_hostile_facts_are_dropped_and_counted(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 1, runners=[None]) as c:
        node = c.nodes[0]
        good = seal(NodeKey.generate(), Claim(job=b"\x01" * 32, lease_until=5))
        flipped = bytearray(good.raw)
        flipped[-3] ^= 1
        batch: list[bytes] = [b"", b"\x00" * 10, bytes(flipped), good.raw, good.raw, b"\x85" * 70_000, "str"]  # type: ignore[list-item]
        got = await node.ingest_many(batch)
        assert [f.id for f in got] == [good.id]
        assert node.counters["rejected"] == 5 and node.counters["duplicate"] == 1
        assert node.store is not None and node.store.count() == 1
        assert await node.ingest(good.raw) is None
        assert len(node.board) == 1


async def test_retention_prunes_old_decided_jobs_only(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3) as c:
        node = c.nodes[2]
        done = await c.publish(c.nodes[0], replicas=2, quorum=2)
        with trio.fail_after(10):
            await c.wait_converged(done)
        assert node.store is not None and node.store.count() > 0
        assert await node.prune_now() == 0  # decided just now: far younger than 30 days
        node.config = replace(node.config, storage=replace(node.config.storage, retention_days=0))
        node.clock = lambda: wall_ms() + 1000
        pruned = await node.prune_now()
        assert pruned == len(node.board.job_fact_ids(bytes.fromhex(done)))
        assert node.store.facts_of(bytes.fromhex(done)) == []
        publisher = c.nodes[0]  # its own job is pinned: kept
        publisher.config = replace(publisher.config, storage=replace(publisher.config.storage, retention_days=0))
        publisher.clock = lambda: wall_ms() + 1000
        assert await publisher.prune_now() == 0


class ExplodingRunner(ScriptedRunner):
    def run(self, *a: object, **kw: object) -> object:  # type: ignore[override]
        raise ValueError("runner bug")


async def test_a_runner_bug_fails_the_build_not_the_node(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, ExplodingRunner()]) as c:
        job = await c.publish(c.nodes[0], replicas=1, quorum=1, workers=[c.nodes[1].peer_id])
        jid = bytes.fromhex(job)
        w = c.nodes[1]
        with trio.fail_after(10):
            while jid not in w.machine.jobs or w.machine.jobs[jid].phase != "GAVE_UP":
                await w.changed.wait()
        assert "runner bug" in w.machine.jobs[jid].reason
        assert (await acontrol_call(w.paths.home, "id"))["peer_id"] == w.peer_id


async def test_a_gossiped_fact_is_opened_once_by_the_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The network's validator verifies a fact; the ingest takes that `Fact` by id (no second open)."""
    from p2pci.daemon import node as node_mod

    opened: list[bytes] = []
    real = node_mod.open_envelope

    def counting(raw: bytes, **kw: Any) -> Any:
        opened.append(bytes(raw))
        return real(raw, **kw)

    monkeypatch.setattr(node_mod, "open_envelope", counting)
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        a, b = c.nodes
        fact = await a.publish_message(Claim(job=b"\x02" * 32, lease_until=5))
        with trio.fail_after(10):
            while not b.board.has(fact.id):
                await b.changed.wait()
        # once by a's network (its own publish is validated), once by b's validator; b's ingest
        # took the validator's fact (three opens before issue 17's third pass)
        assert opened.count(fact.raw) == 2
        assert b.counters["accepted"] == 1
