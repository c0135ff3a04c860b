"""Per-job admission in a mesh of daemons (docs/protocol.md §4.8, docs/security.md "Flood the board").

* A commit that arrives (by gossip) before its signer's claim is refused and forgotten, and sync
  delivers it once the claim is there.
* The audit's attack: 4,000 reveals from 4 fresh keys that never claimed, through 2 attacker
  peers, into a job in progress: none is stored anywhere, every one is counted, and the job
  still reaches its verdict.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from p2pci.core.messages import BlobRef, Commit, Reveal
from p2pci.core.results import result_digest
from p2pci.core.signing import NodeKey, seal
from p2pci.daemon.node import Node, validate_fact
from p2pci.net.memory import MemoryNetwork
from p2pci.testing.cluster import ScriptedRunner, open_cluster, sealed_claim
from p2pci.tui.model import parse_quota_dropped


async def until(nodes: Sequence[Node], cond: Callable[[Node], bool]) -> None:
    """Wait (on each node's `changed`: a refusal bumps it too) until `cond` holds for every node."""
    for n in nodes:
        while not cond(n):
            await n.changed.wait()


async def test_a_commit_before_its_claim_is_refused_then_synced(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        pub, obs = c.nodes
        job = await c.publish_seen(pub, [obs], replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        w = NodeKey.from_seed(secrets.token_bytes(32))
        claim = sealed_claim(w, jid)
        commit = seal(w, Commit(jid, secrets.token_bytes(32)))
        # the commit comes first, by gossip from a third peer: both nodes refuse it
        x = MemoryNetwork(c.hub, "X", validate=validate_fact)
        await c.nursery.start(x.run)
        await x.publish(commit.raw)
        with trio.fail_after(20):
            await until((pub, obs), lambda n: n.machine.refused["unclaimed"] >= 1)
        assert not pub.board.has(commit.id) and not obs.board.has(commit.id)
        # the publisher gets the claim, then the commit: now it holds both
        assert await pub.ingest(claim.raw) is not None
        assert await pub.ingest(commit.raw) is not None
        # the observer had the commit delivered once (gossip): sync brings it again, after the claim
        with trio.fail_after(20):
            while not obs.board.has(commit.id):
                await obs.changed.wait()
        assert obs.board.has(claim.id)


def junk_reveals(job: bytes, keys: int, per_key: int) -> list[bytes]:
    out = []
    for _ in range(keys):
        k = NodeKey.from_seed(secrets.token_bytes(32))
        for _i in range(per_key):
            rev = Reveal.of(job, result_digest(1, ()), secrets.token_bytes(16), 1, (), BlobRef(bytes(32), 0), ())
            out.append(seal(k, rev).raw)
    return out


async def test_4000_reveals_of_unclaimed_keys_are_refused_and_the_job_still_decides(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        pub = c.nodes[0]
        job = await c.publish(pub, replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        with trio.fail_after(20):
            await c.wait_verdict(job, c.nodes, final=False)
        assert pub.machine.protected(pub.board.job(jid))  # type: ignore[arg-type]
        junk = junk_reveals(jid, 4, 1000)
        attackers = [MemoryNetwork(c.hub, f"X{i}", validate=validate_fact) for i in range(2)]
        for x in attackers:
            await c.nursery.start(x.run)
        for i, raw in enumerate(junk):
            await attackers[i % 2].publish(raw)
        with trio.fail_after(60):
            (obj, _, _) = await c.wait_verdict(job)
        assert obj["verdict"] == "REPRODUCED"

        def refused_all(n: Node) -> bool:
            return n.machine.refused["unclaimed"] >= len(junk)

        with trio.fail_after(60):
            await until(c.nodes, refused_all)
        junk_ids = {hashlib.sha256(r).digest() for r in junk}
        for n in c.nodes:
            held = n.board.job_fact_ids(jid)
            assert not held & junk_ids
            assert len(held) < 20  # offer, claims, select, 2 commits, 2 reveals
            st = await n.control_op("status", {})
            assert st["quotas"]["refused"]["unclaimed"] >= len(junk)
            assert parse_quota_dropped(st["quotas"])["refused unclaimed"] >= len(junk)  # status --once
            assert n.db.count() < 40
