"""Small pieces shared by the network implementations (no libp2p here)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

from p2pci.core.errors import ProtocolError
from p2pci.net.base import MAX_FACT, Delivery, SyncSource
from p2pci.net.quota import Quotas

T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


class SeenIds:
    """A bounded insertion-ordered set of fact ids (oldest forgotten first)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: OrderedDict[bytes, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, fact_id: object) -> bool:
        return fact_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, fact_id: bytes) -> bool:
        """Remember `fact_id`; False if it was already known."""
        if fact_id in self._ids:
            return False
        self._ids[fact_id] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True

    def discard(self, fact_ids: list[bytes]) -> None:
        """Forget ids (facts the daemon evicted): sync may bring them back, through the quotas."""
        for fid in fact_ids:
            self._ids.pop(fid, None)


class Fanout(Generic[T]):
    """Broadcast to any number of subscribers; a slow subscriber loses items (counted)."""

    def __init__(self, buffer: int = 256) -> None:
        self._buffer = buffer
        self._subs: list[trio.MemorySendChannel[T]] = []
        self.dropped = 0

    def subscribe(self) -> trio.MemoryReceiveChannel[T]:
        send, recv = trio.open_memory_channel[T](self._buffer)
        self._subs.append(send)
        return recv

    def send(self, item: T) -> None:
        alive: list[trio.MemorySendChannel[T]] = []
        for ch in self._subs:
            try:
                ch.send_nowait(item)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue
            alive.append(ch)
        self._subs = alive

    def close(self) -> None:
        for ch in self._subs:
            ch.close()
        self._subs = []


class Stats:
    """Named counters exposed by `Network.stats()`."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()

    def inc(self, name: str, by: int = 1) -> None:
        self._c[name] += by

    def get(self, name: str) -> int:
        return self._c[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self._c)


def admit_fact(
    raw: object,
    from_peer: str,
    *,
    validate: Callable[[bytes], bytes],
    seen: SeenIds,
    sync: SyncSource,
    deliver: trio.MemorySendChannel[Delivery],
    stats: Stats,
    quotas: Quotas | None = None,
) -> str:
    """The one gate for facts from the network (gossip and sync), for every implementation.

    Returns "rejected" (not a valid envelope: counted, never forwarded), "duplicate" (we
    delivered or hold it already), "limited" (over the peer's or the signer's quota:
    counted in `quotas`, not remembered, so sync offers it again later), "dropped"
    (valid, but the daemon is behind: not remembered either) or "delivered".

    Order: duplicates first (free), then the peer's quota (before the signature
    check, so a flood past it costs no verification), then validation, then the
    signer's quota: nothing over a quota reaches the daemon or its store.
    """
    if not isinstance(raw, bytes) or len(raw) > MAX_FACT:
        stats.inc("rejected")
        return "rejected"
    quick_id = hashlib.sha256(raw).digest()  # the fact id of a valid envelope
    if quick_id in seen or sync.get(quick_id) is not None:
        stats.inc("duplicate")
        return "duplicate"
    if quotas is not None and quotas.check_peer(from_peer, len(raw)) is not None:
        stats.inc("limited")
        return "limited"
    try:
        fact_id = validate(raw)
    except ProtocolError:
        stats.inc("rejected")
        return "rejected"
    if fact_id != quick_id and (fact_id in seen or sync.get(fact_id) is not None):
        stats.inc("duplicate")
        return "duplicate"
    if quotas is not None and quotas.check_signer(quotas.signer_of(raw), len(raw), from_peer) is not None:
        stats.inc("limited")
        return "limited"
    try:
        deliver.send_nowait(Delivery(raw, from_peer))
    except trio.WouldBlock:
        stats.inc("dropped")
        return "dropped"
    seen.add(fact_id)
    stats.inc("delivered")
    return "delivered"
