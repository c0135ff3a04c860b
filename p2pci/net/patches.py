"""Patches to py-libp2p 0.8.1, in one place, each behind a version guard.

Every patch names the upstream code it changes and why; each has a test in
tests/integration/test_net_reach.py, test_net_costs.py, test_net_patches_io.py or
test_net_mesh_backoff.py (the RPC
framing of rpc_reader also in tests/unit/test_net_rpc_reader.py) that fails
without it. `apply()` is
idempotent and runs once per process (LibP2PNetwork.run calls it). On any
other py-libp2p version the patches are *not* applied: a warning is logged
and the affected behaviour falls back to upstream's, because a patch written
against 0.8.1 internals may be wrong for a later release (re-check each one,
then bump PATCHED_FOR).

Patches written so that they could be sent upstream as they are:

* `stream_handler_guard`: an exception raised by any stream handler
  propagated out of `SwarmConn._handle_muxed_stream`
  (network/connection/swarm_connection.py:309) into the connection's
  nursery and from there out of `host.run()`: one bad handler (ours, or
  one of py-libp2p's own, e.g. a relay STOP stream from a hostile peer)
  killed the whole daemon. The patch catches `Exception` (never
  cancellation), logs it, counts it and resets the stream.
* `inline_push`: `Pubsub.continuously_read_stream` (pubsub/pubsub.py:580)
  handed every received message to `self.manager.run_task(self.push_msg,
  ...)`: a new service task per message and per copy (duplicates
  included), and `TrioManager.run_task` finds the parent task by walking
  the whole task tree (`_find_parent_task`, O(tasks)). At 20 daemons that
  was 7-9 % of a daemon's CPU, more than our validator. When every
  validator of the message's topics is synchronous, `push_msg` cannot
  block (validation, the seen check and GossipSub's forwarding only
  enqueue), so the patch awaits it in the read loop instead; a message
  with an async validator still gets its own task (it may wait up to
  `validation_timeout`). Every message is still validated before it is
  delivered or forwarded: `push_msg` itself is unchanged. An exception in
  `push_msg` is logged and counted (`push_errors`) and the read loop goes
  on, where a task's exception used to stop the pubsub service.
* `rpc_reader`: the read loop read each RPC with `read_varint_prefixed_bytes_limited`
  (utils/varint.py:159): one stream read per byte of the length prefix and one for the body,
  2-3 per RPC, and each stream read goes through NetStream's state lock, Yamux's stream lock,
  its debug formatting and window accounting, and a trio checkpoint. The patch reads up to
  `RPC_READ` (64 KiB) of whatever the stream has buffered and parses every complete RPC out of
  its own buffer (`_RpcReader`), reading again only when the next RPC is incomplete: at most
  one read per RPC, fewer when several arrived together. Same framing, same errors (a prefix
  over 10 bytes or 64 bits: ParseError; a length over `max_inbound_rpc_size`: MessageTooLarge,
  raised before the body is read, so the stream is reset and the peer dropped as before), and
  the buffer never holds more than one incomplete RPC and one read. Every RPC is still a
  checkpoint (one from the buffer too), as with upstream's reads.
* `mcache_msg_id`: GossipSub's `MessageCache.put` (pubsub/mcache.py:73)
  keys messages by `from + seqno` whatever `msg_id_constructor` the Pubsub
  was built with, while the seen-cache, IHAVE handling and IDONTWANT use
  the Pubsub's ids. With content ids (ours: sha256 of the data) every
  IHAVE a node gossips names ids no peer has "seen", so every peer answers
  with an IWANT for every message of the last `gossip_window` heartbeats
  and receives full copies it already had: at 20 daemons, most of the
  idle CPU and a large share of the CPU per fact. The patch gives the
  cache the Pubsub's id function when the router is attached
  (`GossipSub.attach`), so IHAVE/IWANT use the same ids as everything else.
* `sender_record_cache`: GossipSub attaches our signed peer record to every
  RPC it sends (`env_to_send_in_RPC`, peer/peerstore.py:68) and rebuilds
  `host.get_addrs()` (multiaddr parsing and formatting) each time to see
  whether the cached record is still current: ~6 % of a daemon's CPU at
  20 daemons, once per forwarded message. The patch keeps the result per
  host for `RECORD_TTL_S` (10 s; 1 s until issue 17's third pass, when the
  refresh at every heartbeat was still ~3 % of a daemon's CPU at 20
  daemons); a record may lag an address change (a new relay reservation)
  by that long, which its readers (a peerstore hint; peer exchange
  carries addresses too) do not notice.
* `send_rpc_shared`: `GossipSub.send_rpc` (pubsub/gossipsub.py:2029) copied
  the RPC (`CopyFrom`) and ran `RpcQueue.split_rpc` (a `ByteSize()` per
  item) for every peer it forwards a message to, in case deferred control
  messages must ride along. When nothing is deferred for that peer and the
  RPC fits `max_message_size`, the patch queues the one RPC object for
  every peer (queued RPCs are only read: serialized by the send loop), and
  otherwise calls upstream's code. Drops and their accounting are upstream's
  (`_handle_dropped_rpc`).

The receive and send path of every stream (blob throughput, issue 17; a receiver spent most of
its CPU per Noise message and per Yamux frame, in Python, and copied each byte 8-10 times):

* `tcp_read_ahead`: `TrioTCPStream.read(n)` (io/trio.py:49) called `receive_some(n)`, and
  Noise's msgio reads each message as read(2) then read(len): two receive calls (each a trio
  checkpoint and a syscall) per 64 KiB message. The patch receives up to `READ_AHEAD` (256 KiB)
  and serves reads from that buffer (a second reader waits on a lock and then takes what the
  first left, so bytes never reorder).
* `tcp_lock_nowait`: `TrioTCPStream.write` and `.read` (io/trio.py:30 and :49) take a `trio.Lock`
  around every send and receive, and `Lock.acquire` yields to the scheduler even when the lock is
  free: a second yield per send (the socket's own is the first), and with `tcp_read_ahead`'s lock
  two more per receive (that lock, then upstream's `read_lock` under it). A free lock is now taken
  with `acquire_nowait` (what `acquire` does after its yield; a trio lock with waiters is never
  free, it is handed over), and `tcp_read_ahead` receives without upstream's `read_lock` (every
  read goes through its own lock). The socket operation under it still checks for cancellation
  before it sends or takes a byte and yields after, so each read and write is still a checkpoint;
  a busy lock is waited for as before. Same errors as upstream's (a reset is ConnectionClosedError;
  a local close: a write returns, a read returns b""). ~5 us per yield, 3 per gossip copy.
* `stream_lock_nowait`: `NetStream` (network/stream/net_stream.py:149) checks its state under
  `_state_lock` at the start of every read and write, and `Lock.acquire` yields even when the lock
  is free: one more yield per pubsub RPC sent and per stream read. Each NetStream's `_state_lock`
  (used only by `async with`) is a `QuickLock`: it checks for cancellation as `acquire` does,
  takes a free lock without the yield, and waits for a held one in FIFO order as before. The read
  or write under it still yields in the muxer.
* `noise_packet_read`: `BaseMsgReadWriter.read_msg` (io/msgio.py:42) read the body with
  `read_exactly`, which copies it into a bytearray and out again; the patch returns the read
  as it is when it is whole (with `tcp_read_ahead`, almost always).
* `secure_read_views`: `SecureSession.read` (security/secure_session.py:95) wrote every
  decrypted message into a BytesIO and copied each read out of it; the patch keeps the rest of
  the last message as a memoryview, returns a whole message uncopied, and fills a larger read
  into one preallocated buffer.
* `yamux_body_read`: `Yamux._read_data_body` (stream_muxer/yamux/yamux.py:1177) went through
  `read_exactly` (two more copies); the patch reads the body in one call and hands Yamux the
  buffer (it only `extend`s the stream's buffer with it). When the body is already decrypted
  (it came in the Noise message of its header, as every frame we and py-libp2p write does) it
  is taken without the read's deadline: a `trio.fail_after` scope per frame, and the
  environment lookup of its timeout, were ~3 % of a gossiping daemon's CPU.
* `noise_write_batch`: `NoiseTransportReadWriter.write_msg` (security/noise/io.py:59) sent a
  write larger than one Noise message as one socket write per 65519 bytes; the patch encrypts
  them all and sends them in one write (the Yamux write lock already keeps frames whole).
* `yamux_whole_writes`: `YamuxStream.write` (stream_muxer/yamux/yamux.py:229) holds the stream's
  write lock only while it cuts one frame, and not while it sends that frame or waits for a window
  update. A write longer than the send window or than one frame is several frames, and a second
  writer of the same stream could put its frames between them: the peer reads the two writes'
  bytes mixed. Pubsub writes each peer's stream from its send loop and from GossipSub's own
  flushes, so a long RPC to a peer with a short window arrived corrupt and the peer dropped the
  stream. The patch holds a per-stream lock (FIFO) over each whole write; `yamux_write_fast`'s
  lock-free path is taken only when no write holds it.
* `yamux_write_fast`: `YamuxStream.write` (stream_muxer/yamux/yamux.py:229) took the stream's
  read-write lock and its window lock (two checkpoints), formatted a debug line and built the
  header with `struct.pack` for every write, also for a small one that fits the send window, such
  as every pubsub RPC. When the write fits the window and one frame, the stream is open, neither
  lock is held and debug logging is off, the patch decrements the window and writes the same
  frame (same header, same bytes) without the locks: nothing else runs between the checks and the
  frame, as under the locks. A write that was cancelled before it started still raises Cancelled
  before the window is touched; every other write takes upstream's path (under
  `yamux_whole_writes`' lock).
* `keep_live_subscriptions`: `Pubsub._handle_dead_peer` (pubsub/pubsub.py:1129) runs when our
  stream to a peer fails (a write to a reset stream) or its stream to us does. It forgets every
  topic the peer announced and then, the peer being still connected, opens a new stream to it,
  which serves no topic: a peer announces its subscriptions once, when its own stream to us
  opens. A connected peer so fell out of the mesh and out of our forwarding until it
  reconnected. With the patch a still-connected peer keeps the topics it announced (an
  unsubscribe on its stream still removes one); a disconnected one loses them as before.

With the Yamux frames of one blob batch (`libp2p_net._patch_yamux_framing`) and a receive
window opened for the whole range (`libp2p_net._open_window`), a 1 MiB blob batch is one Yamux
frame, 16 Noise messages and one socket write.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

PATCHED_FOR = "0.8.1"

_applied: dict[str, bool] = {}
handler_errors = 0  # stream handler exceptions caught by stream_handler_guard
inline_pushes = 0  # received pubsub messages validated in the read loop (inline_push)
push_errors = 0  # exceptions out of push_msg caught by inline_push


def libp2p_version() -> str:
    try:
        return metadata.version("libp2p")
    except metadata.PackageNotFoundError:
        return "unknown"


_F = TypeVar("_F", bound=Callable[..., Any])


def _replace(mark: str, name: str, *owners: Any) -> Callable[[_F], _F]:
    """Decorator: install the function as `owner.name` on every owner, marked with the attribute
    `mark`, unless an owner's `name` already carries that mark (installed once per process)."""

    def install(replacement: _F) -> _F:
        if any(getattr(getattr(owner, name, None), mark, False) for owner in owners):
            return replacement
        setattr(replacement, mark, True)
        for owner in owners:
            setattr(owner, name, replacement)
        return replacement

    return install


