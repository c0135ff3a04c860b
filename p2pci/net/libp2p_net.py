"""`LibP2PNetwork`: the `Network` on py-libp2p 0.8.1 (docs/protocol.md section 8).

    net = LibP2PNetwork(seed, ["/ip4/127.0.0.1/tcp/0"], bootstrap, validate=..., blobs=store,
                        sync_source=daemon)
    await nursery.start(net.run)

One host per node, keyed by the node's Ed25519 seed (peer ID == fact signer),
TCP, Noise only, Yamux. GossipSub on `/p2pci/board/1` with a topic validator
that verifies each envelope before it is delivered or forwarded; our own
peer exchange, anti-entropy sync and blob protocols on length-prefixed
streams (p2pci.net.wire). Every py-libp2p quirk we depend on is wrapped here
and listed in docs/internals.md ("py-libp2p gotchas").
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import random
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import multiaddr
import trio

from p2pci.core.errors import LocalError, ProtocolError
from p2pci.net import wire
from p2pci.net.base import (
    MAX_FACT,
    TOPIC,
    BlobAccess,
    BlobStoreLike,
    BlobUnavailable,
    Delivery,
    EmptySyncSource,
    LogSource,
    NetEvent,
    PeerEvent,
    PeerInfo,
    SyncSource,
    Validator,
)
from p2pci.net.common import Fanout, Lacking, MissingProtocol, SeenIds, Stats, admit_fact, now_ms
from p2pci.net.patches import take_lock
from p2pci.net.pieces import MAX_HOLDERS, PATIENCE_S, START_S, TEAM_MIN, Pull, bit, full_bitmap, popcount
from p2pci.net.quota import Quotas, RequestLimiter, SyncLimits
from p2pci.net.reach import Reach, RelayServerLimits, is_circuit, lacks_protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_typing import TaskStatus  # trio-stubs (from trio_typing) shadow trio's own types

log = logging.getLogger(__name__)



def pieces(size: int) -> int:
    return (size + PIECE - 1) // PIECE


_BLOB_WINDOW = 8 << 20  # a range's receive window: a whole 8-piece run without a window stall


async def _open_window(stream: Any, length: int) -> None:
    """Grant the sender of `length` bytes a Yamux receive window of up to _BLOB_WINDOW at once
    (py-libp2p 0.8.1 starts at 256 KiB and doubles it per round trip; small windows make small
    frames, and the receiver's CPU is per frame). Bounded: at most _BLOB_WINDOW buffered."""
    ms = getattr(stream, "muxed_stream", None)
    want = min(length, _BLOB_WINDOW)
    if ms is None or not hasattr(ms, "target_recv_window") or ms.target_recv_window >= want:
        return
    ms.target_recv_window = want
    await ms._auto_tune_and_send_window_update()


def _differing(bad: Path, good: Any, sources: dict[int, str]) -> set[str]:
    """The remotes (by `sources`) whose pieces in the file `bad` differ from the verified `good`."""
    out: set[str] = set()
    with bad.open("rb") as f:
        for i in range(good.n):
            off, n = good.span(i)
            f.seek(off)
            if f.read(n) != good.read(off, n) and i in sources:
                out.add(sources[i])
    return out


# ---------------------------------------------------------------------------
# py-libp2p wrapping. Imported lazily: `import libp2p` costs ~1 s.
# ---------------------------------------------------------------------------

# Outbound pubsub queue per peer. py-libp2p's default is 32 RPCs and a full
# queue drops silently; a burst of facts (a late reveal wave, a sync
# republish) easily exceeds that. 1024 RPCs of ≤ 64 KiB facts is ≤ 64 MiB
# worst case per peer, in practice a few hundred KiB.
OUTBOUND_QUEUE = 1024
# Largest pubsub RPC we send or accept. The library default is 1 MiB and an
# oversize inbound RPC is dropped silently; our facts are ≤ 64 KiB, so 256 KiB
# leaves room for batching and control messages while bounding garbage.
MAX_RPC = 256 * 1024

# A sender's signed peer record is re-verified when its bytes change or after this long.
RECORD_RECHECK_S = 60.0

_patched = False


def _libp2p() -> Any:
    """Import py-libp2p and apply our process-wide adjustments once."""
    global _patched
    import libp2p.pubsub.gossipsub as gs_mod
    import libp2p.pubsub.pubsub as ps_mod
    from libp2p.pubsub.rpc_queue import RpcQueue
    from libp2p.pubsub.utils import maybe_consume_signed_record
    from libp2p.stream_muxer.yamux import yamux as yamux_mod

    if not _patched:

        class _P2pciRpcQueue(RpcQueue):
            def __init__(self, max_size: int = OUTBOUND_QUEUE, max_message_size: int = MAX_RPC) -> None:
                super().__init__(max_size=max_size, max_message_size=max_message_size)

        # Pubsub builds `RpcQueue()` with the module defaults (32, 1 MiB): no
        # constructor knob exists, so we swap the class it looks up.
        ps_mod.RpcQueue = _P2pciRpcQueue  # type: ignore[attr-defined]
        # Every pubsub RPC carries the sender's signed peer record and the receiver
        # verifies it (Ed25519, protobuf, multiaddr parsing, peerstore rewrite), twice
        # for an RPC with control messages: once per RPC and connection, although it
        # is the same bytes every time. Verify a peer's record once per change.
        consume = _RecordCache(maybe_consume_signed_record)
        ps_mod.maybe_consume_signed_record = consume  # type: ignore[attr-defined]
        gs_mod.maybe_consume_signed_record = consume  # type: ignore[attr-defined]
        # Yamux credits the receive window after *every* read (a WINDOW_UPDATE frame,
        # one Noise encryption and one send per read; pubsub reads each RPC in 2-3
        # reads). Credit like go-yamux instead: once half the window is consumed.
        yamux_mod.YamuxStream._auto_tune_and_send_window_update = _window_update  # type: ignore[method-assign]
        _patch_yamux_framing(yamux_mod)
        _patched = True
    return ps_mod


# The blob data path. py-libp2p 0.8.1 cuts a stream write into Yamux frames of at
# most 64 KiB (12-byte header + 65524), and its Noise layer cuts anything over
# 65519 bytes (65535 minus the 16-byte tag) in two messages: every Yamux frame
# cost two encryptions, two length prefixes, two socket sends, two decryptions.
# Most of a receiver's CPU is per Yamux frame (its Python: header parse, buffer,
# events, locks), so Yamux frames are now up to _YAMUX_FRAME (one blob stream
# write of _BLOB_BATCH chunk frames, ~1 MiB, when the window allows) and Noise
# cuts each into full 65519-byte messages (patches.noise_write_batch sends them
# in one socket write). Receivers of any version accept a frame up to their
# receive window, which is all the Yamux spec asks.
_NOISE_PLAINTEXT = 65535 - 16
_YAMUX_HEADER = 12
_BLOB_CHUNK = 4 * (_NOISE_PLAINTEXT - _YAMUX_HEADER) - 4  # 262024: <= wire.CHUNK, old readers accept it
_BLOB_BATCH = 4  # chunk frames per stream write (~1 MB): one deadline and one call each
# The most a blob read takes from the stream's buffer at once: Yamux's whole receive window
# (MAX_WINDOW_SIZE), so a read takes the buffer whole (py-libp2p 0.8.1 copies it out and
# clears it) instead of slicing a part off its front (a memmove of everything behind it).
_BLOB_READ = 16 << 20
_YAMUX_FRAME = _YAMUX_HEADER + _BLOB_BATCH * (4 + _BLOB_CHUNK)  # 1048124: one batch, one frame
MAX_BOOK = 1000  # peers in the address book (bootstrap peers come on top)
BAD_HOLDER_S = 600  # a holder that served bytes that are not the blob is not asked for this long
MAX_BAD_HOLDERS = 4096  # holders remembered as bad; past it the expired, then the oldest, go
PIECE = wire.PIECE
_PATCHED_LIBP2P = "0.8.1"  # the version whose internals _patch_yamux_framing relies on


def _patch_yamux_framing(yamux_mod: Any) -> None:
    """Yamux frames of up to one blob batch, and no per-frame debug formatting (0.8.1 only)."""
    from importlib.metadata import version

    from libp2p.security.noise import io as noise_io

    if version("libp2p") != _PATCHED_LIBP2P or noise_io.MAX_PLAINTEXT_LENGTH != _NOISE_PLAINTEXT:
        return  # another py-libp2p: its framing may differ; correct either way, only slower
    # Read by YamuxStream.write (frame size) and YamuxStream.read (slice size) at call time;
    # inbound frames are not checked against it, so peers with the default still interoperate.
    yamux_mod.MAX_MESSAGE_SIZE = _YAMUX_FRAME
    orig = yamux_mod.Yamux._write_frame
    ylog = yamux_mod.logger

    async def _write_frame(self: Any, data: bytes) -> None:
        # 0.8.1 unpacks the header and formats a debug line for every frame, logged or not
        if ylog.isEnabledFor(logging.DEBUG):
            await orig(self, data)
            return
        lock = self._write_lock
        queued = lock.locked()  # another frame is being written: queue behind it
        # A free lock is taken without Lock.acquire's yield (patches.take_lock), and upstream's
        # checkpoint after the write is left out: the write ends in a socket send, which yields
        # after it sent (two of a frame's three yields, ~5 us each). A cancelled task still raises
        # there, before Noise encrypts (an encrypted message that is never sent would
        # desynchronise the nonces), as at upstream's acquire; nothing in between yields, so no
        # cancellation can arrive later.
        await take_lock(lock)
        try:
            await self.secured_conn.write(data)
        finally:
            lock.release()
        if queued:
            await trio.lowlevel.checkpoint()

    yamux_mod.Yamux._write_frame = _write_frame


# Seconds below prune_back_off from which a GRAFT after a PRUNE counts as a flood (see
# _GossipSub.__init__): backoffs are whole seconds, so "after the backoff" may look 1 s early.
GRAFT_FLOOD_SLACK = 2.0
# The longest backoff a peer's PRUNE can ask of us (seconds; GossipSub's default is 60), and the
# size of a topic's backoff table from which expired entries are swept on each new one.
BACKOFF_MAX_S = 60
BACKOFF_TABLE_SWEEP = 256

# IDONTWANT only for messages larger than this (go-libp2p's IDontWantMessageThreshold):
# for a small fact the IDONTWANT to every mesh peer costs as much as the copies it saves.
IDONTWANT_MIN = 1024

# GossipSub parameters (py-libp2p 0.8.1 keyword names) chosen for CI, not the
# library defaults. One definition for the daemon and the test-only peers that
# must join its mesh the same way (LibP2PNetwork overrides the heartbeat).
GOSSIPSUB_PARAMS: dict[str, Any] = {
    # Mesh degree 4/3/6 [6/4/12]. Every node receives each fact once per mesh
    # peer, so the mesh size multiplies the CPU per fact; with D_hi = 12 the mesh
    # was nearly every connection (~9 at 20 daemons). >= 3 independent paths per
    # node (sync covers the rest). Smaller meshes (D_hi 6) once left a daemon out of
    # every mesh: that was the PRUNE ping-pong that _GossipSub.emit_prune ends.
    "degree": 4,
    "degree_low": 3,
    "degree_high": 6,
    # Library default 120 s: mesh repair and IHAVE gossip would take minutes.
    "heartbeat_interval": 1.0,
    "heartbeat_initial_delay": 0.1,
    # Gossip (IHAVE) about the last 3 heartbeats, keep 5 in the cache.
    "gossip_window": 3,
    "gossip_history": 5,
    # Short backoffs: nodes restart and partitions heal in seconds in CI.
    "prune_back_off": 5,
    "unsubscribe_back_off": 5,
    # Our own peer exchange (/p2pci/peers/1) replaces gossipsub PX.
    "do_px": False,
    # Default 10 msg/s per peer and topic, counted against the forwarder
    # *including ourselves*, and applied after local delivery: it silently
    # stops forwarding our own bursts. 500/s still bounds a flood.
    "spam_protection_enabled": True,
    "max_messages_per_topic_per_second": 500.0,
    # Needs 3 distinct IPs in the mesh: everything is 127.0.0.1 on a CI box.
    "eclipse_protection_enabled": False,
    # Adaptive gossip rewrites the heartbeat interval at run time.
    "adaptive_gossip_enabled": False,
}


_classes: tuple[Any, Any] | None = None


def _pubsub_classes(ps_mod: Any) -> tuple[Any, Any]:
    """Our Pubsub and GossipSub subclasses (built once, after the lazy import)."""
    global _classes
    if _classes is not None:
        return _classes
    from libp2p.network.stream.exceptions import StreamClosed, StreamReset
    from libp2p.pubsub.gossipsub import GossipSub
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
    from libp2p.utils.varint import encode_uvarint

    class _Pubsub(ps_mod.Pubsub):  # type: ignore[misc]
        """Built with `strict_signing=False`: we sign what we publish, we do not verify others.

        Every fact is an Ed25519-signed envelope that our topic validator verifies;
        the pubsub signature only binds the libp2p `from`/`seqno` fields, which
        nothing of ours reads. Signing keeps peers that verify (stock py-libp2p,
        older p2pci) accepting our messages.
        """

        async def publish(self, topic_id: str, data: bytes) -> None:
            msg = rpc_pb2.Message(
                data=data, topicIDs=[topic_id], from_id=self.my_id.to_bytes(), seqno=self._next_seqno()
            )
            key = self.host.get_private_key()
            msg.signature = key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
            msg.key = self.host.get_public_key().serialize()
            await self.push_msg(self.my_id, msg)

        async def handle_sending_messages(self, peer_id: Any, stream: Any, queue: Any) -> None:
            """The library's per-peer send loop, writing every RPC already queued in one write.

            One write is one Yamux frame, one Noise encryption and one send on our side,
            one frame to decrypt on theirs: a fact and its IDONTWANT, or a burst, go together.
            """
            try:
                while True:
                    rpc = await queue.pop()
                    if rpc is None:
                        return
                    parts: list[bytes] = []
                    size = 0
                    while rpc is not None:
                        data = rpc.SerializeToString()
                        parts.append(encode_uvarint(len(data)))
                        parts.append(data)
                        size += len(data)
                        if size >= MAX_RPC:
                            break
                        rpc = queue._queue.pop()  # what is queued already, without waiting
                    try:
                        await stream.write(b"".join(parts))
                    except (StreamClosed, StreamReset):
                        self._handle_dead_peer(peer_id)
                        return
            except Exception:
                log.debug("pubsub send loop for %s ended", peer_id, exc_info=True)
                self._handle_dead_peer(peer_id)

    class _GossipSub(GossipSub):
        _idontwant_size = 0
        p2pci_stats: Stats | None = None  # set by LibP2PNetwork.run

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # py-libp2p answers a GRAFT that comes less than min(10 s, prune_back_off) after
            # the last PRUNE it *received* from that peer with a PRUNE ("GRAFT flood"). The
            # backoffs of both ends are whole seconds (`int(time.time()) + prune_back_off`),
            # so a well-behaved peer's GRAFT right after its backoff can come up to a second
            # early by that measure, and was pruned as a flood: GRAFT_FLOOD_SLACK below it.
            self.graft_flood_threshold = max(0.0, float(self.prune_back_off) - GRAFT_FLOOD_SLACK)

        async def emit_prune(self, topic: str, to_peer: Any, do_px: bool, is_unsubscribe: bool) -> None:
            """Back off every peer we PRUNE, as the spec asks of the pruning side.

            py-libp2p 0.8.1 adds the backoff only when it leaves a topic or refuses a GRAFT
            during one: after a heartbeat prune (mesh over D_hi) or a flood PRUNE it GRAFTed
            the peer again at the next heartbeat, the peer (backing off, or seeing a flood)
            PRUNEd back, and such a pair could go on PRUNEing each other for ever. A daemon whose
            every mesh peer did so was reached only by anti-entropy sync: the 2.7 s
            propagation outlier at 20 daemons (docs/benchmarks.md)."""
            self._add_back_off(to_peer, topic, is_unsubscribe)
            await super().emit_prune(topic, to_peer, do_px, is_unsubscribe)

        async def handle_prune(self, prune_msg: Any, sender_peer_id: Any) -> None:
            """A PRUNE for a topic we are not in is ignored (upstream kept a backoff and a flood
            stamp for any topic name a peer sent: a table a hostile peer grows at will). The
            backoff it asks for is capped at BACKOFF_MAX_S by _add_back_off."""
            if prune_msg.topicID not in self.mesh:
                return
            await super().handle_prune(prune_msg, sender_peer_id)

        def _add_back_off(self, peer: Any, topic: str, is_unsubscribe: bool, backoff_duration: int = 0) -> None:
            """Backoffs only for our own topics, and expired ones dropped once the table is big:
            upstream removes an entry only when it checks that peer again, so every peer that
            ever PRUNEd us or was PRUNEd stayed in it after it left."""
            if topic not in self.mesh:
                return
            table = self.back_off.get(topic)
            if table is not None and len(table) >= BACKOFF_TABLE_SWEEP:
                now = int(time.time())
                for gone in [p for p, until in table.items() if until <= now]:
                    del table[gone]
            super()._add_back_off(peer, topic, is_unsubscribe, min(backoff_duration, BACKOFF_MAX_S))

        def _check_spam_protection(self, peer_id: Any, msg: Any) -> bool:
            """py-libp2p's forwarding limit (max_messages_per_topic_per_second in any sliding
            second, per forwarder and topic; docs/protocol.md §8.1), counted in our stats instead
            of one WARNING line per message (a flooding peer would fill the log) and without the
            score penalty (peer scoring is off, it had no effect)."""
            if not self.spam_protection_enabled:
                return True
            now = time.time()
            cutoff = now - 1.0
            for topic in msg.topicIDs:
                stamps = self.message_rate_limits[peer_id][topic]
                if stamps and stamps[0] <= cutoff:
                    stamps[:] = [t for t in stamps if t > cutoff]
                if len(stamps) >= self.max_messages_per_topic_per_second:
                    if self.p2pci_stats is not None:
                        self.p2pci_stats.drop("rate_limited")
                    return False
                stamps.append(now)
            return True

        async def publish(self, msg_forwarder: Any, pubsub_msg: Any) -> None:
            # read by _emit_idontwant_for_message, which publish() awaits before any checkpoint
            self._idontwant_size = len(pubsub_msg.data)
            await super().publish(msg_forwarder, pubsub_msg)

        async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
            if self._idontwant_size > IDONTWANT_MIN:
                await super()._emit_idontwant_for_message(msg_id, topic_ids)

        def _check_equivocation(self, msg: Any) -> bool:
            # "Same from/seqno, different data": meaningless with content ids, and with
            # unverified pubsub signatures anyone could use it to stop us forwarding a
            # fact. Equivocation that matters is on signed facts: the tally reports it.
            return True

    _classes = (_Pubsub, _GossipSub)
    return _classes


class _RecordCache:
    """`maybe_consume_signed_record` that skips bytes it already accepted for that host and peer."""

    def __init__(self, consume: Callable[[Any, Any, Any], bool]) -> None:
        self._consume = consume
        self._ok: weakref.WeakKeyDictionary[Any, dict[Any, tuple[bytes, float]]] = weakref.WeakKeyDictionary()

    def __call__(self, msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        record = bytes(msg.senderRecord)
        known = self._ok.setdefault(host, {})
        hit = known.get(peer_id)
        now = time.monotonic()
        if hit is not None and hit[0] == record and now < hit[1]:
            return True
        ok = self._consume(msg, host, peer_id)
        if ok:
            if len(known) >= 4096:
                known.clear()
            known[peer_id] = (record, now + RECORD_RECHECK_S)
        else:
            known.pop(peer_id, None)
        return ok


async def _window_update(self: Any, *, bytes_read: int = 0) -> None:
    """go-yamux `sendWindowUpdate`: credit the consumed bytes once they reach half the target window."""
    total = 0
    lock = self.window_lock
    await take_lock(lock)  # a free one without Lock.acquire's yield (nothing under it waits; the read yielded)
    try:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
    finally:
        lock.release()
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


def libp2p_peer_id(seed: bytes) -> str:
    """The libp2p peer ID of an Ed25519 seed, as libp2p computes it."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    return str(ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58())


def _default_validate(raw: bytes) -> bytes:
    from p2pci.core.signing import open_envelope

    return open_envelope(raw).id


def parse_peer_addr(addr: str) -> tuple[str, str]:
    """`/ip4/…/tcp/…/p2p/<id>` → (peer id, addr). LocalError/ProtocolError on bad input.

    A circuit address `/ip4/…/tcp/…/p2p/<relay>/p2p-circuit/p2p/<id>` names
    the peer last (the relay's id comes first).
    """
    try:
        ma = multiaddr.Multiaddr(addr)
        pids = [v for p, v in ma.items() if p.name == "p2p"]
    except Exception as exc:
        raise ProtocolError(f"bad multiaddr {addr!r}: {exc}") from None
    pid = pids[-1] if pids else None
    if not pid or (is_circuit(addr) and (len(pids) != 2 or not addr.endswith(f"/p2p-circuit/p2p/{pid}"))):
        raise ProtocolError(f"multiaddr {addr!r} has no /p2p/<peer id>")
    protos = [p.name for p in ma.protocols()]
    if "tcp" not in protos or not ({"ip4", "ip6"} & set(protos)):
        raise ProtocolError(f"multiaddr {addr!r} is not ip/tcp")
    return str(pid), addr


def addr_scope(addr: str) -> str | None:
    """'loopback', 'private', 'global' or 'any' (0.0.0.0/::) for an ip multiaddr; None if not ip."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return None
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    if ip.is_unspecified:
        return "any"
    if ip.is_loopback:
        return "loopback"
    if ip.is_private or ip.is_link_local:
        return "private"
    return "global"


def check_listen_free(addr: str) -> None:
    """LocalError if `addr` (ip4/ip6 + tcp) names a port another socket listens on.

    py-libp2p listens with SO_REUSEPORT, so a second node on the same port
    starts silently and the kernel splits inbound connections between the two.
    """
    parts = addr.split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp" or parts[4] in ("", "0"):
        return
    family = socket.AF_INET if parts[1] == "ip4" else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
        try:
            sock.bind((parts[2], int(parts[4])))
        except (OSError, ValueError) as exc:
            raise LocalError(f"cannot start the network on {addr}: {exc}") from None


@dataclass
class _Book:
    """What we know about one peer's reachability."""

    addrs: set[str] = field(default_factory=set)
    bootstrap: bool = False
    fails: int = 0
    next_try: float = 0.0  # trio time


class LibP2PNetwork:
    """See the module docstring; parameters are documented in docs/internals.md."""

    def __init__(
        self,
        seed: bytes,
        listen: list[str],
        bootstrap: list[str] | None = None,
        *,
        validate: Validator | None = None,
        blobs: BlobStoreLike | None = None,
        sync_source: SyncSource | None = None,
        degree: int = 8,
        sync_interval: float = 30.0,
        heartbeat: float = 1.0,
        dial_timeout: float = 5.0,
        dial_interval: float = 1.0,
        redial_min: float = 1.0,
        redial_max: float = 60.0,
        forget_after: int = 8,
        px_interval: float = 10.0,
        read_timeout: float = 10.0,
        request_timeout: float = wire.REQUEST_TIMEOUT,
        blob_max: int = 4 << 30,
        blob_concurrency: int = 2,
        sync_budget: int = 4 << 20,
        facts_buffer: int = 8192,
        rng: random.Random | None = None,
        relay: RelayServerLimits | None = None,
        reachability: str = "auto",
        relay_refresh: float = 60.0,
        mdns: bool = True,
        quotas: Quotas | None = None,
        sync_limits: SyncLimits | None = None,
    ) -> None:
        if len(seed) != 32:
            raise LocalError("the node seed is 32 bytes")
        self._seed = bytes(seed)
        self._listen = list(listen) or ["/ip4/127.0.0.1/tcp/0"]
        self._validate = validate or _default_validate
        self._blobs = blobs
        self._blob_access: BlobAccess | None = None
        self._log_source: LogSource | None = None
        self._sync: SyncSource = sync_source or EmptySyncSource()
        self.degree = degree
        self.sync_interval = sync_interval
        self.heartbeat = heartbeat
        self.dial_timeout = dial_timeout
        self.dial_interval = dial_interval
        self.redial_min = redial_min
        self.redial_max = redial_max
        self.forget_after = forget_after
        self.px_interval = px_interval
        self.read_timeout = read_timeout  # per frame (plus its size at FRAME_MIN_RATE), not per read
        self.request_timeout = max(request_timeout, read_timeout)  # per whole peers/sync exchange
        self.blob_max = blob_max
        self.blob_concurrency = blob_concurrency
        self.sync_budget = sync_budget
        self._rng = rng or random.Random()
        if reachability not in ("auto", "public", "private"):
            raise LocalError(f"reachability is auto, public or private, not {reachability!r}")
        self.relay = relay
        self.reachability = reachability
        self.relay_refresh = relay_refresh
        # mDNS only where it means "this LAN": private or unspecified listen addresses
        self.mdns = mdns and bool({addr_scope(a) for a in self._listen} & {"private", "any"})
        self._reach: Reach | None = None

        self._peer_id = libp2p_peer_id(self._seed)
        # Addresses learned from peers are dialled only in the scopes we listen
        # in: a node on 127.0.0.1 never dials out of loopback because a peer said
        # so, and a public peer cannot point us at our LAN. Bootstrap is config.
        # A node on a private address reaches the internet through its NAT, so
        # it dials global addresses too (relays, peers' relay addresses).
        scopes = {addr_scope(a) for a in self._listen}
        self._scopes = {"loopback", "private", "global"} if "any" in scopes else {s for s in scopes if s}
        if "private" in self._scopes:
            self._scopes.add("global")
        self._book: dict[str, _Book] = {}
        for addr in bootstrap or []:
            try:
                pid, _ = parse_peer_addr(addr)
            except ProtocolError as exc:
                raise LocalError(f"bootstrap address: {exc}") from None
            if pid != self._peer_id:
                self._book.setdefault(pid, _Book()).addrs.add(addr)
                self._book[pid].bootstrap = True

        self._seen = SeenIds()
        self._stats = Stats()
        self.quotas = quotas if quotas is not None else Quotas()
        # sync rounds served, per peer and in total (default: SyncLimits.for_interval)
        self.sync_limits = RequestLimiter(sync_limits or SyncLimits.for_interval(sync_interval))
        self._lacking = Lacking()
        self._events: Fanout[NetEvent] = Fanout()
        self._facts_send, self._facts_recv = trio.open_memory_channel[Delivery](facts_buffer)
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[bytes](facts_buffer)
        self._unsent = 0  # facts in the outbox (ours and forwarded) not yet handed to pubsub
        self._since: dict[str, int] = {}
        self._blocked: frozenset[str] = frozenset()
        self._hanging_up: set[str] = set()
        self._busy: dict[str, int] = {}
        self._dialing: set[str] = set()
        self._syncing: set[str] = set()  # peers we run a sync exchange with (_sync_once)
        self._wakeup = trio.Event()
        self._last_px = -1e9
        self._px_wait = px_interval  # doubles while peer exchange brings nothing new
        self._serve_slots: dict[str, int] = {}
        self._fetch_slots: dict[str, tuple[trio.Semaphore, int]] = {}  # peer -> (slots, users now)
        self._pulling: dict[bytes, trio.Event] = {}  # blob sha256 -> set when its download ends
        self._partials: dict[bytes, Any] = {}  # blob sha256 -> PartialBlob being downloaded (served)
        self._bad_holders: dict[str, float] = {}  # peer -> monotonic time its drop ends
        self._host: Any = None
        self._pubsub: Any = None
        self._nursery: trio.Nursery | None = None

    # -- Network -----------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self._peer_id

    def facts(self) -> trio.MemoryReceiveChannel[Delivery]:
        return self._facts_recv

    def events(self) -> trio.MemoryReceiveChannel[NetEvent]:
        return self._events.subscribe()

    def stats(self) -> dict[str, int]:
        """The counters, plus two gauges of the gossip layer: `gossip_mesh`, the peers in our
        gossipsub mesh for the fact topic, and `gossip_topic_peers`, the peers pubsub knows to be
        subscribed to it (0 and 0: gossip reaches us only by anti-entropy sync)."""
        out = self._stats.snapshot()
        pubsub = self._pubsub
        if pubsub is not None:
            out["gossip_mesh"] = len(pubsub.router.mesh.get(TOPIC, ()))
            out["gossip_topic_peers"] = len(pubsub.peer_topics.get(TOPIC, ()))
        return out

    def serve_blobs(self, store: BlobStoreLike) -> None:
        self._blobs = store

    def set_blob_access(self, access: BlobAccess) -> None:
        self._blob_access = access

    def set_log_source(self, source: LogSource) -> None:
        self._log_source = source

    def forget(self, fact_ids: list[bytes]) -> None:
        """The daemon evicted (quotas) or refused (admission) these facts: not 'seen' any more, so sync can offer them again."""
        self._seen.discard(fact_ids)

    def set_sync_source(self, source: SyncSource) -> None:
        self._sync = source

    def addrs(self) -> list[str]:
        """Our listen addresses, then our relay (circuit) addresses, if any."""
        if self._host is None:
            return []
        own = [str(a) for a in self._host.get_addrs()]
        return own + (self._reach.announce() if self._reach is not None else [])

    def peers(self) -> list[PeerInfo]:
        reach = self._reach
        return [
            PeerInfo(
                p,
                tuple(sorted(self._book[p].addrs)) if p in self._book else (),
                since,
                reach.via(p) if reach is not None else "",
            )
            for p, since in sorted(self._since.items())
        ]

    def wants_relay(self) -> bool:
        """Whether this node should reserve a relay slot (it is not publicly reachable).

        `reachability="auto"` decides from the listen addresses: only private
        ones (behind a NAT) → yes; loopback, global or unspecified → no.
        """
        if self.reachability != "auto":
            return self.reachability == "private"
        scopes = {addr_scope(a) for a in self._listen}
        return scopes == {"private"}

    def _should_probe(self) -> bool:
        """auto + a global or unspecified listen address: ask peers to dial us back."""
        scopes = {addr_scope(a) for a in self._listen}
        return self.reachability == "auto" and bool(scopes & {"global", "any"})

    def _listen_port(self) -> int | None:
        for a in self.addrs():
            if not is_circuit(a) and "/tcp/" in a:
                try:
                    return int(a.split("/tcp/")[1].split("/")[0])
                except ValueError:
                    continue
        return None

    def reach_stats(self) -> dict[str, Any]:
        """Relay reservations (relay id → addr, ms) and recent relayed dial times, for tests and figures."""
        r = self._reach
        if r is None:
            return {}
        return {
            "reservations": {k: {"addr": v.addr, "reserved_ms": v.reserved_ms} for k, v in r.reservations.items()},
            "dial_ms": list(r.dial_ms),
        }

    def set_blocked(self, peers: set[str] | frozenset[str]) -> None:
        """Refuse these peers (disconnect, never dial, drop their streams and gossip).

        `set_blocked(set())` lifts the block; the peers are redialled as usual.
        Tests use it to partition a mesh; an operator may use it to ban a peer.
        """
        self._blocked = frozenset(peers)
        self._wakeup.set()

    def add_peer_addrs(self, addrs: list[str]) -> None:
        """Learn dialable addresses (`…/p2p/<id>`) of other peers; bad ones are ignored (as peer
        exchange's frames: at most wire.MAX_ADDR_LEN chars, whoever found them, mDNS included)."""
        for addr in addrs:
            if len(addr) > wire.MAX_ADDR_LEN:
                self._stats.inc("bad_addr")
                continue
            try:
                pid, a = parse_peer_addr(addr)
            except ProtocolError:
                self._stats.inc("bad_addr")
                continue
            if pid == self._peer_id:
                continue
            if addr_scope(a) not in self._scopes:
                self._stats.inc("addr_out_of_scope")
                continue
            book = self._book_entry(pid)
            if book is not None and len(book.addrs) < wire.MAX_ADDRS:
                book.addrs.add(a)
        self._wakeup.set()

    def _book_entry(self, pid: str) -> _Book | None:
        """`pid`'s entry in the address book, made if the book has room (at most MAX_BOOK peers,
        whoever tells us of them: a peer cannot fill our memory); None when it is full."""
        book = self._book.get(pid)
        if book is None:
            if len(self._book) >= MAX_BOOK:
                self._stats.inc("book_full")
                return None
            book = self._book[pid] = _Book()
        return book

    async def publish(self, raw: bytes) -> None:
        if self._pubsub is None:
            raise LocalError("network is not running")
        fact_id = self._validate(raw)  # ProtocolError here is the caller's bug: let it out
        self._seen.add(fact_id)
        self._stats.inc("published")
        self._unsent += 1
        await self._outbox_send.send(raw)

    async def flush(self) -> None:
        """Return once every connected peer holds the facts this node has: the outbox is empty,
        then one confirmed sync round with each peer that speaks sync (a draining daemon calls
        it, bounded, before it stops). Gossip alone is not enough: what a peer has not read off
        its socket yet is lost when the connection closes, so the sync client pushes what the
        peer lacks and waits for the peer to close the stream, after it has read the facts."""
        while self._unsent:  # noqa: ASYNC110 (a counter, no event to wait on)
            await trio.sleep(0.01)
        speakers = sorted(p for p in self._since if not self._lacking.lacks(p, wire.PROTO_SYNC))
        async with trio.open_nursery() as nursery:
            for peer in speakers:
                nursery.start_soon(partial(self._sync_with, peer, confirm=True))

    # -- run -----------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ps_mod = _libp2p()
        from p2pci.net import patches

        patches.apply()
        from libp2p import new_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
        from libp2p.network.config import ConnectionConfig, RetryConfig
        from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
        from libp2p.security.noise.transport import Transport as NoiseTransport
        from libp2p.tools.anyio_service import background_trio_service

        for addr in self._listen:
            check_listen_free(addr)
        key_pair = create_new_key_pair(self._seed)
        try:
            listen = [multiaddr.Multiaddr(a) for a in self._listen]
        except Exception as exc:
            raise LocalError(f"bad listen address in {self._listen}: {exc}") from None
        host: Any = new_host(
            key_pair=key_pair,
            # Noise only: the default also offers TLS, secio and *plaintext*.
            sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
            muxer_preference="YAMUX",
            listen_addrs=listen,
            connection_config=ConnectionConfig(dial_timeout=self.dial_timeout, min_connections=0, low_watermark=0),
            enable_mDNS=self.mdns,
        )
        swarm = host.get_network()
        # One dial attempt per connect(): retries and backoff are ours.
        swarm.retry_config = RetryConfig(max_retries=0)
        # The swarm's auto-connector aims at (low + high watermark) / 2 = 100
        # connections and dials every peerstore entry, also on each disconnect,
        # ignoring our backoff: switch it off (peer selection is _dialer's job).
        swarm.auto_connector.maybe_connect = _no_auto_connect
        pubsub_cls, gossipsub_cls = _pubsub_classes(ps_mod)
        gossipsub = gossipsub_cls(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            **{**GOSSIPSUB_PARAMS, "heartbeat_interval": self.heartbeat},
        )
        gossipsub.p2pci_stats = self._stats
        pubsub = pubsub_cls(
            host,
            gossipsub,
            msg_id_constructor=_msg_id,
            # Our validator verifies every envelope's Ed25519 signature: no second
            # check of the pubsub signature (we still sign, see _Pubsub).
            strict_signing=False,
            # A result cached by msg id would skip our validator (and its
            # duplicate check) once the seen-cache entry expired.
            validation_cache_ttl=0,
            max_inbound_rpc_size=MAX_RPC,
            allowed_topics={TOPIC},
        )
        notifee = _Notifee(self._wakeup_soon)
        host.get_network().register_notifee(notifee)
        host.set_stream_handler(wire.PROTO_PEERS, self._handle_peers)
        host.set_stream_handler(wire.PROTO_SYNC, self._handle_sync)
        host.set_stream_handler(wire.PROTO_BLOB, self._handle_blob)
        host.set_stream_handler(wire.PROTO_BLOB2, self._handle_blob)
        host.set_stream_handler(wire.PROTO_LOGTAIL, self._handle_logtail)
        self._host = host
        on_mdns = self._mdns_handler() if self.mdns else None
        conns: list[Any] = []
        started = False
        try:
            async with host.run(listen_addrs=listen):
                async with background_trio_service(pubsub), background_trio_service(gossipsub):
                    await pubsub.wait_until_ready()
                    pubsub.set_topic_validator(TOPIC, self._topic_validator, False)
                    sub = await pubsub.subscribe(TOPIC)
                    self._pubsub = pubsub
                    try:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            nursery.start_soon(self._drain, sub)
                            nursery.start_soon(self._publisher)
                            nursery.start_soon(self._dialer)
                            nursery.start_soon(self._sync_loop)
                            self._reach = Reach(
                                host,
                                self._peer_id,
                                self._stats,
                                serve=self.relay,
                                use_relays=self.wants_relay(),
                                candidates=self._relay_candidates,
                                refresh_s=self.relay_refresh,
                                dial_timeout=self.dial_timeout,
                                on_reserved=self._announce_to,
                                probe=self._should_probe(),
                                listen_port=self._listen_port,
                                lacking=self._lacking,
                            )
                            await nursery.start(self._reach.run)
                            started = True
                            task_status.started()
                    finally:
                        self._nursery = None
                        self._pubsub = None
                        self._reach = None
                        # Gotcha: leaving the pubsub service while peers still
                        # deliver RPCs raised "Nursery is closed to new arrivals"
                        # out of host.run(): close peer connections first.
                        conns = [c for cs in list(host.get_network().connections.values()) for c in cs]
                        with trio.CancelScope(shield=True), trio.move_on_after(3):
                            for conn_peer in list(host.get_connected_peers()):
                                with trio.move_on_after(1):
                                    try:
                                        await host.disconnect(conn_peer)
                                    except Exception:
                                        pass
        except Exception as exc:
            if started:
                raise
            raise LocalError(
                f"cannot start the network on {self._listen}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            # Gotcha: leaving host.run() does not close the TCP listener (it runs
            # as a trio *system* task): without host.close() a "stopped" node
            # keeps accepting connections and answering protocol negotiation.
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                try:
                    await host.close()
                except Exception:
                    log.debug("host.close failed", exc_info=True)
                # Gotcha: a connection whose muxer was busy (e.g. a peer bursting at
                # us) survived disconnect() and close() with its TCP socket open, so
                # the peer never noticed we left. Close the secured transports too.
                for conn in conns:
                    with trio.move_on_after(0.5):
                        try:
                            await conn.muxed_conn.secured_conn.close()
                        except Exception:
                            pass
            self._host = None
            if on_mdns is not None:
                from libp2p.discovery.events.peerDiscovery import peerDiscovery

                peerDiscovery.unregister_peer_discovered_handler(on_mdns)
            for pid in list(self._since):
                self._events.send(PeerEvent(pid, False))
            self._since.clear()

    # -- gossip --------------------------------------------------------------------
    def _topic_validator(self, forwarder: Any, msg: Any) -> bool:
        """Runs before delivery and forwarding, also for our own publishes."""
        try:
            if self._host is not None and forwarder == self._host.get_id():
                return True  # our own publish: validated in publish()
            peer = str(forwarder.to_base58())
            if peer in self._blocked:
                return False
            return self._accept(bytes(msg.data), peer, forward=False)
        except Exception:  # a validator bug must not kill the peer's read loop
            log.exception("topic validator failed")
            self._stats.inc("errors")
            return False

    def _accept(self, raw: bytes, from_peer: str, *, forward: bool) -> bool:
        """The one path for facts from the network (gossip and sync).

        True means: valid and new, delivered (or at least valid), may be
        forwarded. `forward=True` republishes it on the gossip topic (facts
        that came by sync, so the rest of our side of a partition gets them).
        """
        return self._admit(raw, from_peer, forward=forward) in ("dropped", "delivered")

    def _admit(self, raw: bytes, from_peer: str, *, forward: bool) -> str:
        """`_accept`, returning `admit_fact`'s outcome ("rejected", "duplicate", ...)."""
        outcome = admit_fact(
            raw,
            from_peer,
            validate=self._validate,
            seen=self._seen,
            sync=self._sync,
            deliver=self._facts_send,
            stats=self._stats,
            quotas=self.quotas,
        )
        # "dropped" is valid: gossip may forward it; sync will offer it to us again
        if outcome == "delivered" and forward:
            try:
                self._outbox_send.send_nowait(raw)
                self._unsent += 1
            except trio.WouldBlock:
                self._stats.drop("forward_queue")
        return outcome

    async def _drain(self, sub: Any) -> None:
        # Facts are delivered from the validator; the subscription only has to
        # be read so its 32-slot channel never fills (it would log per message).
        async for _ in sub:
            pass

    async def _publisher(self) -> None:
        """Sends our facts one by one, pacing on the peers' outbound queues."""
        async for raw in self._outbox_recv:
            pubsub = self._pubsub
            if pubsub is None:
                return
            with trio.move_on_after(5):
                # The queues drain at network speed: this is real backpressure.
                while any(len(q) > OUTBOUND_QUEUE // 2 for q in list(pubsub.peer_queues.values())):  # noqa: ASYNC110
                    await trio.sleep(0.005)
            try:
                await pubsub.publish(TOPIC, raw)
            except Exception:
                log.debug("publish failed", exc_info=True)
                self._stats.inc("publish_errors")
            finally:
                self._unsent = max(0, self._unsent - 1)

    # -- peers ---------------------------------------------------------------------
    def _wakeup_soon(self) -> None:
        self._wakeup.set()

    def _reconcile(self) -> None:
        """Turn the swarm's connection set into PeerEvents and first contacts."""
        host = self._host
        if host is None:
            return
        now = {str(p.to_base58()) for p in host.get_connected_peers()}
        for banned in now & self._blocked:
            now.discard(banned)
            if self._nursery is not None and banned not in self._hanging_up:
                self._hanging_up.add(banned)
                self._nursery.start_soon(self._hang_up, banned)
        self._drop_stale_pubsub_peers()
        for gone in sorted(set(self._since) - now):
            del self._since[gone]
            self._lacking.forget(gone)
            if self._reach is not None:
                self._reach.peer_down(gone)
            self._events.send(PeerEvent(gone, False))
            book = self._book.get(gone)
            if book is not None:
                book.next_try = trio.current_time() + self.redial_min
        for new in sorted(now - set(self._since)):
            self._since[new] = now_ms()
            self._lacking.forget(new)  # a new connection: maybe a restarted peer that speaks it now
            self._events.send(PeerEvent(new, True))
            book = self._book.get(new)
            if book is not None:
                book.fails = 0
            if self._nursery is not None:
                self._nursery.start_soon(self._first_contact, new)

    def _drop_stale_pubsub_peers(self) -> None:
        """Pubsub peers with no connection left, or whose pubsub stream is closed, are dropped
        from pubsub (and its router); one still connected gets a new stream from upstream's
        `_handle_dead_peer`.

        py-libp2p's `Pubsub.handle_dead_peer_queue` (pubsub/pubsub.py:1217) handles a peer's
        disconnect notification only if no other connection to it is listed at that moment, and
        never looks again: when a peer redials while its old connection closes (a blocked peer
        does, until its backoff), the last notification can meet a connection that is closing
        too, and the peer stays in `pubsub.peers`, in the mesh and in `peer_topics` with no
        connection (`pubsub_stale_peers`). The gauges then lie, and the peer's next connection
        gets no pubsub stream (`_handle_new_peer` skips a peer it already has). When the new
        connection came first, the peer stays with the stream of the old one; a stream reset
        while its connection lives stays too (`pubsub_dead_streams`): upstream notices either
        only when it next writes to it, and loses that message.
        """
        pubsub = self._pubsub
        host = self._host
        if pubsub is None or host is None:
            return
        network = host.get_network()
        for pid, stream in list(pubsub.peers.items()):
            live = [
                c for c in network.get_connections(pid) if not getattr(getattr(c, "muxed_conn", None), "is_closed", False)
            ]
            if not live:
                self._stats.inc("pubsub_stale_peers")
                pubsub._handle_dead_peer(pid)
            elif stream.is_closed or getattr(stream.muxed_stream, "closed", False) is True:
                # (NetStream.is_closed, a property, sees a reset of ours; a Yamux stream is marked
                # `closed` on a reset by the peer and when its connection closes.)
                self._stats.inc("pubsub_dead_streams")
                pubsub._handle_dead_peer(pid)  # it re-opens ours (patches.keep_live_subscriptions)

    async def _hang_up(self, peer: str) -> None:
        from libp2p.peer.id import ID

        try:
            with trio.move_on_after(self.dial_timeout):
                await self._host.disconnect(ID.from_base58(peer))
        except Exception:
            log.debug("disconnect %s failed", peer, exc_info=True)
        finally:
            self._hanging_up.discard(peer)

    async def _first_contact(self, peer: str) -> None:
        await self._exchange_peers(peer)
        await self._sync_once(peer)

    async def _dialer(self) -> None:
        while True:
            with trio.move_on_after(self.dial_interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._reconcile()
            now = trio.current_time()
            connected = set(self._since)
            want = self.degree - len(connected) - len(self._dialing)
            if want <= 0:
                continue
            # Two peers that learn of each other by peer exchange would dial each
            # other at once; py-libp2p then holds two connections per pair and
            # pubsub streams die with the one that gets closed. So of a pair of
            # non-bootstrap peers only the lower id dials, unless we are starved.
            starved = len(connected) < max(1, self.degree // 4)
            # Peers we can reach only through a relay are dialled on demand
            # (blobs, sync: _stream), not to fill the gossip mesh, unless starved.
            cands = [
                p
                for p, b in self._book.items()
                if p not in connected
                and p not in self._dialing
                and p not in self._blocked
                and b.next_try <= now
                and b.addrs
                and (b.bootstrap or starved or self._peer_id < p)
                and (starved or any(not is_circuit(a) for a in b.addrs))
            ]
            self._rng.shuffle(cands)
            cands.sort(key=lambda p: not self._book[p].bootstrap)
            for p in cands[:want]:
                self._dialing.add(p)
                assert self._nursery is not None
                self._nursery.start_soon(self._dial, p)
            # Under degree with nobody left to dial: ask a peer for more, backing off
            # while that brings nothing new (a small mesh never reaches `degree`,
            # and py-libp2p stalls when many streams open during a burst).
            speakers = sorted(p for p in connected if not self._lacking.lacks(p, wire.PROTO_PEERS))
            if len(cands) < want and speakers and now - self._last_px >= self._px_wait:
                self._last_px = now
                assert self._nursery is not None
                self._nursery.start_soon(self._exchange_peers, self._rng.choice(speakers))

    async def _connect(self, pid: Any, addrs: list[str]) -> None:
        """Dial `pid`: direct addresses first, then through a relay (circuit addresses).

        py-libp2p's host.connect() refuses circuit addresses, so those go
        through the relay transport (reach.py).
        """
        from libp2p.peer.peerinfo import PeerInfo as LPeerInfo

        direct = [a for a in addrs if not is_circuit(a)]
        circuits = [a for a in addrs if is_circuit(a)]
        err: Exception | None = None
        if direct:
            try:
                # a direct dial that hangs (a NAT that drops) must leave time for the relay
                with trio.fail_after(self.dial_timeout / 2 if circuits else self.dial_timeout):
                    await self._host.connect(LPeerInfo(pid, [multiaddr.Multiaddr(a) for a in direct]))
                return
            except Exception as exc:
                err = exc
        for addr in circuits:
            if self._reach is None:
                break
            try:
                await self._reach.dial_circuit(addr)
                return
            except Exception as exc:
                err = exc
        raise err or ConnectionError("no usable address")

    async def _ask_where(self, peer: str) -> None:
        """We must reach `peer` but know no address (e.g. a NATed publisher that reserved its
        relay slot after our last peer exchange): one exchange with up to two connected
        bootstrap peers (a relay knows its clients' circuit addresses)."""
        boots = [p for p in sorted(self._since) if p in self._book and self._book[p].bootstrap][:2]
        for b in boots:
            with trio.move_on_after(self.dial_timeout):
                await self._exchange_peers(b)
            if peer in self._book and self._book[peer].addrs:
                return

    def _mdns_handler(self) -> Callable[[Any], None]:
        """Feed peers that mDNS finds on our LAN to the address book (like peer exchange).

        py-libp2p calls discovery handlers from zeroconf's thread, and the
        emitter is process-wide: hop onto our trio thread; bad entries are dropped
        by add_peer_addrs (bounded, scope-checked).
        """
        from libp2p.discovery.events.peerDiscovery import peerDiscovery

        token = trio.lowlevel.current_trio_token()

        def found(info: Any) -> None:
            try:
                pid = str(info.peer_id)
                addrs = [f"{a}/p2p/{pid}" for a in list(info.addrs)[: wire.MAX_ADDRS]]
            except Exception:
                return

            def learn() -> None:
                self._stats.inc("mdns_found")
                self.add_peer_addrs(addrs)

            try:
                token.run_sync_soon(learn)
            except trio.RunFinishedError:
                pass

        peerDiscovery.register_peer_discovered_handler(found)
        return found

    def _relay_candidates(self) -> list[tuple[str, list[str]]]:
        """Bootstrap peers with a direct address: where a NATed node asks for a relay slot."""
        out = []
        for pid, b in sorted(self._book.items()):
            direct = sorted(a for a in b.addrs if not is_circuit(a))
            if b.bootstrap and direct and pid not in self._blocked:
                out.append((pid, direct))
        return out

    def _announce_to(self, peer: str) -> None:
        """Tell `peer` (our new relay) our addresses now, circuit address included."""
        if self._nursery is not None:
            self._nursery.start_soon(self._exchange_peers, peer)

    async def _dial(self, peer: str) -> None:
        from libp2p.peer.id import ID

        book = self._book.get(peer)
        try:
            if book is None:
                return
            pid = ID.from_base58(peer)
            # Gotcha: after all addresses failed once, the swarm refuses every
            # dial to that peer for 60 s (negative cache). Our backoff decides.
            self._host.get_network().unblock_peer(pid)
            with trio.fail_after(self.dial_timeout):
                await self._connect(pid, sorted(book.addrs))
            book.fails = 0
            self._stats.inc("dials")
        except Exception as exc:
            self._stats.inc("dial_failures")
            if book is not None:
                book.fails += 1
                delay = min(self.redial_max, self.redial_min * 2 ** (book.fails - 1))
                book.next_try = trio.current_time() + delay * self._rng.uniform(0.8, 1.2)
                if book.fails >= self.forget_after and not book.bootstrap:
                    self._book.pop(peer, None)  # dead peer: dropped
            log.debug("dial %s failed: %r", peer, exc)
        finally:
            self._dialing.discard(peer)
            self._wakeup.set()

    async def _exchange_peers(self, peer: str) -> None:
        """`/p2pci/peers/1` client: tell our addresses, learn theirs and their peers'."""
        try:
            with trio.fail_after(self.request_timeout):
                async with self._stream(peer, wire.PROTO_PEERS) as stream:
                    await stream.write(wire.peers_request(self.addrs()))
                    payload = await self._read_frame(stream, wire.MAX_CONTROL_FRAME)
            own, others = wire.parse_peers_response(payload)
        except MissingProtocol:
            return  # optional (docs/protocol.md §8): logged once by _stream
        except Exception as exc:
            self._stats.inc("px_failures")
            log.debug("peer exchange with %s failed: %r", peer, exc)
            return
        before = {p: len(b.addrs) for p, b in self._book.items()}
        self._learn_own_addrs(peer, own)
        self.add_peer_addrs(others)
        self._stats.inc("px")
        if any(len(b.addrs) > before.get(p, 0) for p, b in self._book.items()):
            self._px_wait = self.px_interval
        else:
            self._px_wait = min(self._px_wait * 2, max(self.px_interval, 300.0))

    def _learn_own_addrs(self, peer: str, addrs: list[str]) -> None:
        """A peer's self-reported listen addresses: only accepted for its own id."""
        for addr in addrs:
            try:
                pid, a = parse_peer_addr(addr)
            except ProtocolError:
                self._stats.inc("bad_addr")
                continue
            if addr_scope(a) not in self._scopes:
                self._stats.inc("addr_out_of_scope")
                continue
            if pid == peer:
                book = self._book_entry(peer)
                if book is not None and len(book.addrs) < wire.MAX_ADDRS:
                    book.addrs.add(a)

    async def _handle_peers(self, stream: Any) -> None:
        await self._guarded(stream, "px", self._serve_peers)

    async def _guarded(self, stream: Any, what: str, serve: Callable[[Any, str], Awaitable[None]]) -> None:
        """Refuse blocked peers and more than 2 concurrent `what` streams from one peer."""
        peer = str(stream.muxed_conn.peer_id.to_base58())
        if peer in self._blocked:
            await self._bad_stream(stream, "blocked", ProtocolError("blocked peer"))
            return
        key = f"{what}:{peer}"
        if self._busy.get(key, 0) >= 2:
            self._stats.inc(f"{what}_busy")
            await self._bad_stream(stream, what, ProtocolError("too many concurrent streams"))
            return
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            await serve(stream, peer)
        finally:
            self._busy[key] -= 1
            if not self._busy[key]:
                del self._busy[key]

    async def _serve_peers(self, stream: Any, peer: str) -> None:
        try:
            with trio.fail_after(self.request_timeout):  # the whole exchange
                payload = await self._read_frame(stream, wire.MAX_CONTROL_FRAME)
                self._learn_own_addrs(peer, wire.parse_peers_request(payload))
                known = [
                    a
                    for p in self._rng.sample(sorted(self._since), len(self._since))
                    if p != peer and p in self._book
                    for a in sorted(self._book[p].addrs)[:2]
                ]
                with trio.fail_after(self.read_timeout):
                    await stream.write(wire.peers_response(self.addrs(), known))
                await stream.close()
        except Exception as exc:
            await self._bad_stream(stream, "px", exc)

    # -- anti-entropy ----------------------------------------------------------------
    async def _sync_loop(self) -> None:
        """Every `sync_interval` (±20 %), an exchange with a random peer that speaks sync and is
        not in one already. Started, not awaited: one exchange may take 16 rounds of up to
        `request_timeout` each, and a slow peer held every other peer's anti-entropy that long."""
        while True:
            await trio.sleep(self.sync_interval * self._rng.uniform(0.8, 1.2))
            speakers = sorted(
                p for p in self._since if p not in self._syncing and not self._lacking.lacks(p, wire.PROTO_SYNC)
            )
            if speakers and self._nursery is not None:
                self._nursery.start_soon(self._sync_once, self._rng.choice(speakers))

    async def _sync_once(self, peer: str) -> None:
        """`_sync_with(peer)` unless an exchange with `peer` runs already (at most one per peer,
        the periodic one or a first contact's)."""
        if peer in self._syncing:
            return
        self._syncing.add(peer)
        try:
            await self._sync_with(peer)
        finally:
            self._syncing.discard(peer)

    def _missing(self, ids: list[bytes]) -> list[bytes]:
        return [i for i in ids if i not in self._seen and self._sync.get(i) is None]

    def _budgeted(self, ids: list[bytes]) -> tuple[list[bytes], bool]:
        out: list[bytes] = []
        total = 0
        for i in ids:
            raw = self._sync.get(i)
            if raw is None:
                continue
            if total + len(raw) > self.sync_budget and out:
                return out, True
            out.append(raw)
            total += len(raw)
        return out, False

    async def _sync_with(self, peer: str, confirm: bool = False) -> None:
        """`/p2pci/sync/1` client: repeat while the server says there is more. `confirm`: after
        the third frame, wait for the server to close the stream (it reads that frame first,
        docs/protocol.md §8.3), so the facts it wanted have reached it."""
        got: list[bytes] = []  # ids received in earlier rounds (maybe outside our live window)
        for _ in range(16):
            try:
                ours = (self._sync.live_ids() + got)[: wire.MAX_IDS]
                with trio.fail_after(self.request_timeout):  # one round, whole
                    async with self._stream(peer, wire.PROTO_SYNC) as stream:
                        await stream.write(wire.sync_hello(ours))
                        payload = await self._read_frame(stream, wire.MAX_SYNC_FRAME)
                        facts, want, more = wire.parse_sync_reply(payload, MAX_FACT)
                        give, _ = self._budgeted(want)
                        with trio.fail_after(self.read_timeout):
                            await stream.write(wire.sync_facts(give))
                            if confirm:
                                await _closed_by_peer(stream)
            except MissingProtocol:
                return  # optional (docs/protocol.md §8): logged once by _stream
            except Exception as exc:
                self._stats.inc("sync_failures")
                log.debug("sync with %s failed: %r", peer, exc)
                return
            self._stats.inc("syncs")
            junk = False
            for raw in facts:
                outcome = self._admit(raw, peer, forward=True)
                if outcome in ("dropped", "delivered"):
                    self._stats.inc("synced")
                junk = junk or outcome == "rejected"
                await trio.lowlevel.checkpoint()
            if junk:
                # an honest server sends only facts it verified: one that sent junk is not asked
                # for more rounds (each could be another 100,000 facts to check and remember)
                self._stats.inc("sync_bad_servers")
                return
            # what we hold now need not come again; `ours` is cut at MAX_IDS anyway
            room = wire.MAX_IDS - len(got)
            got.extend(hashlib.sha256(raw).digest() for raw in facts[: max(0, room)])
            if not more:
                return

    async def _handle_sync(self, stream: Any) -> None:
        await self._guarded(stream, "sync", self._serve_sync)

    async def _serve_sync(self, stream: Any, peer: str) -> None:
        over = self.sync_limits.take(peer)
        if over is not None:  # before the hello is read: a refused round costs us nothing more
            self._stats.inc("sync_limited")
            self._stats.inc(f"sync_limited_{over}")
            log.debug("sync round of %s refused: %s rate", peer, over)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                with contextlib.suppress(Exception):
                    await stream.reset()
            return
        try:
            with trio.fail_after(self.request_timeout):  # the whole exchange
                theirs = wire.parse_sync_hello(await self._read_frame(stream, wire.MAX_SYNC_FRAME))
                their_set = set(theirs)
                lacking = [i for i in self._sync.live_ids() if i not in their_set]
                facts, more = self._budgeted(lacking)
                want = self._missing(theirs)
                with trio.fail_after(self.read_timeout):
                    await stream.write(wire.sync_reply(facts, want, more))
                got = wire.parse_sync_facts(await self._read_frame(stream, wire.MAX_SYNC_FRAME), MAX_FACT)
                await stream.close()
        except Exception as exc:
            await self._bad_stream(stream, "sync", exc)
            return
        wanted = set(want)
        for raw in got:
            if hashlib.sha256(raw).digest() not in wanted:
                self._stats.inc("received")
                self._stats.reject("unasked")  # unasked-for fact: a hostile push
                continue
            if self._accept(raw, peer, forward=True):
                self._stats.inc("synced")
            await trio.lowlevel.checkpoint()

    # -- blobs -----------------------------------------------------------------------
    def _bad_holder(self, peer: str) -> bool:
        until = self._bad_holders.get(peer)
        if until is None:
            return False
        if until < time.monotonic():
            del self._bad_holders[peer]
            return False
        return True

    def _drop_holder(self, peer: str, why: str) -> None:
        """A holder served bytes that are not the blob: not asked for blobs for BAD_HOLDER_S."""
        if self._bad_holder(peer):
            return
        self._stats.inc("blob_bad_holders")
        bad = self._bad_holders
        now = time.monotonic()
        if len(bad) >= MAX_BAD_HOLDERS:  # fresh keys are free: forget the expired, else the oldest
            for gone in [p for p, until in bad.items() if until < now] or [next(iter(bad))]:
                del bad[gone]
        bad[peer] = now + BAD_HOLDER_S
        log.info("blob holder %s dropped for %d s: %s", peer, BAD_HOLDER_S, why)

    async def fetch_blob(
        self, ref: Any, dest: BlobStoreLike, peers: list[str] | None = None, sharers: list[str] | None = None
    ) -> Path:
        if dest.has(ref.sha256):
            return dest.path(ref.sha256)
        if ref.size > self.blob_max:
            raise BlobUnavailable(f"blob of {ref.size} bytes exceeds the limit of {self.blob_max}")
        team = list(dict.fromkeys(sharers or [])) if ref.size > TEAM_MIN else []
        if peers is None:
            candidates = sorted(self._since)
            self._rng.shuffle(candidates)
        else:
            candidates = list(peers)
        holders = [p for p in dict.fromkeys(candidates) if p != self._peer_id and p not in team]
        holders = [p for p in holders if not self._bad_holder(p)]
        while (pending := self._pulling.get(ref.sha256)) is not None:  # one download per blob
            await pending.wait()
            if dest.has(ref.sha256):
                return dest.path(ref.sha256)
        done = self._pulling[ref.sha256] = trio.Event()
        try:
            return await self._fetch_pieces(ref, dest, holders, team)
        finally:
            del self._pulling[ref.sha256]
            done.set()

    async def _fetch_pieces(self, ref: Any, dest: BlobStoreLike, holders: list[str], team: list[str]) -> Path:
        if ref.size == 0:
            with dest.writer(ref):
                pass
            return dest.path(ref.sha256)
        part = dest.partial(ref)
        pull = Pull(part, holders, team, self._peer_id)
        for member in pull.team:
            if self._bad_holder(member):
                pull.stalled.add(member)
        self._partials[ref.sha256] = part
        try:
            await self._pull(pull, ref, part)
            if part.complete():
                if await trio.to_thread.run_sync(part.verify):
                    part.commit()
                    self._stats.inc("blob_fetched")
                    return dest.path(ref.sha256)
                self._stats.inc("blob_rejected")
                del self._partials[ref.sha256]
                if await self._blame(pull, ref, dest, part):
                    return dest.path(ref.sha256)
                pull.reasons.append("no holder served the whole blob with a matching hash")
            else:
                del self._partials[ref.sha256]
                part.close()  # kept: the next fetch resumes with the pieces it has (a few are kept)
            for peer in pull.v1:  # holders without ranges: the whole blob from one at a time
                try:
                    async with self._fetch_slot(peer):
                        await self._fetch_from(peer, ref, dest)
                except MissingProtocol:
                    pull.reasons.append(f"{peer}: does not serve blobs")
                except trio.TooSlowError:
                    self._stats.inc("blob_timeouts")
                    pull.reasons.append(f"{peer}: timed out")
                except ProtocolError as exc:
                    self._stats.inc("blob_rejected")
                    if exc.reason == "mismatch":
                        self._drop_holder(peer, str(exc))
                    pull.reasons.append(f"{peer}: {exc}")
                except Exception as exc:  # libp2p: dial/stream errors of many types
                    self._stats.inc("blob_failures")
                    pull.reasons.append(f"{peer}: {type(exc).__name__}: {exc}")
                else:
                    self._stats.inc("blob_fetched")
                    return dest.path(ref.sha256)
        finally:
            self._partials.pop(ref.sha256, None)
            part.close()
            if not dest.has(ref.sha256):  # failed, or given up by the caller: at most a few partials stay
                active = frozenset(p.path for p in self._partials.values())
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(dest.prune_partials, active)
        raise BlobUnavailable(
            f"blob {ref.sha256.hex()} unavailable: " + "; ".join(pull.reasons[-8:] or ["no peers"])
        )

    async def _blame(self, pull: Pull, ref: Any, dest: BlobStoreLike, bad: Any) -> bool:
        """The assembled blob failed its hash. Get it whole from one remote at a time (each copy
        verified alone), then drop every remote whose pieces differ from the good copy; a
        remote whose own whole copy fails is dropped too. True once the blob is in `dest`."""
        bad_path = bad.path.with_name(bad.path.name + ".bad")
        bad.close()
        bad.path.replace(bad_path)
        bad.discard()
        try:
            for peer in [*pull.holders, *(m for m in pull.team if m != self._peer_id)]:
                if self._bad_holder(peer):
                    continue
                part = dest.partial(ref)
                alone = Pull(part, [peer], [], self._peer_id)
                self._partials[ref.sha256] = part
                try:
                    await self._pull(alone, ref, part)
                    pull.v1 += [p for p in alone.v1 if p not in pull.v1]  # asked whole over blob/1 next
                    if not part.complete():
                        part.discard()
                        continue
                    if not await trio.to_thread.run_sync(part.verify):
                        self._drop_holder(peer, "its whole copy does not match the hash")
                        part.discard()
                        continue
                    culprits = await trio.to_thread.run_sync(_differing, bad_path, part, pull.sources)
                    for culprit in sorted(culprits):
                        self._drop_holder(culprit, "served pieces that are not the blob")
                    part.commit()
                    self._stats.inc("blob_fetched")
                    return True
                finally:
                    self._partials.pop(ref.sha256, None)
                    part.close()
            return False
        finally:
            bad_path.unlink(missing_ok=True)

    @asynccontextmanager
    async def _fetch_slot(self, peer: str) -> AsyncIterator[None]:
        """One of `blob_concurrency` streams to `peer` for blobs (waits for one). The entry goes
        with its last user: peers asked once (any connected peer, when no holder delivers) leave
        nothing behind, however many come and go."""
        sem, users = self._fetch_slots.get(peer) or (trio.Semaphore(self.blob_concurrency), 0)
        self._fetch_slots[peer] = (sem, users + 1)
        try:
            async with sem:
                yield
        finally:
            sem, users = self._fetch_slots[peer]
            if users > 1:
                self._fetch_slots[peer] = (sem, users - 1)
            else:
                del self._fetch_slots[peer]

    async def _pull(self, pull: Pull, ref: Any, part: Any) -> None:
        """Run the per-remote tasks of one download until it is complete or nobody can add to it."""
        remotes = [m for m in pull.team if m != self._peer_id and m not in pull.stalled]
        spare = list(pull.holders)
        remotes += spare[:MAX_HOLDERS]
        del spare[:MAX_HOLDERS]
        async with trio.open_nursery() as nursery:
            for remote in remotes:
                pull.live += 1
                nursery.start_soon(self._pull_from, pull, remote, ref, part)
            while not part.complete() and pull.live:
                if pull.gone and spare:  # a holder gave up: the next one in line takes its place
                    pull.gone -= 1
                    pull.live += 1
                    nursery.start_soon(self._pull_from, pull, spare.pop(0), ref, part)
                    continue
                for member in pull.overdue(trio.current_time(), PATIENCE_S):  # slow, not stopped
                    pull.reasons.append(f"{member}: still owed pieces {PATIENCE_S:g} s after the holders ran out")
                    pull.stall(member)
                with trio.move_on_at(pull.due(PATIENCE_S)):
                    await pull.changed.wait()
            nursery.cancel_scope.cancel()

    async def _pull_from(self, pull: Pull, remote: str, ref: Any, part: Any) -> None:
        """One remote's share of a download: ask what it has, take runs of pieces it may serve."""
        team = pull.is_team(remote)
        scope = pull.tasks[remote] = trio.CancelScope()  # cancelled when the member is stalled
        try:
            with scope:
                await self._pull_loop(pull, remote, ref, part, team)
        finally:
            del pull.tasks[remote]
            pull.live -= 1
            if team and not part.complete():
                pull.stall(remote)
            elif not team:
                pull.gone += 1
            pull.kick()

    async def _pull_loop(self, pull: Pull, remote: str, ref: Any, part: Any, team: bool) -> None:
        backoff = 0.05
        last = -1
        grew = trio.current_time()
        refused_since: float | None = None  # the first of the refusals in a row (no run landed since)

        def too_refused(error: str) -> bool:
            """Another refusal ("busy", or "not held" of pieces its `have` shows): True (and why)
            once it has refused for PATIENCE_S with no run landed. Counted from the first refusal,
            not from the last other answer: waiting for our own fetch slot to this peer (held by
            our other downloads) is not its fault."""
            nonlocal refused_since
            now = trio.current_time()
            if refused_since is None:
                refused_since = now
            if now - refused_since <= PATIENCE_S:
                return False
            pull.reasons.append(f"{remote}: refused for {PATIENCE_S:g} s ({error[:60]})")
            return True

        # A holder is taken at its word (the whole blob) and asked for a first run at once: a
        # refusal carries its `have` (one round trip less per blob). A team member is asked first.
        refresh = team
        full = not team
        if not team:
            pull.haves[remote] = full_bitmap(part.n)
        while not part.complete():
            if refresh:
                try:
                    _ok, error, have = await self._range(remote, ref, part, 0, 0)
                except MissingProtocol:
                    if not team:
                        pull.v1.append(remote)
                    pull.reasons.append(f"{remote}: no ranges (/p2pci/blob/2)")
                    return
                except Exception as exc:
                    self._blob_error(pull, remote, exc)
                    return
                if error == "busy":  # serving others (2 streams per peer): ask again soon
                    if too_refused(error):
                        return
                    with trio.move_on_after(backoff):
                        await pull.changed.wait()
                    backoff = min(backoff * 2, 0.5)
                    continue
                refused_since = None
                if not have and not team:
                    pull.reasons.append(f"{remote}: refused: {error}" if error else f"{remote}: does not have it")
                    return
                pull.haves[remote] = have
                count = popcount(have)
                full = count == part.n
                if count > last:  # progress only if it shows a piece we lack: not pieces we hold
                    last = count
                    if any(bit(have, i) and not part.held(i) for i in range(part.n)):
                        grew = trio.current_time()
                refresh = False
            run = pull.take(remote)
            if run:
                off = run[0] * PIECE
                length = min(part.ref.size, (run[-1] + 1) * PIECE) - off
                try:
                    ok, error, have = await self._range(remote, ref, part, off, length)
                except MissingProtocol:
                    pull.release(run)
                    if not team:
                        pull.v1.append(remote)
                    pull.reasons.append(f"{remote}: no ranges (/p2pci/blob/2)")
                    return
                except Exception as exc:
                    pull.release(run)
                    self._blob_error(pull, remote, exc)
                    return
                if not ok:
                    pull.release(run)
                    if too_refused(error):  # a remote that refuses every run it says it has
                        return
                    if error != "busy":
                        pull.haves[remote] = have
                        full = popcount(have) == part.n
                        if not have and not team:
                            pull.reasons.append(f"{remote}: refused: {error}")  # as over /p2pci/blob/1
                            return
                    with trio.move_on_after(backoff):
                        await pull.changed.wait()
                    backoff = min(backoff * 2, 0.5)
                    continue
                part.mark(pull.landed(run, remote), direct=not team)
                refused_since = None
                backoff = 0.05
                continue
            if full:
                await pull.changed.wait()  # all it could give is taken or not ours yet
                continue
            idle = trio.current_time() - grew
            if last >= 0 and (idle > PATIENCE_S or (last == 0 and idle > START_S)):  # stopped, or never began
                pull.reasons.append(f"{remote}: no progress for {idle:.1f} s")
                return
            with trio.move_on_after(backoff):
                await pull.changed.wait()
            backoff = min(backoff * 2, 0.5)
            refresh = True

    def _blob_error(self, pull: Pull, remote: str, exc: BaseException) -> None:
        if isinstance(exc, trio.TooSlowError):
            self._stats.inc("blob_timeouts")
            pull.reasons.append(f"{remote}: timed out")
        elif isinstance(exc, ProtocolError):
            self._stats.inc("blob_rejected")
            pull.reasons.append(f"{remote}: {exc}")
        else:
            self._stats.inc("blob_failures")
            pull.reasons.append(f"{remote}: {type(exc).__name__}: {exc}")

    async def _range(self, peer: str, ref: Any, part: Any, off: int, length: int) -> tuple[bool, str, bytes]:
        """One /p2pci/blob/2 request; with `length` the bytes go into `part` at `off` (not marked)."""
        async with self._fetch_slot(peer), self._stream(peer, wire.PROTO_BLOB2) as stream:
            with trio.fail_after(self.read_timeout):
                await _open_window(stream, length)
                await stream.write(wire.range_request(ref.sha256, ref.size, off, length))
            ok, error, have = wire.parse_range_response(
                await self._read_frame(stream, wire.MAX_CONTROL_FRAME), ref.size
            )
            if ok and length:
                pos = off

                def write(view: memoryview) -> None:
                    nonlocal pos
                    part.write(pos, view)
                    pos += len(view)

                await self._receive_blob(stream, length, write)
                self._stats.inc("blob_received_bytes", length)
            return ok, error, have

    async def _fetch_from(self, peer: str, ref: Any, dest: BlobStoreLike) -> None:
        async with self._stream(peer, wire.PROTO_BLOB) as stream:
            with trio.fail_after(self.read_timeout):
                await stream.write(wire.blob_request(ref.sha256, ref.size))
            ok, error = wire.parse_blob_response(await self._read_frame(stream, wire.MAX_CONTROL_FRAME))
            if not ok:
                raise ProtocolError(f"refused: {error}")
            try:
                with dest.writer(ref) as w:
                    await self._receive_blob(stream, ref.size, w.write)
                    await trio.to_thread.run_sync(w.finish)  # verify and fsync off the event loop
            except ProtocolError as exc:
                raise ProtocolError(str(exc), "mismatch") from None
            # leaving the writer verified the hash; only then is it in the store

    async def _receive_blob(self, stream: Any, size: int, write: Callable[[memoryview], Any]) -> None:
        """The chunk frames of a blob into `write`, read in large pieces and never reassembled.

        Each read (at most `_BLOB_READ` bytes, whatever the stream has buffered) has its own
        deadline, and the bytes must keep pace: the next piece (or the rest) is due
        `read_timeout` + its end at wire.BLOB_MIN_RATE after the start, so a sender that trickles
        a byte per read timeout is cut off (TooSlowError) after one piece's time, not the whole
        blob's. Frame headers are checked as they come (non-empty, ≤ wire.CHUNK, never past
        `size`); payload bytes go to `write` as views of the read buffer, with no copy.
        """
        got = 0
        frame_left = 0  # payload bytes still due in the current chunk frame
        head = b""  # a frame header split across two reads
        start = trio.current_time()
        while got < size:
            due = start + self.read_timeout + min(size, got + PIECE) / wire.BLOB_MIN_RATE
            with trio.fail_at(min(trio.current_time() + self.read_timeout, due)):
                data = await stream.read(_BLOB_READ)
            if not data:
                raise ProtocolError("stream closed mid-blob")
            await trio.lowlevel.checkpoint_if_cancelled()  # given up (a stalled member): not one byte more
            view = memoryview(data)
            while view:
                if got == size:
                    raise ProtocolError("bytes after the end of the blob")
                if not frame_left:
                    need = wire.LEN.size - len(head)
                    head += view[:need]
                    view = view[need:]
                    if len(head) < wire.LEN.size:
                        break
                    frame_left = wire.parse_length(head, wire.CHUNK)
                    head = b""
                    if not frame_left or got + frame_left > size:
                        raise ProtocolError("bad blob chunk")
                    continue
                part = view[:frame_left]
                write(part)
                got += len(part)
                frame_left -= len(part)
                view = view[len(part) :]

    def _blob_source(self, sha: bytes, size: int) -> tuple[Path | None, bytes, str]:
        """What this node can serve of blob `sha` of `size` bytes: (file, have bitmap, refusal).

        The one place that decides what is served (both protocol versions go through it): a
        whole blob from the store, else the pieces of a download in progress that came from a
        holder of the whole blob (`direct`: never pieces a team member relayed)."""
        if size > self.blob_max:
            return None, b"", "too large"
        store = self._blobs
        if store is not None and store.has(sha):
            path = store.path(sha)
            if path.stat().st_size != size:
                return None, b"", "size mismatch"
            return path, full_bitmap(pieces(size)), ""
        part = self._partials.get(sha)
        if part is not None and part.ref.size == size and any(part.direct):
            return part.path, bytes(part.direct), ""
        return None, b"", "not found"

    async def _handle_blob(self, stream: Any) -> None:
        peer = str(stream.muxed_conn.peer_id.to_base58())
        v2 = str(stream.get_protocol()) == wire.PROTO_BLOB2
        if peer in self._blocked:
            await self._bad_stream(stream, "blocked", ProtocolError("blocked peer"))
            return
        if self._serve_slots.get(peer, 0) >= self.blob_concurrency:
            self._stats.inc("blob_busy")
            await self._refuse(stream, "busy", v2)
            return
        self._serve_slots[peer] = self._serve_slots.get(peer, 0) + 1
        try:
            with trio.fail_after(self.request_timeout):
                payload = await self._read_frame(stream, wire.MAX_CONTROL_FRAME)
            if v2:
                sha, size, off, length = wire.parse_range_request(payload)
            else:
                sha, size = wire.parse_blob_request(payload)
                off, length = 0, size
            if self._blob_access is not None:  # before anything else: a refusal says nothing of what we hold
                refused = await self._blob_access(sha, peer)
                if refused is not None:
                    self._stats.inc("blob_refused")
                    await self._refuse(stream, refused, v2)
                    return
            path, have, why = self._blob_source(sha, size)
            if path is None:
                await self._refuse(stream, why, v2)
                return
            if length and not all(bit(have, i) for i in range(off // PIECE, (off + length - 1) // PIECE + 1)):
                await self._refuse(stream, "not held", v2, have)  # v1 asks for all: only a whole blob
                return
            with trio.fail_after(self.read_timeout):
                await stream.write(wire.range_response(True, "", have) if v2 else wire.blob_response(True))
            if length:
                await self._send_range(stream, path, off, length)
            self._stats.inc("blob_served")
            with trio.move_on_after(self.read_timeout):
                await stream.close()
        except Exception as exc:
            await self._bad_stream(stream, "blob", exc)
        finally:
            self._serve_slots[peer] -= 1
            if not self._serve_slots[peer]:
                del self._serve_slots[peer]

    async def _send_range(self, stream: Any, path: Path, off: int, length: int) -> None:
        """Chunk frames read from the file straight behind their headers, _BLOB_BATCH frames per
        stream write (one deadline each); see _BLOB_CHUNK. Counted in `blob_served_bytes`."""
        step = wire.LEN.size + _BLOB_CHUNK
        buf = bytearray(_BLOB_BATCH * step)
        mv = memoryview(buf)
        with path.open("rb", buffering=0) as f:
            f.seek(off)
            sent = 0
            while sent < length:
                end = 0
                while end < len(buf) and sent < length:
                    n = f.readinto(mv[end + wire.LEN.size : end + wire.LEN.size + min(_BLOB_CHUNK, length - sent)])
                    if not n:
                        break  # the file shrank under us: the reader times out / rejects
                    wire.LEN.pack_into(buf, end, n)
                    end += wire.LEN.size + n
                    sent += n
                if not end:
                    break
                with trio.fail_after(self.read_timeout):
                    await stream.write(mv[:end])  # framed (copied) by Yamux before it returns
                self._stats.inc("blob_served_bytes", end - (end // step + (1 if end % step else 0)) * wire.LEN.size)

    async def _refuse(self, stream: Any, why: str, v2: bool = False, have: bytes = b"") -> None:
        try:
            with trio.fail_after(self.read_timeout):
                await stream.write(wire.range_response(False, why, have) if v2 else wire.blob_response(False, why))
                await stream.close()
        except Exception as exc:
            await self._bad_stream(stream, "blob", exc)

    # -- /p2pci/logtail/1 ------------------------------------------------------------
    async def fetch_log(self, peer: str, job: bytes, offset: int) -> tuple[int, bytes, int]:
        with trio.fail_after(self.request_timeout):
            async with self._stream(peer, wire.PROTO_LOGTAIL) as stream:
                with trio.fail_after(self.read_timeout):
                    await stream.write(wire.logtail_request(job, offset))
                payload = await self._read_frame(stream, wire.MAX_CONTROL_FRAME)
        ok, error, off, data, size = wire.parse_logtail_response(payload, offset)
        if not ok:
            raise ProtocolError(f"refused: {error}")
        self._stats.inc("logtail_received_bytes", len(data))
        return off, data, size

    async def _handle_logtail(self, stream: Any) -> None:
        await self._guarded(stream, "logtail", self._serve_logtail)

    async def _serve_logtail(self, stream: Any, peer: str) -> None:
        try:
            with trio.fail_after(self.request_timeout):  # the whole exchange
                job, offset = wire.parse_logtail_request(await self._read_frame(stream, wire.MAX_CONTROL_FRAME))
                if self._log_source is None:
                    refused: str | None = "this node serves no build logs"
                    off, data, size = 0, b"", 0
                else:
                    refused, off, data, size = await self._log_source(job, peer, offset)
                if refused is not None:
                    self._stats.inc("logtail_refused")
                    reply = wire.logtail_response(False, refused)
                else:
                    self._stats.inc("logtail_served_bytes", len(data))
                    reply = wire.logtail_response(True, "", off, data[: wire.LOGTAIL_MAX], size)
                with trio.fail_after(self.read_timeout):
                    await stream.write(reply)
                await stream.close()
        except Exception as exc:
            await self._bad_stream(stream, "logtail", exc)

    # -- stream helpers --------------------------------------------------------------
    @asynccontextmanager
    async def _stream(self, peer: str, proto: str) -> AsyncIterator[Any]:
        from libp2p.peer.id import ID

        if self._host is None:
            raise LocalError("network is not running")
        if peer in self._blocked:
            raise ProtocolError("blocked peer")
        if self._lacking.lacks(peer, proto):
            raise MissingProtocol(peer, proto)  # it said so already: not asked again while connected
        pid = ID.from_base58(peer)
        if peer not in self._since and not (peer in self._book and self._book[peer].addrs):
            await self._ask_where(peer)
        with trio.fail_after(self.dial_timeout):
            book = self._book.get(peer)
            if peer not in self._since and book is not None and book.addrs:
                # not connected (e.g. a publisher we know from peer exchange): dial
                # with the addresses we know, past the swarm's negative cache
                self._host.get_network().unblock_peer(pid)
                await self._connect(pid, sorted(book.addrs))
            try:
                stream = await self._host.new_stream(pid, [proto])
            except Exception as exc:
                if not lacks_protocol(exc):
                    raise
                self.note_missing(peer, proto)
                raise MissingProtocol(peer, proto) from None
        try:
            yield stream
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:
                    pass
            raise
        else:
            with trio.move_on_after(self.read_timeout):
                try:
                    await stream.close()
                except Exception:
                    pass

    def note_missing(self, peer: str, proto: str) -> None:
        """`peer` answered `na` for the optional `proto`: once per peer and protocol at debug."""
        self._stats.inc("peer_lacks_protocol")
        if self._lacking.note(peer, proto):
            log.debug("peer %s does not speak %s (optional): not asked again while connected", peer, proto)

    async def _read_exact(self, stream: Any, n: int) -> bytes:
        """Exactly `n` bytes; no deadline of its own (the caller's frame deadline bounds it)."""
        buf = bytearray()
        while len(buf) < n:
            part = await stream.read(n - len(buf))
            if not part:
                raise ProtocolError("stream closed mid-frame")
            buf += part
        return bytes(buf)

    async def _read_frame(self, stream: Any, limit: int) -> bytes:
        """One frame under one deadline from its first byte (wire.frame_deadline): a peer that
        trickles a byte at a time is cut off, TooSlowError, however often it sends."""
        with trio.fail_after(self.read_timeout) as scope:
            n = wire.parse_length(await self._read_exact(stream, wire.LEN.size), limit)
            scope.deadline += wire.frame_deadline(self.read_timeout, n) - self.read_timeout
            return await self._read_exact(stream, n) if n else b""

    async def _bad_stream(self, stream: Any, what: str, exc: BaseException) -> None:
        self._stats.inc(f"{what}_bad_streams")
        log.debug("%s stream failed: %r", what, exc)
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await stream.reset()
            except Exception:
                pass


async def _closed_by_peer(stream: Any) -> None:
    """Wait until the peer ends `stream` (end of stream or reset: either way it is done reading)."""
    with contextlib.suppress(Exception):
        while await stream.read(4096):
            pass


async def _no_auto_connect() -> None:
    await trio.lowlevel.checkpoint()


def _msg_id(msg: Any) -> bytes:
    return hashlib.sha256(msg.data).digest()


class _Notifee:
    """Swarm notifee: any connection change wakes the dialer, which reconciles."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def connected(self, network: Any, conn: Any) -> None:
        self._wake()

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._wake()

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass
