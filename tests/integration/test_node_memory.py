"""Nodes on the in-memory network with a scripted runner."""

from __future__ import annotations

import threading
from pathlib import Path

import trio

from p2pci.core.signing import peer_id_of
from p2pci.daemon.testing import ScriptedRunner, open_cluster, with_timing


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
    async with open_cluster(tmp_path, 4, runners=[None, ScriptedRunner(), ScriptedRunner(), doomed], timing=with_timing(lease_ms=600)) as c:
        job = await c.publish(c.nodes[0], replicas=3, quorum=3)
        with trio.fail_after(10):
            while not doomed.started.is_set():  # it builds, so it was selected
                await trio.sleep(0.01)
        c.kill(3)
        late = await c.add_node(ScriptedRunner())
        with trio.fail_after(20):
            objs = await c.wait_converged(job)
        assert {o["verdict"] for o in objs} == {"REPRODUCED"}
        assert all(o == objs[0] for o in objs)
        voters = [w for g in objs[0]["groups"] for w in g["workers"]]
        assert len(voters) == 3
        assert peer_id_of(c.nodes[3].me) not in voters
        assert peer_id_of(late.me) in voters