def _stream_handler_guard() -> None:
    from libp2p.network.connection.swarm_connection import SwarmConn

    original: Callable[..., Any] = SwarmConn._handle_muxed_stream

    @_replace("_p2pci_guard", "_handle_muxed_stream", SwarmConn)
    async def guarded(self: Any, muxed_stream: Any) -> None:
        global handler_errors
        try:
            await original(self, muxed_stream)
        except Exception as exc:  # never BaseException: cancellation must pass
            handler_errors += 1
            log.warning("stream handler failed (stream reset, connection kept): %r", exc)
            try:
                await muxed_stream.reset()
            except Exception:
                pass


def _inline_push() -> None:
    import libp2p.pubsub.pubsub as ps_mod
    from libp2p.io.exceptions import IOException, MessageTooLarge
    from libp2p.network.connection.exceptions import RawConnError
    from libp2p.network.stream.exceptions import StreamEOF, StreamError
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.utils.varint import read_varint_prefixed_bytes_limited

    Pubsub = ps_mod.Pubsub

    async def push(self: Any, peer_id: Any, msg: Any) -> None:
        global inline_pushes, push_errors
        if any(v.is_async for v in self.get_msg_validators(msg)):
            self.manager.run_task(self.push_msg, peer_id, msg)
            return
        inline_pushes += 1
        try:
            await self.push_msg(peer_id, msg)
        except Exception as exc:  # never BaseException: cancellation must pass
            push_errors += 1
            log.warning("pubsub push_msg failed (message dropped): %r", exc)

    @_replace("_p2pci_inline", "continuously_read_stream", Pubsub)
    async def continuously_read_stream(self: Any, stream: Any) -> None:
        """Upstream's read loop (0.8.1) with `push` in place of `run_task(self.push_msg, ...)`,
        and `_RpcReader` in place of `read_varint_prefixed_bytes_limited` once rpc_reader is applied."""
        peer_id = stream.muxed_conn.peer_id
        try:
            # rpc_reader: one stream read for every RPC already buffered, not one per varint byte
            reader = _RpcReader(stream, self.max_inbound_rpc_size) if rpc_reading else None
            while self.manager.is_running:
                incoming: bytes
                if reader is not None:
                    incoming = await reader.read()
                else:
                    incoming = await read_varint_prefixed_bytes_limited(stream, self.max_inbound_rpc_size)
                rpc_incoming = rpc_pb2.RPC()
                rpc_incoming.ParseFromString(incoming)
                # looked up in the module at call time: p2pci.net.libp2p_net wraps it
                if not ps_mod.maybe_consume_signed_record(rpc_incoming, self.host, peer_id):  # type: ignore[attr-defined]
                    ps_mod.logger.error("Received an invalid-signed-record, ignoring the incoming msg")
                    continue
                event = ps_mod.GossipsubEvent()
                event.peer_id = peer_id.pretty()
                event.message_size = len(incoming)
                if rpc_incoming.publish:
                    event.publish = True
                    for msg in rpc_incoming.publish:
                        if not self._is_subscribed_to_msg(msg):
                            continue
                        if self.manager.is_running:
                            await push(self, peer_id, msg)
                if rpc_incoming.subscriptions:
                    event.subopts = True
                    if len(rpc_incoming.subscriptions) > self.max_subscriptions_per_rpc:
                        ps_mod.logger.warning(
                            "Peer %s sent %d subscriptions exceeding limit %d, rejecting subscriptions",
                            peer_id, len(rpc_incoming.subscriptions), self.max_subscriptions_per_rpc,
                        )
                    else:
                        for message in rpc_incoming.subscriptions:
                            self.handle_subscription(peer_id, message)
                if rpc_incoming.HasField("control"):
                    event.control = True
                    await self.router.handle_rpc(rpc_incoming, peer_id)
                if stream.metric_send_channel is not None:
                    await stream.metric_send_channel.send(event)
        except MessageTooLarge as error:
            ps_mod.logger.warning("Inbound pubsub RPC from peer %s exceeded size limit: %s", peer_id, error)
            try:
                await stream.reset()
            except Exception:
                pass
            self._handle_dead_peer(peer_id)
        except (StreamEOF, StreamError, IOException, RawConnError) as exc:
            ps_mod.logger.debug("pubsub read loop for %s ended: %r", peer_id, exc)


RPC_READ = 64 * 1024  # the most one stream read of the pubsub read loop takes (rpc_reader)


class _RpcReader:
    """The varint-prefixed RPCs of one pubsub stream, parsed out of reads of up to RPC_READ bytes.

    Same framing and limits as upstream's `read_varint_prefixed_bytes_limited(stream, limit)`
    (utils/varint.py:159), which it replaces in the read loop: a length prefix of more than 10
    bytes or over 64 bits is a ParseError, a length over `limit` is MessageTooLarge (raised as
    soon as the prefix is complete, before its body is read), a read that returns nothing is an
    IncompleteReadError, and the stream's own errors (StreamEOF, StreamReset) pass through. It
    reads only when the buffer holds no complete RPC, so the buffer is never more than one
    incomplete RPC (< 10 + limit bytes) and one read. An RPC served from the buffer is still a
    checkpoint, as each of upstream's reads was: a read of many small RPCs cannot hold the event
    loop (or a cancellation) for all of them."""

    __slots__ = ("_stream", "_limit", "_chunk", "_buf", "_pos")

    def __init__(self, stream: Any, limit: int, chunk: int = RPC_READ) -> None:
        if limit <= 0:
            raise ValueError("max_length must be greater than 0")
        self._stream = stream
        self._limit = limit
        self._chunk = chunk
        self._buf = b""
        self._pos = 0

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    async def read(self) -> bytes:
        """The next RPC's bytes."""
        if self._buf:  # served from the buffer: still a checkpoint per RPC, as every read was
            await trio.lowlevel.checkpoint()
        while True:
            buf, pos = self._buf, self._pos
            end = len(buf)
            if pos < end:
                first = buf[pos]
                if first < 0x80:  # a one-byte length: RPCs under 128 bytes
                    length, start = first, pos + 1
                else:
                    length, start = _uvarint(buf, pos, end)
                if start:
                    if length > self._limit:
                        from libp2p.io.exceptions import MessageTooLarge

                        raise MessageTooLarge(f"Message length {length} exceeds maximum allowed {self._limit}")
                    stop = start + length
                    if stop <= end:
                        if stop == end:  # all taken: keep no buffer between RPCs
                            self._buf, self._pos = b"", 0
                        else:
                            self._pos = stop
                        return buf[start:stop]
            await self._fill()

    async def _fill(self) -> None:
        data: bytes = await self._stream.read(self._chunk)
        if not data:
            from libp2p.io.exceptions import IncompleteReadError

            raise IncompleteReadError("Stream ended in an RPC", expected_bytes=1, received_bytes=0)
        rest = self._buf[self._pos :]
        self._buf = rest + data if rest else bytes(data)
        self._pos = 0


def _uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, index after it) of the uvarint at buf[pos:end], (0, 0) if it is incomplete;
    ParseError if it runs over 10 bytes or 64 bits (utils/varint.py's rules)."""
    value = shift = 0
    i = pos
    while i < end:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value >> 64:
                from libp2p.exceptions import ParseError

                raise ParseError("Varint decoding error: integer exceeds maximum size of 64 bits")
            return value, i
        shift += 7
        if shift >= 70:
            from libp2p.exceptions import ParseError

            raise ParseError("Varint decoding error: integer exceeds maximum size of 64 bits")
    return 0, 0


rpc_reading = False  # set by rpc_reader: read loops started from then on use _RpcReader


def _rpc_reader() -> None:
    """Nothing to install: inline_push's read loop (the only one) uses `_RpcReader` from now on."""
    global rpc_reading
    rpc_reading = True


def _mcache_msg_id() -> None:
    from libp2p.pubsub.gossipsub import GossipSub
    from libp2p.pubsub.mcache import CacheEntry, MessageCache, default_msg_id_fn

    original_attach: Callable[..., Any] = GossipSub.attach

    @_replace("_p2pci_mcache", "put", MessageCache)
    def put(self: Any, msg: Any) -> None:
        mid: bytes = getattr(self, "msg_id_fn", default_msg_id_fn)(msg)
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))

    @_replace("_p2pci_mcache", "attach", GossipSub)
    def attach(self: Any, pubsub: Any) -> None:
        original_attach(self, pubsub)
        self.mcache.msg_id_fn = pubsub._msg_id_constructor


