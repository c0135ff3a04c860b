"""MemoryNetwork: the in-memory hub keeps the Network semantics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pci.core.errors import ProtocolError
from p2pci.net.base import BlobUnavailable, Network, PeerEvent
from p2pci.net.memory import MemoryHub, MemoryNetwork
from p2pci.store.blobs import BlobStore
from p2pci.testing.net import Collector, fact_id, fake_validate


async def start(nursery: trio.Nursery, hub: MemoryHub, name: str, **kw: object) -> tuple[MemoryNetwork, Collector]:
    col = Collector()
    net = MemoryNetwork(hub, name, validate=fake_validate, sync_source=col, **kw)  # type: ignore[arg-type]
    await nursery.start(net.run)
    await nursery.start(col.drain, net)
    return net, col


async def test_is_a_network() -> None:
    assert isinstance(MemoryNetwork(MemoryHub(), "A", validate=fake_validate), Network)


async def test_flood_through_a_line_and_no_echo() -> None:
    hub = MemoryHub(full_mesh=False)
    async with trio.open_nursery() as n:
        nodes = [await start(n, hub, f"N{i}") for i in range(5)]
        for i in range(1, 5):
            hub.connect(f"N{i - 1}", f"N{i}")
        raw = b"fact:hello"
        nodes[0][1].add(raw)
        await nodes[0][0].publish(raw)
        with trio.fail_after(5):
            for _, col in nodes[1:]:
                await col.wait_for(fact_id(raw))
        assert nodes[4][1].senders[fact_id(raw)] == "N3"
        assert nodes[0][0].stats().get("delivered", 0) == 0  # not echoed back to the publisher
        # a second publish of the same fact is not delivered twice
        await nodes[0][0].publish(raw)
        await trio.testing.wait_all_tasks_blocked()
        assert all(col_net.stats().get("delivered", 0) == 1 for col_net, _ in nodes[1:])
        n.cancel_scope.cancel()


async def test_invalid_is_dropped_counted_and_not_forwarded() -> None:
    hub = MemoryHub(full_mesh=False)
    async with trio.open_nursery() as n:
        a, ca = await start(n, hub, "A")
        b, cb = await start(n, hub, "B")
        c, cc = await start(n, hub, "C")
        hub.connect("A", "B")
        hub.connect("B", "C")
        with pytest.raises(ProtocolError):
            await a.publish(b"garbage")
        a._gossip(b"garbage", exclude=None)  # a hostile node sends it anyway
        a._gossip(b"x" * (1 << 20), exclude=None)
        await trio.testing.wait_all_tasks_blocked()
        assert b.stats()["rejected"] == 2
        assert c.stats().get("rejected", 0) == 0
        assert not cb.facts and not cc.facts
        await a.publish(b"fact:still works")
        with trio.fail_after(5):
            await cc.wait_count(1)
        n.cancel_scope.cancel()


async def test_late_joiner_and_partition_converge_by_sync() -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as n:
        a, ca = await start(n, hub, "A", sync_interval=0.05)
        b, cb = await start(n, hub, "B", sync_interval=0.05)
        for i in range(50):
            raw = f"fact:{i}".encode()
            ca.add(raw)
            await a.publish(raw)
        with trio.fail_after(5):
            await cb.wait_count(50)
        c, cc = await start(n, hub, "C", sync_interval=0.05)
        with trio.fail_after(10):
            await cc.wait_count(50)
        # partition, publish on both sides, heal
        hub.partition({"A"}, {"B", "C"})
        left, right = b"fact:left", b"fact:right"
        ca.add(left)
        await a.publish(left)
        cb.add(right)
        await b.publish(right)
        with trio.fail_after(5):
            await cc.wait_for(fact_id(right))
        assert fact_id(right) not in ca.facts and fact_id(left) not in cb.facts
        hub.heal()
        with trio.fail_after(10):
            await ca.wait_for(fact_id(right))
            await cb.wait_for(fact_id(left))
            await cc.wait_for(fact_id(left))
        n.cancel_scope.cancel()


async def test_loss_is_repaired_by_sync() -> None:
    hub = MemoryHub(loss=1.0)
    async with trio.open_nursery() as n:
        a, ca = await start(n, hub, "A", sync_interval=0.05)
        b, cb = await start(n, hub, "B", sync_interval=0.05)
        raw = b"fact:lost"
        ca.add(raw)
        await a.publish(raw)
        assert a.stats()["lost"] == 1
        with trio.fail_after(5):
            await cb.wait_for(fact_id(raw))
        n.cancel_scope.cancel()


async def test_delay_and_peer_events(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryHub(delay=3.0)
    async with trio.open_nursery() as n:
        a, ca = await start(n, hub, "A")
        events = a.events()
        b, cb = await start(n, hub, "B")
        assert await events.receive() == PeerEvent("B", True)
        assert [p.peer_id for p in a.peers()] == ["B"]
        t0 = trio.current_time()
        await a.publish(b"fact:slow")
        with trio.fail_after(5):
            await cb.wait_count(1)
        assert trio.current_time() - t0 >= 3.0
        n.cancel_scope.cancel()


async def test_blob_fetch_verifies_and_tries_next(tmp_path: Path) -> None:
    hub = MemoryHub()
    good, bad, mine = BlobStore(tmp_path / "g"), BlobStore(tmp_path / "b"), BlobStore(tmp_path / "m")
    data = b"blob" * 100_000
    ref = good.put_bytes(data)
    # the bad peer holds corrupt bytes under the same name
    bad.path(ref.sha256).parent.mkdir(parents=True, exist_ok=True)
    bad.path(ref.sha256).write_bytes(b"x" * len(data))
    async with trio.open_nursery() as n:
        me, _ = await start(n, hub, "M")
        await start(n, hub, "A", blobs=bad)
        await start(n, hub, "B", blobs=good)
        path = await me.fetch_blob(ref, mine, peers=["A", "B"])
        assert hashlib.sha256(path.read_bytes()).digest() == ref.sha256
        assert me.stats()["blob_rejected"] == 1
        other = BlobStore(tmp_path / "o")
        with pytest.raises(BlobUnavailable):
            await me.fetch_blob(ref, other, peers=["A"])
        assert not other.has(ref.sha256)
        n.cancel_scope.cancel()


async def test_facts_dropped_on_a_full_channel_come_back_by_sync() -> None:
    hub = MemoryHub()
    async with trio.open_nursery() as n:
        a, ca = await start(n, hub, "A", sync_interval=0.05)
        col = Collector()
        b = MemoryNetwork(hub, "B", validate=fake_validate, sync_source=col, facts_buffer=2, sync_interval=0.05)
        await n.start(b.run)
        for i in range(5):
            raw = f"fact:burst-{i}".encode()
            ca.add(raw)
            await a.publish(raw)
        await trio.testing.wait_all_tasks_blocked()
        assert b.stats()["dropped"] >= 3  # nobody reads B's facts yet
        await n.start(col.drain, b)
        with trio.fail_after(5):
            await col.wait_count(5)
        n.cancel_scope.cancel()
