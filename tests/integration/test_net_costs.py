"""Per-message costs of the libp2p network (issue 8) and the worker's source prefetch.

Each test counts the thing that was made cheaper, so it fails if the old
behaviour comes back; the hostile-input tests in test_net_libp2p.py and
tests/e2e/ check that nothing got less safe.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.core.messages import Cancel
from p2pci.core.signing import NodeKey, seal
from p2pci.net.base import TOPIC
from p2pci.net.libp2p_net import LibP2PNetwork, _libp2p
from p2pci.testing.cluster import ScriptedRunner, open_cluster, with_timing
from p2pci.testing.net import Collector

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
FAST = dict(sync_interval=60.0, heartbeat=0.2, dial_interval=0.1, redial_min=0.1, redial_max=1.0, px_interval=0.3)


async def _wait_until(pred: Any, seconds: float) -> None:
    with trio.fail_after(seconds):
        while not pred():  # noqa: ASYNC110
            await trio.sleep(0.02)


def _fact(key: NodeKey, tag: str = "") -> bytes:
    return seal(key, Cancel(job=hashlib.sha256((tag or os.urandom(8).hex()).encode()).digest())).raw


async def _run(net: LibP2PNetwork, col: Collector, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as n:
        await n.start(net.run)
        await n.start(col.drain, net)
        task_status.started()


async def _pair(nursery: trio.Nursery) -> tuple[tuple[LibP2PNetwork, Collector, NodeKey], tuple[LibP2PNetwork, Collector]]:
    ka, kb = NodeKey.from_seed(os.urandom(32)), NodeKey.from_seed(os.urandom(32))
    ca, cb = Collector(), Collector()
    a = LibP2PNetwork(ka.seed, LOOPBACK, [], sync_source=ca, **FAST)  # type: ignore[arg-type]
    await nursery.start(_run, a, ca)
    b = LibP2PNetwork(kb.seed, LOOPBACK, a.addrs(), sync_source=cb, **FAST)  # type: ignore[arg-type]
    await nursery.start(_run, b, cb)
    await _wait_until(lambda: len(a.peers()) == 1 and len(b.peers()) == 1, 10)
    return (a, ca, ka), (b, cb)


async def _burst_a_to_b(nursery: trio.Nursery, n: int) -> None:
    (a, ca, ka), (b, cb) = await _pair(nursery)
    # gossip needs b in a's pubsub peers first: a fact that b receives by gossip shows it
    first = _fact(ka, "first")
    ca.add(first)
    await a.publish(first)
    await cb_wait(cb, first)
    raws = [_fact(ka, f"burst-{i}") for i in range(n)]
    for raw in raws:
        ca.add(raw)
        await a.publish(raw)
    with trio.fail_after(20):
        await cb.wait_count(n + 1)
    assert b.stats()["delivered"] == n + 1


async def cb_wait(col: Collector, raw: bytes) -> None:
    with trio.fail_after(10):
        await col.wait_for(hashlib.sha256(raw).digest())


async def test_window_updates_are_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    """py-libp2p sent a Yamux WINDOW_UPDATE after every read: 2-3 per gossip RPC."""
    _libp2p()
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    sent: list[int] = []
    original = YamuxStream.send_window_update

    async def counting(self: Any, increment: int, skip_lock: bool = False) -> None:
        sent.append(increment)
        await original(self, increment, skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counting)
    async with trio.open_nursery() as nursery:
        await _burst_a_to_b(nursery, 100)
        nursery.cancel_scope.cancel()
    # 101 facts of ~150 bytes are far below half a 256 KiB window: (almost) no credit needed
    assert len(sent) < 10, len(sent)


async def test_sender_record_is_verified_once_per_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pubsub RPC carries the sender's signed peer record; it was verified on each one."""
    ps_mod = _libp2p()
    cache = ps_mod.maybe_consume_signed_record
    calls: list[Any] = []
    original = cache._consume

    def counting(msg: Any, host: Any, peer_id: Any) -> bool:
        calls.append(peer_id)
        return bool(original(msg, host, peer_id))

    monkeypatch.setattr(cache, "_consume", counting)
    async with trio.open_nursery() as nursery:
        await _burst_a_to_b(nursery, 50)
        nursery.cancel_scope.cancel()
    # a handful (hello, subscriptions, first messages before the cache fills), not one per RPC
    assert 1 <= len(calls) < 10, len(calls)


@asynccontextmanager
async def _stock_peer(strict_signing: bool) -> AsyncIterator[tuple[Any, Any, Any]]:
    """A bare py-libp2p host with the library's own Pubsub (no p2pci code, no validator)."""
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.tools.anyio_service import background_trio_service

    kp = create_new_key_pair(os.urandom(32))
    host = new_host(key_pair=kp, sec_opt={NOISE_ID: NoiseTransport(kp, noise_privkey=x25519().private_key)},
                    muxer_preference="YAMUX")
    gs = GossipSub(protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12,
                   heartbeat_interval=1, spam_protection_enabled=False, eclipse_protection_enabled=False)
    ps = Pubsub(host, gs, strict_signing=strict_signing)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(ps), background_trio_service(gs):
            await ps.wait_until_ready()
            sub = await ps.subscribe(TOPIC)
            yield host, ps, sub