RECORD_TTL_S = 10.0


def _sender_record_cache() -> None:
    import libp2p.pubsub.floodsub as fs_mod
    import libp2p.pubsub.gossipsub as gs_mod
    import libp2p.pubsub.pubsub as ps_mod
    from libp2p.peer import peerstore

    original: Callable[[Any], tuple[bytes, bool]] = peerstore.env_to_send_in_RPC
    cache: weakref.WeakKeyDictionary[Any, tuple[bytes, float]] = weakref.WeakKeyDictionary()

    @_replace("_p2pci_cached", "env_to_send_in_RPC", gs_mod, ps_mod, fs_mod)
    def env_to_send_in_RPC(host: Any) -> tuple[bytes, bool]:  # noqa: N802 (upstream's name)
        now = time.monotonic()
        hit = cache.get(host)
        if hit is not None and now < hit[1]:
            return hit[0], False
        env, fresh = original(host)
        cache[host] = (env, now + RECORD_TTL_S)
        return env, fresh


shared_sends = 0  # RPCs queued without a copy by send_rpc_shared


def _send_rpc_shared() -> None:
    from libp2p.pubsub.gossipsub import GossipSub

    original: Callable[..., None] = GossipSub.send_rpc

    @_replace("_p2pci_shared", "send_rpc", GossipSub)
    def send_rpc(self: Any, peer_id: Any, rpc: Any, priority: bool = False) -> None:
        global shared_sends
        pubsub = self.pubsub
        queue = None if pubsub is None else pubsub.peer_queues.get(peer_id)
        if queue is None or peer_id in self._pending_control or rpc.ByteSize() > queue.max_message_size:
            original(self, peer_id, rpc, priority)
            return
        shared_sends += 1
        if not queue.push(rpc, priority=priority):
            self._handle_dropped_rpc(peer_id, rpc, "queue_full")


# -- the receive path of every stream (blob throughput, issue 17) ----------------
READ_AHEAD = 256 * 1024  # bytes one TCP receive may take (tcp_read_ahead)
tcp_receives = 0  # receive_some calls made by tcp_read_ahead (its test counts them)


