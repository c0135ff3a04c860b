"""In-memory `Network` for fast daemon tests (same semantics as LibP2PNetwork).

    hub = MemoryHub(loss=0.0, delay=0.0)
    a = MemoryNetwork(hub, "A", validate=validate, blobs=store_a, sync_source=src_a)
    await nursery.start(a.run)

Topology: by default every running node is linked to every other one
(`MemoryHub(full_mesh=True)`); with `full_mesh=False` only pairs joined by
`hub.connect(a, b)` are linked and gossip is flooded hop by hop, each hop
validating before it forwards. `hub.partition({"A"}, {"B", "C"})` cuts all
links across groups until `hub.heal()`. `hub.loss` (0..1) drops gossip
messages per link, `hub.delay` (seconds, trio clock) delays them; sync and
blobs are reliable (they are streams in the libp2p implementation) but
respect partitions. A fact that is new to a node when it arrives by sync is
gossiped on by that node (so a healed partition converges in one round).
Cancelling a node's `run` is a crash: it leaves the hub.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (from trio_typing) shadow trio's own types

from p2pci.core.errors import ProtocolError
from p2pci.net.base import (
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
from p2pci.net.common import Fanout, MissingProtocol, SeenIds, Stats, admit_fact, now_ms
from p2pci.net.quota import Quotas
from p2pci.net.wire import LEN, LOGTAIL_MAX, PROTO_LOGTAIL, logtail_response, parse_logtail_response

CHUNK = 64 * 1024


class MemoryHub:
    def __init__(
        self, *, loss: float = 0.0, delay: float = 0.0, full_mesh: bool = True, rng: random.Random | None = None
    ) -> None:
        self.loss = loss
        self.delay = delay
        self.full_mesh = full_mesh
        self.rng = rng or random.Random(0)
        self.nodes: dict[str, MemoryNetwork] = {}
        self._links: set[frozenset[str]] = set()
        self._groups: list[frozenset[str]] | None = None

    # -- topology ------------------------------------------------------------
    def connect(self, a: str, b: str) -> None:
        self._links.add(frozenset((a, b)))
        self._changed()

    def disconnect(self, a: str, b: str) -> None:
        self._links.discard(frozenset((a, b)))
        self._changed()

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        self._groups = [frozenset(g) for g in groups]
        self._changed()

    def heal(self) -> None:
        self._groups = None
        self._changed()

    def can_talk(self, a: str, b: str) -> bool:
        if a == b or a not in self.nodes or b not in self.nodes:
            return False
        if not self.full_mesh and frozenset((a, b)) not in self._links:
            return False
        if self._groups is not None:
            return any(a in g and b in g for g in self._groups)
        return True

    def neighbours(self, a: str) -> list[str]:
        return sorted(b for b in self.nodes if self.can_talk(a, b))

    def _join(self, node: MemoryNetwork) -> None:
        if node.peer_id in self.nodes:
            raise ProtocolError(f"duplicate peer id {node.peer_id} on the hub")
        self.nodes[node.peer_id] = node
        self._changed()

    def _leave(self, node: MemoryNetwork) -> None:
        if self.nodes.get(node.peer_id) is node:
            del self.nodes[node.peer_id]
            self._changed()

    def _changed(self) -> None:
        for node in list(self.nodes.values()):
            node._refresh_peers()


class MemoryNetwork:
    """One node on a `MemoryHub`; see the module docstring."""

    def __init__(
        self,
        hub: MemoryHub,
        peer_id: str,
        *,
        validate: Validator,
        blobs: BlobStoreLike | None = None,
        sync_source: SyncSource | None = None,
        sync_interval: float = 30.0,
        facts_buffer: int = 4096,
    ) -> None:
        self.hub = hub
        self._peer_id = peer_id
        self._validate = validate
        self._blobs = blobs
        self._blob_access: BlobAccess | None = None
        self._log_source: LogSource | None = None
        self.speaks_logtail = True  # False: like a peer that lacks /p2pci/logtail/1
        self._sync = sync_source or EmptySyncSource()
        self.sync_interval = sync_interval
        self._seen = SeenIds()
        # gossip message ids received, like GossipSub's own seen cache: `forget` (the daemon
        # refused or evicted a fact) lets sync bring a fact again, never a gossip loop
        self._gossip_ids = SeenIds()
        self._stats = Stats()
        self.quotas: Quotas | None = None  # off by default in the in-memory hub (tests set one)
        self._events: Fanout[NetEvent] = Fanout()
        self._facts_send, self._facts_recv = trio.open_memory_channel[Delivery](facts_buffer)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[tuple[bytes, str]](10_000)
        self._peers: dict[str, int] = {}  # peer id -> connected since (ms)
        self._nursery: trio.Nursery | None = None
        self._sync_wakeup = trio.Event()
        self._pending_sync: list[str] = []

    # -- Network -------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self._peer_id

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._inbox_loop)
                nursery.start_soon(self._sync_loop)
                self.hub._join(self)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.hub._leave(self)
            self._peers.clear()

    async def publish(self, raw: bytes) -> None:
        fact_id = self._validate(raw)  # our own bug if this raises: let it
        await trio.lowlevel.checkpoint()
        self._seen.add(fact_id)
        self._stats.inc("published")
        self._gossip(raw, exclude=None)

    async def flush(self) -> None:
        """Gossip here is delivered synchronously: nothing is ever left to send."""
        await trio.lowlevel.checkpoint()

    def facts(self) -> trio.MemoryReceiveChannel[Delivery]:
        return self._facts_recv

    async def fetch_blob(
        self, ref: Any, dest: BlobStoreLike, peers: list[str] | None = None, sharers: list[str] | None = None
    ) -> Path:
        """Whole blobs from one holder at a time (no pieces: the sharers are asked after `peers`)."""
        if dest.has(ref.sha256):
            return dest.path(ref.sha256)
        candidates = list(peers) if peers is not None else self.hub.neighbours(self._peer_id)
        candidates += [s for s in sharers or [] if s != self._peer_id and s not in candidates]
        reasons: list[str] = []
        for peer in candidates:
            node = self.hub.nodes.get(peer)
            if node is None or not self.hub.can_talk(self._peer_id, peer):
                reasons.append(f"{peer}: not reachable")
                continue
            if node._blob_access is not None:
                try:
                    refused = await node._blob_access(ref.sha256, self._peer_id)
                except Exception as exc:  # the server's failure (e.g. a node stopping): its stream would reset
                    reasons.append(f"{peer}: server error {type(exc).__name__}")
                    continue
                if refused is not None:
                    node._stats.inc("blob_refused")
                    reasons.append(f"{peer}: refused: {refused}")
                    continue
            src = node._blobs
            if src is None or not src.has(ref.sha256):
                reasons.append(f"{peer}: does not have it")
                continue
            try:
                with dest.writer(ref) as w:
                    with src.path(ref.sha256).open("rb") as f:
                        total = 0
                        while chunk := f.read(CHUNK):
                            total += len(chunk)
                            if total > ref.size:
                                raise ProtocolError("blob larger than expected")
                            w.write(chunk)
                            await trio.lowlevel.checkpoint()
                    await trio.to_thread.run_sync(w.finish)  # verify and fsync off the event loop
            except ProtocolError as exc:
                self._stats.inc("blob_rejected")
                reasons.append(f"{peer}: {exc}")
                continue
            self._stats.inc("blob_fetched")
            return dest.path(ref.sha256)
        raise BlobUnavailable(f"blob {ref.sha256.hex()} unavailable: " + "; ".join(reasons or ["no peers"]))

    def serve_blobs(self, store: BlobStoreLike) -> None:
        self._blobs = store

    def set_blob_access(self, access: BlobAccess) -> None:
        self._blob_access = access

    def set_log_source(self, source: LogSource) -> None:
        self._log_source = source

    async def fetch_log(self, peer: str, job: bytes, offset: int) -> tuple[int, bytes, int]:
        """/p2pci/logtail/1 through the hub: the same checks on the reply as over libp2p."""
        await trio.lowlevel.checkpoint()
        node = self.hub.nodes.get(peer)
        if node is None or not self.hub.can_talk(self._peer_id, peer):
            raise ProtocolError(f"{peer}: not reachable")
        if not node.speaks_logtail:
            self._stats.inc("peer_lacks_protocol")
            raise MissingProtocol(peer, PROTO_LOGTAIL)
        if node._log_source is None:
            refused: str | None = "this node serves no build logs"
            off, data, size = 0, b"", 0
        else:
            refused, off, data, size = await node._log_source(job, self._peer_id, offset)
        if refused is not None:
            node._stats.inc("logtail_refused")
            raise ProtocolError(f"refused: {refused}")
        reply = logtail_response(True, "", off, data[:LOGTAIL_MAX], size)
        _ok, _err, off, data, size = parse_logtail_response(reply[LEN.size :], offset)
        return off, data, size

    def forget(self, fact_ids: list[bytes]) -> None:
        """The daemon evicted (quotas) or refused (admission) these facts: not 'seen' any more, so sync can offer them again."""
        self._seen.discard(fact_ids)

    def set_sync_source(self, source: SyncSource) -> None:
        self._sync = source

    def peers(self) -> list[PeerInfo]:
        return [PeerInfo(p, (f"/memory/{p}",), since) for p, since in sorted(self._peers.items())]

    def addrs(self) -> list[str]:
        return [f"/memory/{self._peer_id}"]

    def events(self) -> trio.MemoryReceiveChannel[NetEvent]:
        return self._events.subscribe()

    def stats(self) -> dict[str, int]:
        return self._stats.snapshot()

    # -- internals -------------------------------------------------------------
    def _refresh_peers(self) -> None:
        now = set(self.hub.neighbours(self._peer_id)) if self._nursery is not None else set()
        for gone in sorted(set(self._peers) - now):
            del self._peers[gone]
            self._events.send(PeerEvent(gone, False))
        for new in sorted(now - set(self._peers)):
            self._peers[new] = now_ms()
            self._events.send(PeerEvent(new, True))
            self._pending_sync.append(new)
            self._sync_wakeup.set()

    def _gossip(self, raw: bytes, exclude: str | None) -> None:
        for peer in self.hub.neighbours(self._peer_id):
            if peer == exclude:
                continue
            if self.hub.loss and self.hub.rng.random() < self.hub.loss:
                self._stats.inc("lost")
                continue
            if self.hub.delay > 0 and self._nursery is not None:
                self._nursery.start_soon(self._deliver_later, peer, raw)
            else:
                self._deliver_to(peer, raw)

    async def _deliver_later(self, peer: str, raw: bytes) -> None:
        await trio.sleep(self.hub.delay)
        self._deliver_to(peer, raw)

    def _deliver_to(self, peer: str, raw: bytes) -> None:
        node = self.hub.nodes.get(peer)
        if node is None or not self.hub.can_talk(self._peer_id, peer):
            return
        node._receive(raw, self._peer_id)

    def _receive(self, raw: bytes, from_peer: str) -> None:
        try:
            self._inbox_send.send_nowait((raw, from_peer))
        except trio.WouldBlock:
            self._stats.inc("received")
            self._stats.drop("backlog")

    async def _inbox_loop(self) -> None:
        async for raw, from_peer in self._inbox_recv:
            if isinstance(raw, bytes):
                fid = hashlib.sha256(raw).digest()
                if fid in self._gossip_ids and fid not in self._seen:  # forgotten since: not again by gossip
                    self._stats.inc("received")
                    self._stats.inc("duplicate")
                    continue
                self._gossip_ids.add(fid)
            self._handle(raw, from_peer, forward=True)

    def _handle(self, raw: bytes, from_peer: str, *, forward: bool) -> bool:
        """The one path for facts from the network (gossip and sync)."""
        outcome = admit_fact(
            raw, from_peer, validate=self._validate, seen=self._seen, sync=self._sync,
            deliver=self._facts_send, stats=self._stats, quotas=self.quotas,
        )
        if outcome != "delivered":
            return False
        if forward:
            self._gossip(raw, exclude=from_peer)
        return True

    async def _sync_loop(self) -> None:
        while True:
            with trio.move_on_after(self.sync_interval):
                await self._sync_wakeup.wait()
            self._sync_wakeup = trio.Event()
            targets, self._pending_sync = self._pending_sync, []
            if not targets:
                nbrs = self.hub.neighbours(self._peer_id)
                if nbrs:
                    targets = [self.hub.rng.choice(nbrs)]
            for peer in targets:
                await self._sync_with(peer)

    async def _sync_with(self, peer: str) -> None:
        """Anti-entropy with one peer: each side gets the live facts it lacks."""
        other = self.hub.nodes.get(peer)
        if other is None or not self.hub.can_talk(self._peer_id, peer):
            return
        self._stats.inc("syncs")
        for src, dst in ((other, self), (self, other)):
            for fact_id in src._sync.live_ids():
                if fact_id in dst._seen or dst._sync.get(fact_id) is not None:
                    continue
                raw = src._sync.get(fact_id)
                if raw is not None:
                    if dst._handle(raw, src.peer_id, forward=True):
                        dst._stats.inc("synced")
                await trio.lowlevel.checkpoint()