async def test_pubsub_signatures_signed_but_not_verified() -> None:
    """We sign our publishes (strict peers accept them) and trust our own validator, not the pubsub signature."""
    import multiaddr
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr

    key = NodeKey.from_seed(os.urandom(32))
    col = Collector()
    async with trio.open_nursery() as nursery:
        net = LibP2PNetwork(key.seed, LOOPBACK, [], sync_source=col, **FAST)  # type: ignore[arg-type]
        await nursery.start(_run, net, col)
        target = ID.from_base58(net.peer_id)
        async with _stock_peer(strict_signing=True) as (strict_host, strict_ps, strict_sub), \
                _stock_peer(strict_signing=False) as (loose_host, loose_ps, _):
            for host in (strict_host, loose_host):
                with trio.fail_after(10):
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(net.addrs()[0])))
            for ps in (strict_ps, loose_ps):
                await _wait_until(lambda ps=ps: target in ps.peer_topics.get(TOPIC, set()), 10)
            await _wait_until(lambda: len(net._pubsub.peer_topics.get(TOPIC, set())) == 2, 10)
            # ours -> a peer that verifies pubsub signatures: still accepted
            ours = _fact(key, "ours")
            col.add(ours)
            await net.publish(ours)
            with trio.fail_after(10):
                got = await strict_sub.get()
            assert bytes(got.data) == ours and got.signature
            # an unsigned pubsub message carrying a valid envelope: delivered
            other = NodeKey.from_seed(os.urandom(32))
            good = _fact(other, "unsigned but valid")
            await loose_ps.publish(TOPIC, good)
            await cb_wait(col, good)
            # an unsigned pubsub message carrying a forged envelope: rejected by our validator
            bad = bytearray(_fact(other, "forged"))
            bad[-40] ^= 1
            await loose_ps.publish(TOPIC, bytes(bad))
            await _wait_until(lambda: net.stats().get("rejected", 0) >= 1, 5)
            assert hashlib.sha256(bytes(bad)).digest() not in col.facts
        nursery.cancel_scope.cancel()


async def test_claimant_prefetches_the_source_before_building(tmp_path: Path) -> None:
    """A worker fetches a claimed job's source during the settle after its claim, not at build start.

    Ordered by events, not by a time window: every call of the worker's fetch_blob for the source
    records whether the build had started by then; the first one must come before it.
    """
    runner = ScriptedRunner()
    async with open_cluster(tmp_path, 2, runners=[None, runner], timing=with_timing(claim_window_ms=3000)) as c:
        pub, worker = c.nodes
        fetches: list[tuple[bytes, set[bytes], bool]] = []  # (blob, jobs building, runner started)
        real_fetch = worker.fetcher.fetch

        async def recording_fetch(ref: Any, peers: Any, **kw: Any) -> Any:
            fetches.append((ref.sha256, set(worker.machine.building), runner.started.is_set()))
            return await real_fetch(ref, peers, **kw)

        worker.fetcher.fetch = recording_fetch  # type: ignore[method-assign]  # the prefetch path
        job = await c.publish(pub, replicas=1, quorum=1, workers=[worker.peer_id])
        jid = bytes.fromhex(job)
        view = pub.board.job(jid)
        assert view is not None and view.offer_msg is not None
        src = view.offer_msg.source.sha256
        with trio.fail_after(30):
            await c.wait_verdict(job)
        assert runner.runs == 1
        of_source = [(jid in building, started) for blob, building, started in fetches if blob == src]
        assert of_source, "the worker never fetched the source"
        assert of_source[0] == (False, False), of_source  # the first fetch came before the build


async def test_received_messages_are_validated_in_the_read_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """patches.inline_push: no service task per received pubsub message (the validator still runs on each)."""
    from libp2p.tools.anyio_service.trio_manager import TrioManager

    from p2pci.net import patches

    tasks: list[str] = []
    original = TrioManager.run_task

    def counting(self: Any, async_fn: Any, *args: Any, **kw: Any) -> None:
        tasks.append(getattr(async_fn, "__name__", ""))
        original(self, async_fn, *args, **kw)

    monkeypatch.setattr(TrioManager, "run_task", counting)
    before = patches.inline_pushes
    async with trio.open_nursery() as nursery:
        await _burst_a_to_b(nursery, 50)
        # b may get some by sync first; every gossip copy still reaches b's push_msg (and validator)
        await _wait_until(lambda: patches.inline_pushes - before >= 51, 20)
        nursery.cancel_scope.cancel()
    assert tasks.count("push_msg") == 0, tasks.count("push_msg")