def _tcp_read_ahead() -> None:
    from libp2p.io.trio import TrioTCPStream

    original: Callable[..., Any] = TrioTCPStream.read

    def take(self: Any, n: int | None) -> bytes:
        buf: memoryview = self._p2pci_buf
        if n is None or n >= len(buf):
            self._p2pci_buf = None
            return bytes(buf)
        self._p2pci_buf = buf[n:]
        return bytes(buf[:n])

    @_replace("_p2pci_ahead", "read", TrioTCPStream)
    async def read(self: Any, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        if getattr(self, "_p2pci_buf", None):
            return take(self, n)  # no checkpoint: atomic under trio
        lock = getattr(self, "_p2pci_lock", None)
        if lock is None:
            lock = self._p2pci_lock = trio.Lock()
        if not nowait or lock.locked():
            async with lock:  # a second reader waits, then takes what the first left buffered
                if getattr(self, "_p2pci_buf", None):
                    return take(self, n)
                return await receive(self, n)
        # tcp_lock_nowait: a free lock is taken without Lock.acquire's yield; the receive below
        # is the read's checkpoint (and its cancellation point), as it was after the yield
        lock.acquire_nowait()
        try:
            return await receive(self, n)
        finally:
            lock.release()

    async def receive(self: Any, n: int | None) -> bytes:
        global tcp_receives
        tcp_receives += 1
        data: bytes = await (direct if nowait else original)(self, max(n or 0, READ_AHEAD))
        if n is None or len(data) <= n:
            return data
        self._p2pci_buf = memoryview(data)[n:]
        return data[:n]

    async def direct(self: Any, n: int) -> bytes:
        """Upstream's `TrioTCPStream.read` (io/trio.py:50) without its `read_lock`: every read of
        the stream goes through the lock above, so that one is always free (and was a second
        yield per receive). Same errors: a reset is ConnectionClosedError, a local close b""."""
        from libp2p.io.exceptions import ConnectionClosedError

        try:
            got: bytes = await self.stream.receive_some(n)
            return got
        except trio.BrokenResourceError as error:
            raise ConnectionClosedError(f"TCP connection reset by remote peer: {error}", transport="tcp") from error
        except trio.ClosedResourceError:
            return b""


nowait = False  # set by tcp_lock_nowait: tcp_read_ahead's reads take a free lock without a yield


def _tcp_lock_nowait() -> None:
    from libp2p.io.exceptions import ConnectionClosedError
    from libp2p.io.trio import TrioTCPStream

    global nowait
    nowait = True  # tcp_read_ahead's read (installed before) looks it up at call time
    original: Callable[..., Any] = TrioTCPStream.write
    tlog = logging.getLogger("libp2p.io.trio")

    @_replace("_p2pci_nowait", "write", TrioTCPStream)
    async def write(self: Any, data: bytes) -> None:
        lock = self.write_lock
        if lock.locked():  # another writer: queue behind it, upstream's way
            await original(self, data)
            return
        # Free: taken without Lock.acquire's yield. send_all checks for cancellation before it
        # sends anything and yields after, so the write is still a checkpoint.
        lock.acquire_nowait()
        try:
            await self.stream.send_all(data)
        except trio.BrokenResourceError as error:
            tlog.debug("Write to broken resource (remote reset): %s", error)
            raise ConnectionClosedError(f"TCP connection reset by remote peer: {error}", transport="tcp") from error
        except trio.ClosedResourceError as error:
            tlog.debug("Write attempted on locally closed resource: %s", error)
            return
        finally:
            lock.release()

    write.__wrapped__ = original  # type: ignore[attr-defined]  # upstream's, for the tests


async def take_lock(lock: trio.Lock) -> None:
    """`await lock.acquire()` without its yield when the lock is free: cancellation is checked
    first, as `acquire` does, then a free lock is taken with `acquire_nowait` (what `acquire` does
    after its yield; a lock with waiters is never free, it is handed over); a held one is waited
    for in FIFO order, as before. The caller releases it."""
    if lock.locked():
        await lock.acquire()
        return
    await trio.lowlevel.checkpoint_if_cancelled()
    lock.acquire_nowait()


class QuickLock:
    """A `trio.Lock` for `async with` whose uncontended entry does not yield (stream_lock_nowait):
    entered with `take_lock`."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = trio.Lock()

    def locked(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        await take_lock(self._lock)

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


quick_locks = 0  # NetStream state locks made QuickLocks by stream_lock_nowait


def _stream_lock_nowait() -> None:
    from libp2p.network.stream.net_stream import NetStream

    original: Callable[..., None] = NetStream.__init__

    @_replace("_p2pci_quick", "__init__", NetStream)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        global quick_locks
        original(self, *args, **kwargs)
        if type(self.__dict__.get("_state_lock")) is trio.Lock:  # only used by `async with`
            self._state_lock = QuickLock()
            quick_locks += 1

    __init__.__wrapped__ = original  # type: ignore[attr-defined]


def _secure_read_views() -> None:
    from libp2p.io.exceptions import ConnectionClosedError
    from libp2p.security.secure_session import SecureSession

    original: Callable[..., Any] = SecureSession.read

    @_replace("_p2pci_views", "read", SecureSession)
    async def read(self: Any, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        if self.low_watermark != self.high_watermark:  # bytes left in upstream's buffer: its path
            return bytes(await original(self, n))
        pend: memoryview | None = getattr(self, "_p2pci_pend", None)
        if n is None:
            if pend:
                self._p2pci_pend = None
                return bytes(pend)
            msg: bytes = await self.conn.read_msg()
            if msg == b"":
                raise ConnectionClosedError("Connection closed")
            return msg
        return bytes(await _read_n(self, n))


async def _read_n(self: Any, n: int) -> bytes | bytearray:
    """`n` bytes of a SecureSession (fewer only if the connection closed), copied once into a
    buffer of that size; the rest of the last Noise message is kept as a view (secure_read_views)."""
    from libp2p.io.exceptions import ConnectionClosedError

    pend: memoryview | None = getattr(self, "_p2pci_pend", None)
    if pend is not None and len(pend) >= n:
        self._p2pci_pend = pend[n:] if len(pend) > n else None
        return bytes(pend[:n])
    got = 0
    result: bytearray | None = None
    if pend:
        result = bytearray(n)
        result[: len(pend)] = pend
        got = len(pend)
    self._p2pci_pend = None
    while got < n:
        msg: bytes = await self.conn.read_msg()
        if msg == b"":
            if got:
                return (result or bytearray())[:got]
            raise ConnectionClosedError("Connection closed")
        if result is None:
            if len(msg) == n:
                return msg  # one whole message: no copy at all
            result = bytearray(n)
        take = min(len(msg), n - got)
        result[got : got + take] = memoryview(msg)[:take]
        got += take
        if take < len(msg):
            self._p2pci_pend = memoryview(msg)[take:]
    assert result is not None
    return result


def _yamux_body_read() -> None:
    from libp2p.io.utils import read_exactly
    from libp2p.stream_muxer.yamux import yamux as ymod

    @_replace("_p2pci_body", "_read_data_body", ymod.Yamux)
    async def _read_data_body(self: Any, length: int) -> bytes:
        conn = self.secured_conn
        views = getattr(conn.read, "_p2pci_views", False)
        if views:
            pend = getattr(conn, "_p2pci_pend", None)
            if pend is not None and len(pend) >= length:
                # The body came in the Noise message of its header (a frame is one write): it is
                # decrypted already and nothing can wait, so no deadline (a cancel scope and its
                # env lookup cost ~3 % of a gossiping daemon's CPU, once per frame).
                return await _read_n(conn, length)  # type: ignore[return-value]
        with trio.fail_after(ymod._yamux_data_read_timeout()):
            if views:
                data: bytes | bytearray = await _read_n(conn, length)  # no bytes() copy
            else:
                data = await conn.read(length)
            if len(data) < length:  # the connection closed mid-frame: upstream's error from here
                data += await read_exactly(conn, length - len(data))
            return data  # type: ignore[return-value]  # Yamux only extends a bytearray with it


def _noise_write_batch() -> None:
    from libp2p.security.noise import io as nio

    original: Callable[..., Any] = nio.NoiseTransportReadWriter.write_msg
    limit = nio.MAX_PLAINTEXT_LENGTH

    @_replace("_p2pci_batch", "write_msg", nio.NoiseTransportReadWriter)
    async def write_msg(self: Any, msg: bytes, prefix_encoded: bool = False) -> None:
        if len(msg) <= limit or prefix_encoded:
            await original(self, msg, prefix_encoded)
            return
        rw = self.read_writer  # (the cipher wants bytes, not views)
        out = b"".join(rw.encode_msg(self.encrypt(bytes(msg[i : i + limit]))) for i in range(0, len(msg), limit))
        await rw.read_write_closer.write(out)


def _noise_packet_read() -> None:
    from libp2p.io.exceptions import IncompleteReadError
    from libp2p.io.utils import read_exactly
    from libp2p.security.noise import io as nio

    @_replace("_p2pci_packet", "read_msg", nio.NoisePacketReadWriter)
    async def read_msg(self: Any) -> bytes:
        rwc = self.read_write_closer
        n = int.from_bytes(await read_exactly(rwc, self.size_len_bytes), "big")
        data: bytes = await rwc.read(n) if n else b""
        if len(data) == n:
            return data  # the usual case with tcp_read_ahead: one slice of the read-ahead
        buf = bytearray(data)
        while len(buf) < n:
            part = await rwc.read(n - len(buf))
            if not part:
                raise IncompleteReadError(
                    f"Connection closed during read operation: expected {n} bytes but received {len(buf)}",
                    n,
                    len(buf),
                )
            buf += part
        return bytes(buf)


def _yamux_whole_writes() -> None:
    from libp2p.stream_muxer.yamux import yamux as ymod

    original: Callable[..., Any] = ymod.YamuxStream.write

    @_replace("_p2pci_wholew", "write", ymod.YamuxStream)
    async def write(self: Any, data: bytes) -> None:
        lock = self.__dict__.get("_p2pci_whole")
        if lock is None:
            lock = self._p2pci_whole = trio.Lock()
        async with lock:  # FIFO: writers go in the order they came
            await original(self, data)

    write.__wrapped__ = original  # type: ignore[attr-defined]


fast_writes = 0  # YamuxStream writes sent by yamux_write_fast's path


def _yamux_write_fast() -> None:
    import struct

    from libp2p.stream_muxer.yamux import yamux as ymod

    original: Callable[..., Any] = ymod.YamuxStream.write
    header = struct.Struct(ymod.YAMUX_HEADER_FORMAT).pack
    ylog = ymod.logger
    hsize, data_type = ymod.HEADER_SIZE, ymod.TYPE_DATA
    not_cancelled = trio.lowlevel.checkpoint_if_cancelled

    @_replace("_p2pci_fastw", "write", ymod.YamuxStream)
    async def write(self: Any, data: bytes) -> None:
        global fast_writes
        n = len(data)
        if (
            n == 0
            or n > self.send_window
            or n > ymod.MAX_MESSAGE_SIZE - hsize  # read at call time, like upstream (libp2p_net sets it)
            or self.send_closed
            or self.closed
            or self.window_lock.locked()
            or self.rw_lock._writer_lock.value == 0  # a writer (or reader) holds it: queue behind
            or ((whole := self.__dict__.get("_p2pci_whole")) is not None and whole.locked())  # a write in progress
            or ylog.isEnabledFor(logging.DEBUG)
        ):
            await original(self, data)
            return
        await not_cancelled()  # upstream's first lock acquisition raises Cancelled before any accounting
        # no checkpoint from the checks to here: nothing else runs in between
        fast_writes += 1
        self.send_window -= n
        await self.conn._write_frame(header(0, data_type, 0, self.stream_id, n) + data)

    write.__wrapped__ = original  # type: ignore[attr-defined]  # upstream's (under the whole-write lock), for the tests
    if getattr(original, "_p2pci_wholew", False):  # it falls back to yamux_whole_writes: never wrap it again
        write._p2pci_wholew = True  # type: ignore[attr-defined]


def _keep_live_subscriptions() -> None:
    from libp2p.pubsub.pubsub import Pubsub

    original: Callable[..., Any] = Pubsub._handle_dead_peer

    @_replace("_p2pci_keepsubs", "_handle_dead_peer", Pubsub)
    def handle_dead_peer(self: Any, peer_id: Any) -> None:
        if not self._peer_is_connected(peer_id):
            original(self, peer_id)
            return
        # still connected: upstream re-opens our stream to the peer; its subscriptions stay
        topics = [t for t, peers in self.peer_topics.items() if peer_id in peers]
        original(self, peer_id)
        for t in topics:
            self.peer_topics.setdefault(t, set()).add(peer_id)

    handle_dead_peer.__wrapped__ = original  # type: ignore[attr-defined]


PATCHES: dict[str, Callable[[], None]] = {
    "stream_handler_guard": _stream_handler_guard,
    "inline_push": _inline_push,
    "rpc_reader": _rpc_reader,
    "mcache_msg_id": _mcache_msg_id,
    "sender_record_cache": _sender_record_cache,
    "send_rpc_shared": _send_rpc_shared,
    "tcp_read_ahead": _tcp_read_ahead,
    "tcp_lock_nowait": _tcp_lock_nowait,
    "stream_lock_nowait": _stream_lock_nowait,
    "secure_read_views": _secure_read_views,
    "yamux_body_read": _yamux_body_read,
    "noise_write_batch": _noise_write_batch,
    "noise_packet_read": _noise_packet_read,
    "yamux_whole_writes": _yamux_whole_writes,  # before yamux_write_fast, which falls back to it
    "yamux_write_fast": _yamux_write_fast,
    "keep_live_subscriptions": _keep_live_subscriptions,
}


def apply(version: str | None = None) -> dict[str, bool]:
    """Apply every patch once if py-libp2p is the version they were written for.

    Returns {patch name: applied}. `version` overrides the installed version
    (tests use it to check the guard).
    """
    ver = libp2p_version() if version is None else version
    if ver != PATCHED_FOR:
        log.warning("py-libp2p %s is not %s: p2pci's patches are NOT applied", ver, PATCHED_FOR)
        return {name: _applied.get(name, False) for name in PATCHES}
    for name, patch in PATCHES.items():
        if not _applied.get(name):
            patch()
            _applied[name] = True
    return dict(_applied)
