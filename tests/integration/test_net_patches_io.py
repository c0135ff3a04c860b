"""The receive/send-path patches of p2pci.net.patches (blob throughput, issue 17), each against
real py-libp2p objects: a blob between two real nodes on loopback costs far fewer TCP receives,
socket sends and Yamux frames than Noise messages, and SecureSession reads return the bytes in
order for any mix of read sizes, a whole Noise message without a copy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.net import patches
from p2pci.store.blobs import BlobStore
from tests.integration.test_net_libp2p import start_node, wait_until


@asynccontextmanager
async def _raw_stream(name: str, handler: Callable[[Any], Awaitable[None]]) -> AsyncIterator[Any]:
    """Two real nodes; a stream of protocol `/p2pci-test/<name>/1` from the second to the first,
    whose side is handed to `handler`. Both nodes stop when the block ends."""
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    patches.apply()
    proto = TProtocol(f"/p2pci-test/{name}/1")
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery)
        b = await start_node(nursery, a.net.addrs())
        await wait_until(lambda: a.net.peer_id in {p.peer_id for p in b.net.peers()}, 10)
        a.net._host.set_stream_handler(proto, handler)
        yield await b.net._host.new_stream(ID.from_base58(a.net.peer_id), [proto])
        nursery.cancel_scope.cancel()

NOISE_MSG = 65519


async def test_a_blob_costs_fewer_receives_sends_and_frames_than_noise_messages(tmp_path: Path) -> None:
    from libp2p.stream_muxer.yamux import yamux as ymod

    patches.apply()  # before the originals are taken: they are put back at the end
    counts = {"receive": 0, "big_receive": 0, "send": 0, "frames": 0}
    recv, send, body = trio.SocketStream.receive_some, trio.SocketStream.send_all, ymod.Yamux._read_data_body

    async def receive_some(self: Any, max_bytes: int | None = None) -> bytes:
        data: bytes = await recv(self, max_bytes)
        counts["receive"] += 1
        counts["big_receive"] += len(data) > NOISE_MSG + 18  # more than one Noise message at once
        return data

    async def send_all(self: Any, data: Any) -> None:
        counts["send"] += len(data) >= NOISE_MSG  # the data sends (gossip's small ones aside)
        await send(self, data)

    async def read_data_body(self: Any, length: int) -> Any:
        if length >= NOISE_MSG:
            counts["frames"] += 1
        return await body(self, length)

    src = BlobStore(tmp_path / "src")
    size = 16 << 20
    ref = src.put_bytes(os.urandom(size))
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, blobs=src)
        me = await start_node(nursery, a.net.addrs())
        await wait_until(lambda: a.net.peer_id in {p.peer_id for p in me.net.peers()}, 10)
        assert all(patches._applied.get(n) for n in ("tcp_read_ahead", "noise_write_batch", "noise_packet_read"))
        trio.SocketStream.receive_some = receive_some  # type: ignore[method-assign]
        trio.SocketStream.send_all = send_all  # type: ignore[method-assign]
        ymod.Yamux._read_data_body = read_data_body
        try:
            with trio.fail_after(60):
                await me.net.fetch_blob(ref, BlobStore(tmp_path / "mine"), peers=[a.net.peer_id])
        finally:
            trio.SocketStream.receive_some = recv  # type: ignore[method-assign]
            trio.SocketStream.send_all = send  # type: ignore[method-assign]
            ymod.Yamux._read_data_body = body
        nursery.cancel_scope.cancel()
    messages = size // NOISE_MSG  # at least this many Noise messages went from a to me
    # upstream: 2 receives per message (its length, then its body: never more than one message at
    # once), 1 socket send and 1 Yamux frame per message
    assert counts["big_receive"] >= 1 and counts["receive"] < 2 * messages, counts  # tcp_read_ahead
    assert counts["send"] <= messages / 8, counts  # noise_write_batch: one send per Yamux frame
    assert counts["frames"] <= messages / 8, counts  # _YAMUX_FRAME frames, _open_window


class _Conn:
    """An EncryptedMsgReadWriter that hands out given messages, then b"" (closed)."""

    def __init__(self, msgs: list[bytes]) -> None:
        self.msgs = list(msgs)

    async def read_msg(self) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.msgs.pop(0) if self.msgs else b""


def _session(msgs: list[bytes]) -> Any:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.security.secure_session import SecureSession

    kp = create_new_key_pair()
    pid = ID.from_pubkey(kp.public_key)
    return SecureSession(local_peer=pid, local_private_key=kp.private_key, remote_peer=pid,
                         remote_permanent_pubkey=kp.public_key, is_initiator=True, conn=_Conn(msgs))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=12),
       reads=st.lists(st.one_of(st.none(), st.integers(1, 700)), min_size=1, max_size=30))
def test_secure_session_reads_return_the_bytes_in_order(sizes: list[int], reads: list[int | None]) -> None:
    patches.apply()
    msgs = [os.urandom(n) for n in sizes]
    stream = b"".join(msgs)

    async def main() -> bytes:
        from libp2p.io.exceptions import ConnectionClosedError

        s = _session(msgs)
        out = bytearray()
        for n in reads:
            try:
                got = await s.read(n)
            except ConnectionClosedError:
                break
            assert isinstance(got, bytes)
            assert n is None or len(got) <= n
            out += got
        return bytes(out)

    got = trio.run(main)
    assert stream.startswith(got)  # in order, nothing lost or repeated


async def test_a_read_of_one_whole_noise_message_is_not_copied() -> None:
    patches.apply()
    msg = os.urandom(NOISE_MSG)
    s = _session([b"h" * 12 + msg[:100], msg])
    assert await s.read(12) == b"h" * 12
    assert await s.read(100) == msg[:100]
    assert await s.read(NOISE_MSG) is msg  # secure_read_views: upstream copies it through a BytesIO


class _Secured:
    """The secured connection under a Yamux: records every write; `on_write` runs after each."""

    is_initiator = True

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.on_write: Any = None

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(bytes(data))
        if self.on_write is not None:
            self.on_write()


def _yamux_stream(window: int) -> tuple[Any, _Secured]:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

    secured = _Secured()
    conn = Yamux(secured, ID.from_pubkey(create_new_key_pair().public_key), is_initiator=True)  # type: ignore[arg-type]
    stream = YamuxStream(7, conn, is_initiator=True)
    stream.send_window = window
    return stream, secured


async def _frames(write: Any, size: int, window: int, refill: int = 0) -> tuple[list[bytes], int]:
    """What one write of `size` bytes puts on the connection, and the send window after it; a
    window update of `refill` arrives after every frame."""
    stream, secured = _yamux_stream(window)
    if refill:
        secured.on_write = lambda: setattr(stream, "send_window", stream.send_window + refill)
    with trio.fail_after(10):
        await write(stream, bytes(i % 251 for i in range(size)))
    return secured.writes, stream.send_window


async def test_yamux_fast_writes_put_the_same_frames_on_the_wire(monkeypatch: Any) -> None:
    """patches.yamux_write_fast: byte-identical frames and window accounting to upstream's write,
    whichever path a write takes (a short window or a write over one frame: upstream's)."""
    from libp2p.stream_muxer.yamux import yamux as ymod

    patches.apply()
    patched = ymod.YamuxStream.write
    upstream = patched.__wrapped__
    monkeypatch.setattr(ymod, "MAX_MESSAGE_SIZE", 4096)  # frames of up to 4084 bytes of data
    cases = [  # (size, window, refill, fast)
        (1, 256 * 1024, 0, True), (127, 256 * 1024, 0, True), (4084, 256 * 1024, 0, True),
        (3000, 3000, 0, True),  # exactly the window
        (4085, 256 * 1024, 0, False),  # one byte over a frame: two frames
        (10000, 256 * 1024, 0, False),
        (300, 100, 1000, False),  # a short window: a 100-byte frame, then the rest after the update
        (300, 299, 1000, False),
        (0, 256 * 1024, 0, False),  # nothing: no frame at all
    ]
    for size, window, refill, fast in cases:
        before = patches.fast_writes
        ours = await _frames(patched, size, window, refill)
        assert patches.fast_writes - before == fast, (size, window)
        assert ours == await _frames(upstream, size, window, refill), (size, window)
        assert all(f[:4] == b"\0\0\0\0" and f[4:8] == (7).to_bytes(4, "big") for f in ours[0])  # DATA, stream 7
    assert (await _frames(patched, 300, 100, 1000))[0][0][8:12] == (100).to_bytes(4, "big")


async def test_yamux_fast_write_keeps_upstreams_waits_and_errors(caplog: Any) -> None:
    import logging

    from libp2p.stream_muxer.exceptions import MuxedStreamError
    from libp2p.stream_muxer.yamux import yamux as ymod

    patches.apply()
    # a write that was cancelled before it started sends nothing and takes no window
    stream, secured = _yamux_stream(1000)
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.write(b"abc")
    assert scope.cancelled_caught and secured.writes == [] and stream.send_window == 1000
    # a writer holding the stream's write lock goes first: the next write waits behind it
    stream, secured = _yamux_stream(1000)
    await stream.rw_lock.acquire_write()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.write, b"second")
        await trio.testing.wait_all_tasks_blocked()
        assert secured.writes == []
        stream.rw_lock.release_write()
    assert len(secured.writes) == 1 and secured.writes[0].endswith(b"second")
    # a closed stream: upstream's error
    stream, secured = _yamux_stream(1000)
    stream.send_closed = True
    with pytest.raises(MuxedStreamError, match="closed for sending"):
        await stream.write(b"abc")
    # debug logging on: upstream's write, with its log lines
    stream, secured = _yamux_stream(1000)
    before = patches.fast_writes
    with caplog.at_level(logging.DEBUG, logger=ymod.logger.name):
        await stream.write(b"abc")
    assert patches.fast_writes == before and "Starts writing 3 bytes" in caplog.text
    assert len(secured.writes) == 1 and stream.send_window == 997