async def test_ihave_names_ids_the_peer_has_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """patches.mcache_msg_id: the message cache used from+seqno ids, so every IHAVE drew an IWANT."""
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import GossipSub
    from libp2p.pubsub.pb import rpc_pb2

    iwants: list[Any] = []

    async def counting(self: Any, msg_ids: Any, to_peer: Any) -> None:
        iwants.append(list(msg_ids))

    async with trio.open_nursery() as nursery:
        (a, ca, ka), (b, cb) = await _pair(nursery)
        raws = [_fact(ka, f"ihave-{i}") for i in range(5)]
        for raw in raws:
            ca.add(raw)
            await a.publish(raw)
        with trio.fail_after(20):
            await cb.wait_count(5)
        mcache = a._pubsub.router.mcache
        ids = mcache.window(TOPIC)
        assert {hashlib.sha256(r).digest() for r in raws} <= set(ids)  # content ids, like the seen-cache
        assert all(b._pubsub.seen_messages.has(m) for m in ids)
        monkeypatch.setattr(GossipSub, "emit_iwant", counting)
        ihave = rpc_pb2.ControlIHave(topicID=TOPIC, messageIDs=ids)
        await b._pubsub.router.handle_ihave(ihave, ID.from_base58(a.peer_id))
        assert iwants == []  # b has them all: nothing to ask for
        unseen = hashlib.sha256(b"never published").digest()
        await b._pubsub.router.handle_ihave(
            rpc_pb2.ControlIHave(topicID=TOPIC, messageIDs=[unseen]), ID.from_base58(a.peer_id)
        )
        assert iwants == [[unseen]]  # and still asks for what it lacks
        assert bytes(mcache.get(hashlib.sha256(raws[0]).digest()).data) == raws[0]  # an IWANT is served
        nursery.cancel_scope.cancel()


async def test_sender_record_is_not_rebuilt_per_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """patches.sender_record_cache: `host.get_addrs()` ran once per sent RPC to refresh the sender record."""
    from libp2p.host.basic_host import BasicHost

    calls: list[int] = []
    original = BasicHost.get_addrs

    def counting(self: Any) -> Any:
        calls.append(1)
        return original(self)

    async with trio.open_nursery() as nursery:
        monkeypatch.setattr(BasicHost, "get_addrs", counting)
        await _burst_a_to_b(nursery, 100)
        nursery.cancel_scope.cancel()
    # once per second and host (plus identify), not once per RPC (>= 101 without the patch)
    assert len(calls) < 40, len(calls)


async def test_forwarded_rpcs_are_not_copied_per_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    """patches.send_rpc_shared: GossipSub copied and re-split every RPC for every peer it sent it to."""
    from libp2p.pubsub.rpc_queue import RpcQueue

    from p2pci.net import patches

    splits: list[int] = []
    original = RpcQueue.split_rpc

    def counting(self: Any, rpc: Any) -> Any:
        splits.append(1)
        return original(self, rpc)

    monkeypatch.setattr(RpcQueue, "split_rpc", counting)
    before = patches.shared_sends
    async with trio.open_nursery() as nursery:
        await _burst_a_to_b(nursery, 50)
        nursery.cancel_scope.cancel()
    assert patches.shared_sends - before >= 51  # each fact, queued for b without a copy
    assert len(splits) < 10, len(splits)  # only control RPCs with deferred control ride the old path


async def _pubsub_reads_per_rpc(monkeypatch: pytest.MonkeyPatch, n: int) -> float:
    """Stream reads made on pubsub streams per received pubsub RPC, both nodes, during a burst of n."""
    from libp2p.network.stream.net_stream import NetStream

    ps_mod = _libp2p()
    counts = {"reads": 0, "rpcs": 0}
    read, consume = NetStream.read, ps_mod.maybe_consume_signed_record

    async def counting_read(self: Any, n: int | None = None) -> bytes:
        if str(self.get_protocol()).startswith("/meshsub/"):
            counts["reads"] += 1
        return await read(self, n)

    def counting_consume(msg: Any, host: Any, peer_id: Any) -> bool:
        counts["rpcs"] += 1  # once per RPC the read loop parsed
        return bool(consume(msg, host, peer_id))

    with monkeypatch.context() as m:
        m.setattr(NetStream, "read", counting_read)
        m.setattr(ps_mod, "maybe_consume_signed_record", counting_consume)
        async with trio.open_nursery() as nursery:
            await _burst_a_to_b(nursery, n)
            nursery.cancel_scope.cancel()
    assert counts["rpcs"] >= n // 4, counts  # (the send loop may merge queued RPCs)
    return counts["reads"] / counts["rpcs"]


async def test_pubsub_rpcs_cost_at_most_one_stream_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """patches.rpc_reader: the read loop read every RPC's length prefix a byte per stream read, then
    its body: 2-3 stream reads (each: NetStream and Yamux locks, a checkpoint, a copy) per RPC."""
    from p2pci.net import patches

    assert patches.apply()["rpc_reader"]
    with monkeypatch.context() as m:
        m.setattr(patches, "rpc_reading", False)  # read loops started now read as upstream
        upstream = await _pubsub_reads_per_rpc(monkeypatch, 60)
    patched = await _pubsub_reads_per_rpc(monkeypatch, 60)
    assert upstream >= 2.5, upstream  # our facts are over 127 bytes: a 2-byte prefix and the body
    # one read per RPC at most, fewer when several were buffered; + the read each loop waits in
    assert patched <= 1.1, patched
