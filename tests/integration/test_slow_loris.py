"""A slow-loris peer that trickles one byte at a time is cut off by the frame's deadline (issue 14).

Real py-libp2p hosts on 127.0.0.1. The read timeout is 1 s; the attacker sends a byte every
0.3 s, so every single read succeeds in time: only a deadline per frame stops it.
"""

from __future__ import annotations

import time

import trio

from p2pci.net import wire
from tests.integration.test_net_libp2p import _info, raw_peer, start_node, wait_until

TRICKLE_S = 0.3


async def trickle(stream: object, data: bytes) -> int:
    """Send `data` one byte at a time; the number sent before the server hung up."""
    sent = 0
    for b in data:
        try:
            await stream.write(bytes([b]))  # type: ignore[attr-defined]
        except Exception:
            return sent
        sent += 1
        await trio.sleep(TRICKLE_S)  # the attack's pace (not a wait for a condition)
    return sent


async def hung_up(stream: object) -> None:
    """Returns when the server closes or resets the stream."""
    try:
        while await stream.read(1 << 16):  # type: ignore[attr-defined]
            pass
    except Exception:
        pass


async def test_slow_loris_on_sync_and_peers_is_cut_off_per_frame() -> None:
    from libp2p.peer.id import ID

    async with trio.open_nursery() as nursery:
        server = await start_node(nursery, read_timeout=1.0, request_timeout=30.0)
        async with raw_peer() as (host, _):
            with trio.fail_after(10):
                await host.connect(_info(server.net.addrs()[0]))
            target = ID.from_base58(server.net.peer_id)
            hello = wire.sync_hello([bytes(32)] * 20)  # ~650 bytes: 3 min at this pace
            for proto, data, counter in ((wire.PROTO_SYNC, hello, "sync_bad_streams"),
                                         (wire.PROTO_PEERS, wire.peers_request(["/ip4/1.2.3.4/tcp/1"] * 16), "px_bad_streams")):
                stream = await host.new_stream(target, [proto])
                t0 = time.monotonic()
                with trio.fail_after(8):  # a per-read timeout would hold on for minutes
                    async with trio.open_nursery() as n:
                        n.start_soon(trickle, stream, data)
                        await hung_up(stream)
                        n.cancel_scope.cancel()
                took = time.monotonic() - t0
                assert took < 6, took
                await wait_until(lambda c=counter: server.net.stats().get(c, 0) >= 1, 5)
        nursery.cancel_scope.cancel()


async def test_a_big_declared_frame_trickled_is_cut_off_by_the_request_deadline() -> None:
    """A sync hello that declares the largest frame (8 MiB: its own deadline is 1 s + 16 s at
    FRAME_MIN_RATE) and then trickles: the frame deadline alone would hold the stream 17 s;
    the whole exchange's deadline (request_timeout, here 2 s) cuts it off first."""
    from libp2p.peer.id import ID

    async with trio.open_nursery() as nursery:
        server = await start_node(nursery, read_timeout=1.0, request_timeout=2.0)
        assert wire.frame_deadline(1.0, wire.MAX_SYNC_FRAME) > 15
        async with raw_peer() as (host, _):
            with trio.fail_after(10):
                await host.connect(_info(server.net.addrs()[0]))
            stream = await host.new_stream(ID.from_base58(server.net.peer_id), [wire.PROTO_SYNC])
            t0 = time.monotonic()
            await stream.write(wire.LEN.pack(wire.MAX_SYNC_FRAME))  # the header at once: in time
            with trio.fail_after(12):  # without the request deadline: 17 s
                async with trio.open_nursery() as n:
                    n.start_soon(trickle, stream, b"\x81" * 200)
                    await hung_up(stream)
                    n.cancel_scope.cancel()
            took = time.monotonic() - t0
            assert took < 8, took
            await wait_until(lambda: server.net.stats().get("sync_bad_streams", 0) >= 1, 5)
        nursery.cancel_scope.cancel()


def test_frame_deadline_grows_with_the_declared_size_only() -> None:
    assert wire.frame_deadline(10.0, 0) == 10.0
    assert wire.frame_deadline(10.0, wire.MAX_SYNC_FRAME) == 10.0 + wire.MAX_SYNC_FRAME / wire.FRAME_MIN_RATE