async def test_concurrent_writes_to_one_yamux_stream_arrive_whole() -> None:
    """patches.yamux_whole_writes: a write that takes several frames (here one longer than the
    send window, over real hosts) is not interleaved with another writer's frames on the same
    stream. Upstream released the stream's lock between frames and while it waited for a window
    update, so a second writer's frame could land in the middle of the first one's bytes (for
    pubsub, which writes one stream from its send loop and from GossipSub's own flushes: a
    corrupt RPC stream, and the peer dropped)."""
    big = bytes(i % 251 for i in range(600 * 1024))  # over the 256 KiB window: at least 3 frames
    smalls = [b"s%03d" % i for i in range(40)]
    total = len(big) + sum(map(len, smalls))
    got = bytearray()
    release, done = trio.Event(), trio.Event()

    async def handler(stream: Any) -> None:
        await release.wait()  # read nothing until every writer waits: the window runs out
        while len(got) < total:
            data = await stream.read(4096)  # small reads: the window comes back in small updates
            if not data:
                break
            got.extend(data)
        done.set()

    async with _raw_stream("whole-writes", handler) as stream:
        muxed = stream.muxed_stream
        with trio.fail_after(30):
            async with trio.open_nursery() as writers:
                writers.start_soon(stream.write, big)
                await wait_until(lambda: muxed.send_window == 0, 10)  # the big write waits mid-way
                for s in smalls:
                    writers.start_soon(stream.write, s)
                await trio.testing.wait_all_tasks_blocked()  # every small writer waits (window or lock)
                release.set()
            await done.wait()
    assert bytes(got[: len(big)]) == big  # the big write whole and first: it began first
    rest = bytes(got[len(big) :])
    assert sorted(rest[i : i + 4] for i in range(0, len(rest), 4)) == sorted(smalls)  # each small one whole


