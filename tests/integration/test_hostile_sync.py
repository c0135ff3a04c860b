"""Hostile `/p2pci/sync/1` servers and clients against a real LibP2PNetwork (real py-libp2p hosts).

The node syncs with every peer it connects to (its first contact): a raw host that serves the
sync protocol is a sync *server* the node trusts for nothing but the bytes it sends.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import trio

from p2pci.net import wire
from tests.integration.test_net_libp2p import _info, raw_peer, start_node, wait_until

# A sync reply frame of the largest size holding nothing but empty facts: ~4.2 million of them.
EMPTIES = (wire.MAX_SYNC_FRAME - 64) // 2


async def _read_frame(stream: Any) -> bytes:
    n = wire.parse_length(await stream.read(4), wire.MAX_SYNC_FRAME)
    body = b""
    while len(body) < n:
        part = await stream.read(n - len(body))
        if not part:
            raise EOFError
        body += part
    return body


def sync_server(reply: bytes, served: list[int]) -> Callable[[Any], Awaitable[None]]:
    """A sync handler that answers every hello with `reply` (a framed reply) and counts rounds."""

    async def handle(stream: Any) -> None:
        served.append(1)
        try:
            await _read_frame(stream)
            await stream.write(reply)
            await _read_frame(stream)  # the client's third frame
        except Exception:
            pass

    return handle


async def test_a_sync_reply_of_four_million_empty_facts_is_refused_unread() -> None:
    """An 8 MiB reply of empty byte strings decoded into a list of 4.2 million, and every one was
    checked and its id remembered for the next round (`more` true: 16 rounds): ~360 MB and ~28 s
    of CPU per round, 1.2 GB after three rounds. A frame's lists are bounded before they are
    built (wire.MAX_FACTS): the reply is a bad frame, nothing in it is looked at."""
    body = msgpack.packb({"facts": [b""] * EMPTIES, "want": [], "more": True}, use_bin_type=True)
    assert len(body) <= wire.MAX_SYNC_FRAME
    served: list[int] = []
    async with trio.open_nursery() as nursery:
        async with raw_peer() as (host, _):
            host.set_stream_handler(wire.PROTO_SYNC, sync_server(wire.frame(body), served))
            node = await start_node(nursery, sync_interval=600)
            with trio.fail_after(10):
                await host.connect(_info(node.net.addrs()[0]))
            # unfixed: the first round's 4.2 million facts take ~28 s to go through, before any failure
            await wait_until(lambda: node.net.stats().get("sync_failures", 0) >= 1, 10)
            stats = node.net.stats()
            assert stats.get("received", 0) == 0, stats  # not one fact of it was looked at
            assert len(served) == 1
        nursery.cancel_scope.cancel()


async def test_a_sync_server_that_sends_junk_is_asked_no_more_rounds() -> None:
    """A server that answers `more: true` to every round with 100,000 junk facts (within the
    frame's bounds) had each round's ids remembered and was asked again, 16 rounds: 1.6 million
    facts checked. One round with a fact that is not a valid envelope ends the exchange."""
    junk = [os.urandom(8) for _ in range(wire.MAX_IDS)]  # the most a frame may hold (wire.MAX_FACTS)
    reply = wire.sync_reply(junk, [], True)
    served: list[int] = []
    async with trio.open_nursery() as nursery:
        async with raw_peer() as (host, _):
            host.set_stream_handler(wire.PROTO_SYNC, sync_server(reply, served))
            node = await start_node(nursery, sync_interval=600)
            with trio.fail_after(10):
                await host.connect(_info(node.net.addrs()[0]))
            await wait_until(lambda: node.net.stats().get("sync_bad_servers", 0) >= 1, 20)
            # the exchange has returned: no round follows (the periodic sync is 10 minutes away)
            assert len(served) == 1, len(served)
            stats = node.net.stats()
            assert stats["received"] == wire.MAX_IDS and stats["syncs"] == 1, stats
        nursery.cancel_scope.cancel()


async def test_a_sync_client_pushing_four_million_empty_facts_is_refused_unread() -> None:
    """The same 8 MiB of empty facts as a client's third frame: each was hashed and counted as
    `unasked`, 4.2 million of them with no checkpoint in between (the node answered nothing else
    for seconds). Now a bad frame, nothing in it looked at."""
    from libp2p.peer.id import ID

    body = msgpack.packb({"facts": [b""] * EMPTIES}, use_bin_type=True)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, sync_interval=600)
        async with raw_peer() as (host, _):
            with trio.fail_after(10):
                await host.connect(_info(node.net.addrs()[0]))
            stream = await host.new_stream(ID.from_base58(node.net.peer_id), [wire.PROTO_SYNC])
            await stream.write(wire.sync_hello([]))
            with trio.fail_after(5):
                await _read_frame(stream)
            await stream.write(wire.frame(body))
            await wait_until(lambda: node.net.stats().get("sync_bad_streams", 0) >= 1, 10)
            stats = node.net.stats()
            assert stats.get("received", 0) == 0, stats
        nursery.cancel_scope.cancel()
