"""A node stopped and restarted on the same home: board from SQLite, worker state (salt, result) kept.

In-process: "stopped" is a cancel of the node's nursery, not a kill. The same with a SIGKILLed
daemon process: tests/e2e/test_real_daemons.py::test_kill9_after_commit_then_restart_still_reveals.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from p2pci.control.client import acontrol_call
from p2pci.core.errors import LocalError
from p2pci.core.signing import peer_id_of
from p2pci.core.worker import WorkerJob
from p2pci.daemon.node import Node, validate_fact
from p2pci.net.memory import MemoryHub, MemoryNetwork
from p2pci.testing.cluster import ScriptedRunner, open_cluster, with_timing


async def test_worker_stopped_after_commit_and_restarted_still_reveals(tmp_path: Path) -> None:
    slow = ScriptedRunner(gate=threading.Event())
    fast = ScriptedRunner()
    timing = with_timing(lease_ms=3000, commit_slack_ms=8000)
    async with open_cluster(tmp_path, 3, runners=[None, fast, slow], timing=timing) as c:
        job = await c.publish(c.nodes[0], replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        fast_node = c.nodes[1]
        def persisted() -> WorkerJob | None:  # what a restart finds (the machine may be a step ahead)
            assert fast_node.store is not None
            obj = fast_node.store.kv_get(f"worker/{job}")
            return None if obj is None else WorkerJob.from_obj(obj)

        with trio.fail_after(10):
            while (wj0 := persisted()) is None or wj0.phase != "COMMITTED":
                await fast_node.changed.wait()
        before = {f.id for f in fast_node.board.facts.values()}
        committed = wj0
        restarted = await c.restart(1)
        # everything it had acknowledged is back, and its worker state (salt, result) too
        assert {f.id for f in restarted.board.facts.values()} >= before
        wj = restarted.machine.jobs[jid]
        assert (wj.phase, wj.salt, wj.digest, wj.commit) == ("COMMITTED", committed.salt, committed.digest, committed.commit)
        slow.gate.set()  # type: ignore[union-attr]
        with trio.fail_after(20):
            objs = await c.wait_converged(job)
        assert {o["verdict"] for o in objs} == {"REPRODUCED"}
        assert peer_id_of(restarted.me) in objs[0]["groups"][0]["workers"]
        assert fast.runs == 1  # it did not build again


async def test_restarted_node_has_the_same_board_and_verdicts(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3) as c:
        jobs = [await c.publish(c.nodes[0], replicas=2, quorum=2, salt=str(i)) for i in range(3)]
        with trio.fail_after(20):
            for job in jobs:
                await c.wait_converged(job)
        old = c.nodes[2]
        facts = {f.id: f.raw for f in old.board.facts.values()}
        verdicts = {j: old.fresh_job_obj(old.board.job(bytes.fromhex(j))) for j in jobs}  # type: ignore[arg-type]
        new = await c.restart(2)
        assert {f.id: f.raw for f in new.board.facts.values()} == facts
        assert {j: new.fresh_job_obj(new.board.job(bytes.fromhex(j))) for j in jobs} == verdicts  # type: ignore[arg-type]


async def test_second_node_on_one_home_is_refused(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 1, runners=[None]) as c:
        node = c.nodes[0]
        twin = Node(node.paths.home, node.config, network=MemoryNetwork(MemoryHub(), "twin", validate=validate_fact), key=node.key)
        with pytest.raises(LocalError, match="another p2pci daemon"):
            await twin.run()
        assert (await acontrol_call(node.paths.home, "id"))["peer_id"] == node.peer_id


async def test_trust_changes_survive_a_restart(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        home = c.nodes[0].paths.home
        other = c.nodes[1].peer_id
        await acontrol_call(home, "trust_add", peer_id=other)
        node = await c.restart(0)
        assert await acontrol_call(node.paths.home, "trust_list") == [other]
        await acontrol_call(home, "trust_remove", peer_id=other)
        await c.restart(0)
        assert await acontrol_call(home, "trust_list") == []
