"""LibP2PNetwork: real py-libp2p hosts on 127.0.0.1 in one trio run."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from p2pci.core.messages import Cancel
from p2pci.core.signing import NodeKey, peer_id_of, seal
from p2pci.net.base import Network
from p2pci.net.libp2p_net import LibP2PNetwork, libp2p_peer_id
from p2pci.net.testing import Collector

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
FAST = dict(sync_interval=0.5, heartbeat=0.2, dial_interval=0.1, redial_min=0.1, redial_max=1.0, px_interval=0.3)


@dataclass
class Node:
    net: LibP2PNetwork
    col: Collector
    key: NodeKey
    cancel: trio.CancelScope

    def fact(self, tag: str = "") -> bytes:
        raw = seal(self.key, Cancel(job=hashlib.sha256((tag or os.urandom(8).hex()).encode()).digest())).raw
        self.col.add(raw)
        return raw


async def _run_node(net: LibP2PNetwork, col: Collector, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as n:
            await n.start(net.run)
            await n.start(col.drain, net)
            task_status.started(scope)


async def start_node(nursery: trio.Nursery, bootstrap: list[str] | None = None, seed: bytes | None = None,
                     **kw: Any) -> Node:
    key = NodeKey.from_seed(seed or os.urandom(32))
    col = Collector()
    opts = dict(FAST)
    opts.update(kw)
    net = LibP2PNetwork(key.seed, LOOPBACK, bootstrap or [], sync_source=col, **opts)
    scope = await nursery.start(_run_node, net, col)
    return Node(net, col, key, scope)


@asynccontextmanager
async def line(n: int, **kw: Any) -> AsyncIterator[list[Node]]:
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for _ in range(n):
            nodes.append(await start_node(nursery, nodes[-1].net.addrs() if nodes else [], **kw))
        yield nodes
        nursery.cancel_scope.cancel()


async def wait_until(pred: Any, seconds: float) -> None:
    """Poll a condition under fail_after (the house rule's second option)."""
    with trio.fail_after(seconds):
        while not pred():  # noqa: ASYNC110
            await trio.sleep(0.02)


def test_peer_id_matches_libp2p() -> None:
    for seed in (bytes(32), b"\x01" * 32, os.urandom(32)):
        assert peer_id_of(NodeKey.from_seed(seed).public) == libp2p_peer_id(seed)


async def test_line_of_five_gossip_and_peer_exchange() -> None:
    async with line(5) as nodes:
        assert isinstance(nodes[0].net, Network)
        # peer exchange: every node ends with >= 2 peers although each dialed one
        await wait_until(lambda: all(len(n.net.peers()) >= 2 for n in nodes), 10)
        raw = nodes[0].fact()
        await nodes[0].net.publish(raw)
        fid = hashlib.sha256(raw).digest()
        with trio.fail_after(5):
            for n in nodes[1:]:
                await n.col.wait_for(fid)
        raw2 = nodes[4].fact()
        await nodes[4].net.publish(raw2)
        with trio.fail_after(5):
            await nodes[0].col.wait_for(hashlib.sha256(raw2).digest())
        assert nodes[0].net.stats().get("delivered", 0) == 1  # own fact not echoed back


async def test_late_joiner_gets_fifty_facts_by_sync() -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery)
        b = await start_node(nursery, a.net.addrs())
        raws = [a.fact(f"late-{i}") for i in range(50)]
        for raw in raws:
            await a.net.publish(raw)
        with trio.fail_after(10):
            await b.col.wait_count(50)
        c = await start_node(nursery, b.net.addrs(), sync_interval=60)  # only the on-connect sync
        with trio.fail_after(10):
            await c.col.wait_count(50)
        assert c.net.stats().get("synced", 0) >= 1
        nursery.cancel_scope.cancel()
