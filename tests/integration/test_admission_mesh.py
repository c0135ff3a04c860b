"""Per-job admission in a mesh of daemons (docs/protocol.md §4.8, docs/security.md "Flood the board").

* A commit that arrives (by gossip) before its signer's claim is refused and forgotten, and sync
  delivers it once the claim is there.
* The audit's attack: 4,000 reveals from 4 fresh keys that never claimed, through 2 attacker
  peers, into a job in progress: none is stored anywhere, every one is counted, and the job
  still reaches its verdict.
* Claims of 1,000 fresh keys (each with the identity proof the offer demands, no more) into one
  job: every node stores MAX_CLAIMANTS of them and counts the rest; a worker that joins later
  with a stronger proof is still taken, selected, and the job reproduces.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from p2pci.core.board import MAX_CLAIMANTS, MAX_TIER
from p2pci.core.identity import identity_bits, mint
from p2pci.core.messages import BlobRef, Claim, Commit, Reveal
from p2pci.core.results import result_digest
from p2pci.core.signing import NodeKey, seal
from p2pci.daemon.node import Node, validate_fact
from p2pci.net.memory import MemoryNetwork
from p2pci.testing.cluster import CLUSTER_IDENTITY_BITS, ScriptedRunner, open_cluster, sealed_claim
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


def junk_claims(job: bytes, keys: int, lease_until: int, bits: int) -> list[bytes]:
    """One claim of each of `keys` fresh keys, each with an identity proof of exactly `bits`."""
    out = []
    for _ in range(keys):
        k = NodeKey.from_seed(secrets.token_bytes(32))
        i = 0
        while identity_bits(k.public, n := i.to_bytes(8, "big")) != bits:
            i += 1
        out.append(seal(k, Claim(job, lease_until, n)).raw)
    return out


async def test_claims_of_1000_fresh_keys_are_bounded_and_a_stronger_worker_is_still_selected(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        pub = c.nodes[0]
        job = await c.publish_seen(pub, c.nodes, replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        offer = pub.board.job(jid).offer_msg  # type: ignore[union-attr]
        assert offer is not None and offer.identity_bits == CLUSTER_IDENTITY_BITS
        # leases already over: the publisher lists no lapsed claim, so no round selects junk and
        # the stronger worker below is the only candidate (what is bounded here is storage;
        # selection among live Sybil claims is security.md's "Sybil in open mode")
        junk = junk_claims(jid, 1000, offer.created + 1, CLUSTER_IDENTITY_BITS)
        x = MemoryNetwork(c.hub, "X", validate=validate_fact)
        await c.nursery.start(x.run)
        for raw in junk:
            await x.publish(raw)
        junk_ids = {hashlib.sha256(r).digest() for r in junk}

        def settled(n: Node) -> bool:  # every junk claim stored or refused (at least once)
            return len(n.board.job_fact_ids(jid) & junk_ids) + n.machine.refused["claimants"] >= len(junk)

        with trio.fail_after(60):
            await until(c.nodes, settled)
        for n in c.nodes:
            view = n.board.job(jid)
            assert view is not None
            assert len(view.ids & junk_ids) == MAX_CLAIMANTS == view.claimant_tiers[CLUSTER_IDENTITY_BITS]
            assert len(view.ids) == 1 + MAX_CLAIMANTS  # the offer and the junk it took
            st = await n.control_op("status", {})
            assert st["quotas"]["refused"]["claimants"] >= len(junk) - MAX_CLAIMANTS
            assert parse_quota_dropped(st["quotas"])["refused claimants"] >= len(junk) - MAX_CLAIMANTS
        # two honest workers with a stronger proof (12 bits) join: taken, selected, they build
        workers = []
        for i in (2, 3):
            wkey = NodeKey.from_seed(hashlib.sha256(f"node{i}".encode()).digest())  # add_node's key
            strong = mint(wkey.public, 12)
            assert CLUSTER_IDENTITY_BITS < identity_bits(wkey.public, strong) <= MAX_TIER
            worker = await c.add_node(ScriptedRunner(), identity=strong)
            assert worker.me == wkey.public
            workers.append(wkey.public)
        with trio.fail_after(60):
            objs = await c.wait_verdict(job)
        assert [o["verdict"] for o in objs] == ["REPRODUCED"] * 4
        for n in c.nodes:
            view = n.board.job(jid)
            assert view is not None
            assert all(w in view.claims and w in view.commits for w in workers)
            assert len(view.claims) <= MAX_CLAIMANTS + 2
