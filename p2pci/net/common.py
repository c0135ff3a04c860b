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


class MissingProtocol(ProtocolError):
    """The peer does not speak an optional protocol (it answered `na` to multistream-select)."""

    def __init__(self, peer: str, proto: str) -> None:
        super().__init__(f"{peer} does not speak {proto}", "unsupported")


class Lacking:
    """Which optional protocols connected peers lack (docs/protocol.md section 8).

    A peer that refused a protocol is not asked for it again while it stays connected
    (`forget` on disconnect: a restarted peer may have it), and is logged once per peer
    and protocol, at debug, by the caller (`note` returns True the first time). Bounded.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._now: dict[str, set[str]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._limit = limit

    def lacks(self, peer: str, proto: str) -> bool:
        got = self._now.get(peer)
        return got is not None and proto in got

    def note(self, peer: str, proto: str) -> bool:
        """Remember that `peer` lacks `proto`; True if this was not logged before."""
        if len(self._now) >= self._limit and peer not in self._now:
            self._now.clear()
        self._now.setdefault(peer, set()).add(proto)
        if (peer, proto) in self._logged:
            return False
        if len(self._logged) >= self._limit:
            self._logged.clear()
        self._logged.add((peer, proto))
        return True

    def forget(self, peer: str) -> None:
        self._now.pop(peer, None)


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

    def reject(self, reason: str) -> None:
        """A fact from a peer refused (never delivered, never forwarded), by reason."""
        self._c["rejected"] += 1
        self._c[REJECTED + _code(reason)] += 1

    def drop(self, reason: str) -> None:
        """A valid fact from a peer that this node did not take in or did not forward, by reason."""
        self._c["dropped"] += 1
        self._c[DROPPED + _code(reason)] += 1


# Keys of the per-reason fact counters in `Stats` (the totals are "rejected" and "dropped").
REJECTED = "rejected."
DROPPED = "dropped."
_MAX_REASON = 32


def _code(reason: str) -> str:
    """A counter name part: a short code (bounded, so that no peer can mint new counters)."""
    return reason if reason.isidentifier() and len(reason) <= _MAX_REASON else "invalid"


def fact_counters(stats: dict[str, int]) -> dict[str, object]:
    """The `facts` section of `p2pci status --json`, from a network's `stats()`.

    `received`: fact envelopes that arrived from peers (gossip and sync), before any check;
    `new`: valid and new, handed to the daemon; `duplicate`: already held;
    `rejected`: invalid, by reason (`oversize`, `encoding`, `version`, `body`, `signature`,
    `digest`; `unasked`: pushed by a sync client without being asked for);
    `dropped`: valid facts not taken in (`backlog`: the daemon was behind, sync offers them
    again; `quota`: over the sending peer's or the signer's quota, docs/operator.md "Quotas")
    or not forwarded (`forward_queue`: the gossip queue was full; `rate_limited`:
    beyond 500 messages/s from one peer, docs/protocol.md §8.1), by reason.
    """
    rejected = {k[len(REJECTED) :]: v for k, v in sorted(stats.items()) if k.startswith(REJECTED)}
    dropped = {k[len(DROPPED) :]: v for k, v in sorted(stats.items()) if k.startswith(DROPPED)}
    return {
        "received": stats.get("received", 0),
        "new": stats.get("delivered", 0),
        "duplicate": stats.get("duplicate", 0),
        "rejected": rejected,
        "dropped": dropped,
    }


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
    counted in `quotas` and as dropped "quota", not remembered, so sync offers it again
    later), "dropped" (valid, but the daemon is behind: not remembered either) or "delivered".

    The duplicate check comes first: a fact id is sha256 of the envelope bytes
    (docs/protocol.md), and an id in `seen` or in the daemon's store was verified
    with exactly these bytes, so a copy (a fact that came by sync, then by gossip)
    is neither verified again nor delivered nor forwarded. Then the peer's quota
    (before the signature check, so a flood past it costs no verification), then
    validation, then the signer's quota: nothing over a quota reaches the daemon.
    """
    stats.inc("received")
    if not isinstance(raw, bytes):
        stats.reject("encoding")
        return "rejected"
    if len(raw) > MAX_FACT:
        stats.reject("oversize")
        return "rejected"
    known = hashlib.sha256(raw).digest()
    if known in seen or sync.get(known) is not None:
        stats.inc("duplicate")
        return "duplicate"
    if quotas is not None and quotas.check_peer(from_peer, len(raw)) is not None:
        stats.drop("quota")
        return "limited"
    try:
        fact_id = validate(raw)
    except ProtocolError as exc:
        stats.reject(exc.reason)
        return "rejected"
    if fact_id != known and (fact_id in seen or sync.get(fact_id) is not None):
        stats.inc("duplicate")  # a validator with other ids (tests): the old order
        return "duplicate"
    if quotas is not None and quotas.check_signer(quotas.signer_of(raw), len(raw), from_peer) is not None:
        stats.drop("quota")
        return "limited"
    try:
        deliver.send_nowait(Delivery(raw, from_peer))
    except trio.WouldBlock:
        stats.drop("backlog")
        return "dropped"
    seen.add(fact_id)
    stats.inc("delivered")
    return "delivered"