async def test_a_fast_write_waits_for_a_write_in_progress(monkeypatch: Any) -> None:
    """yamux_write_fast takes its lock-free path only when no write of the stream is in progress
    (yamux_whole_writes): a small write that arrives between the frames of a longer one goes
    after it, and no frame of the longer one is missing or reordered."""
    from libp2p.stream_muxer.yamux import yamux as ymod

    patches.apply()
    monkeypatch.setattr(ymod, "MAX_MESSAGE_SIZE", 4096)  # frames of up to 4084 bytes of data
    stream, secured = _yamux_stream(256 * 1024)
    big = bytes(i % 251 for i in range(3 * 4084))  # three frames
    async with trio.open_nursery() as nursery:
        secured.on_write = lambda: (
            nursery.start_soon(stream.write, b"small") if len(secured.writes) == 1 else None
        )
        with trio.fail_after(10):
            await stream.write(big)
    bodies = [f[12:] for f in secured.writes]
    assert bodies == [big[:4084], big[4084:8168], big[8168:], b"small"]


class _Steps(trio.abc.Instrument):
    """Counts how often one task is run: each yield of an operation is one more step."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.n = 0

    def before_task_step(self, task: Any) -> None:
        self.n += task is self.task


async def _tcp_pair() -> tuple[Any, Any, Any]:
    from libp2p.io.trio import TrioTCPStream

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    return TrioTCPStream(client), TrioTCPStream(server), listeners[0]


async def test_an_uncontended_tcp_write_and_read_yield_once() -> None:
    """tcp_lock_nowait: a write or read whose lock is free yields once (the socket's own
    checkpoint), where upstream's lock added one per lock (tcp_read_ahead's and read_lock: 3 per
    read, 2 per write). Contended writes queue in order and stay whole; cancelled, a write or read
    raises before any byte is sent or taken."""
    patches.apply()
    a, b, listener = await _tcp_pair()
    steps = _Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        await a.write(b"hello")
        writes, steps.n = steps.n, 0
        await trio.lowlevel.wait_readable(b.stream.socket)
        steps.n = 0
        got = await b.read(5)
        reads = steps.n
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert got == b"hello"
    assert (writes, reads) == (1, 1)
    # contended: two writers and two readers at once keep every write whole and in order
    parts = [bytes([i]) * 3000 for i in range(1, 40)]
    out = bytearray()

    async def reader() -> None:
        while len(out) < sum(map(len, parts)):
            out.extend(await b.read(1000))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            for p in parts:
                nursery.start_soon(a.write, p)
                await trio.lowlevel.checkpoint()  # started in this order
    assert sorted(out) == sorted(b"".join(parts))
    assert all(out[i * 3000 : (i + 1) * 3000] == bytes([out[i * 3000]]) * 3000 for i in range(len(parts)))
    # cancelled before it starts: nothing sent, nothing received
    with trio.CancelScope() as cs:
        cs.cancel()
        await a.write(b"never")
    with trio.CancelScope() as cs:
        cs.cancel()
        await b.read(5)
    await a.write(b"after")
    with trio.fail_after(5):
        assert await b.read(5) == b"after"
    for s in (a, b):
        await s.close()
    await listener.aclose()


async def test_an_uncontended_yamux_frame_yields_once_and_a_cancelled_one_encrypts_nothing() -> None:
    """_write_frame (libp2p_net._patch_yamux_framing): a frame on a free connection yields once
    (upstream: its lock, the TCP write lock, the send and a checkpoint after it); a write that is
    cancelled before it starts raises before Noise encrypts (an encrypted message that is never
    sent would leave the peer a nonce behind: the connection would stop working)."""
    import struct

    from libp2p.stream_muxer.yamux import yamux as ymod

    async with trio.open_nursery() as nursery:
        a = await start_node(nursery)
        b = await start_node(nursery, a.net.addrs())
        await wait_until(lambda: a.net.peer_id in {p.peer_id for p in b.net.peers()}, 10)
        conn = next(iter(b.net._host.get_network().get_connections()))
        mux = conn.muxed_conn
        assert isinstance(mux, ymod.Yamux)
        ping = struct.pack(ymod.YAMUX_HEADER_FORMAT, 0, ymod.TYPE_PING, ymod.FLAG_SYN, 0, 7)
        counts = []
        for _ in range(10):  # the node's own frames (heartbeats, pings) may hold the lock now and then
            steps = _Steps(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(steps)
            try:
                await mux._write_frame(ping)
            finally:
                trio.lowlevel.remove_instrument(steps)
            counts.append(steps.n)
        assert min(counts) == 1, counts
        for _ in range(3):
            with trio.CancelScope() as cs:
                cs.cancel()
                await mux._write_frame(ping)
        # nothing was encrypted without being sent: the other side still decrypts this
        # connection (a skipped nonce breaks every later message), and a fact gossiped over it
        # arrives on the same connection
        await wait_until(lambda: b.net.stats().get("gossip_mesh", 0) >= 1, 10)
        raw = b.fact("after the cancelled frames")
        await b.net.publish(raw)
        with trio.fail_after(10):
            await a.col.wait_for(hashlib.sha256(raw).digest())
        assert list(b.net._host.get_network().get_connections()) == [conn]
        assert not mux.event_shutting_down.is_set()
        nursery.cancel_scope.cancel()


async def test_an_uncontended_stream_write_and_read_yield_once() -> None:
    """stream_lock_nowait (NetStream's state lock) and libp2p_net._window_update (Yamux's window
    lock): a stream write that fits the window, and a read of bytes already buffered, yield once
    each (the socket send; Yamux's stream lock), where each free lock on the way added a yield."""
    accepted: list[Any] = []

    async def handler(stream: Any) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    async with _raw_stream("quick", handler) as out:
        assert type(out._state_lock) is patches.QuickLock
        writes = []
        for i in range(10):  # the node's own frames may hold the connection's lock now and then
            steps = _Steps(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(steps)
            try:
                await out.write(b"%d" % i)
            finally:
                trio.lowlevel.remove_instrument(steps)
            writes.append(steps.n)
        await wait_until(lambda: bool(accepted), 10)
        mine = accepted[0]
        buffers = mine.muxed_stream.conn.stream_buffers
        await wait_until(lambda: len(buffers.get(mine.muxed_stream.stream_id, b"")) == 10, 10)
        steps = _Steps(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(steps)
        try:
            got = await mine.read(100)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert got == b"0123456789"
        assert min(writes) == 1, writes
        assert steps.n == 1
        with trio.CancelScope() as cs:  # cancelled: raises before the state check, sends nothing
            cs.cancel()
            await out.write(b"never")
        await out.write(b"z")
        with trio.fail_after(10):
            assert await mine.read(100) == b"z"
