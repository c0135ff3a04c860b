"""Quotas on facts from the network, checked before a fact is delivered or stored.

Every fact that reaches `admit_fact` (gossip and sync alike, every network
implementation) is charged to two token buckets before the daemon sees it:

* the **peer** that handed it to us (before the Ed25519 check, so a flood
  costs us no signature verifications past the peer's budget), and
* the **signer** of the envelope (after the check, so nobody can spend
  someone else's budget).

Each bucket has a rate (facts per second, with a burst) and a byte budget
(KiB per second, with a burst). A fact over either budget is dropped and
counted under its reason; it is not remembered as seen, so sync offers it
again once the bucket has refilled: a real fact is delayed, never lost.
Duplicates cost nothing (they are answered from the seen set first).

The buckets themselves are bounded: at most `max_tracked` peers and signers
each, the least recently charged forgotten first (a forgotten key starts
again with a full bucket, which is what a fresh key would get anyway).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["QuotaLimits", "Quotas", "envelope_signer", "REASONS", "SyncLimits", "RequestLimiter"]

REASONS = ("peer_rate", "peer_bytes", "signer_rate", "signer_bytes")


@dataclass(frozen=True)
class QuotaLimits:
    """Defaults; `[quotas]` in config.toml overrides them (docs/operator.md)."""

    peer_facts_per_s: float = 200.0
    peer_burst: int = 2000
    peer_kib_per_s: int = 1024
    peer_burst_kib: int = 8192
    signer_facts_per_s: float = 20.0
    signer_burst: int = 1000
    signer_kib_per_s: int = 128
    signer_burst_kib: int = 4096
    max_tracked: int = 10_000


class _Bucket:
    __slots__ = ("facts", "bytes", "at")

    def __init__(self, facts: float, nbytes: float, at: float) -> None:
        self.facts = facts
        self.bytes = nbytes
        self.at = at


class _Buckets:
    def __init__(self, rate: float, burst: int, byte_rate: float, byte_burst: int, limit: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.byte_rate, self.byte_burst = byte_rate, float(byte_burst)
        self.limit = limit
        self._b: OrderedDict[Any, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._b)

    def refilled(self, key: Any, now: float) -> _Bucket:
        """`key`'s bucket, refilled to `now` (a new key's full; past `limit` keys the least
        recently charged is forgotten)."""
        b = self._b.get(key)
        if b is None:
            b = self._b[key] = _Bucket(self.burst, self.byte_burst, now)
            while len(self._b) > self.limit:
                self._b.popitem(last=False)
        else:
            self._b.move_to_end(key)
            dt = max(0.0, now - b.at)
            b.facts = min(self.burst, b.facts + dt * self.rate)
            b.bytes = min(self.byte_burst, b.bytes + dt * self.byte_rate)
            b.at = now
        return b

    def take(self, key: Any, nbytes: int, now: float) -> str | None:
        """None if the fact fits (and is charged), else "rate" or "bytes" (nothing charged)."""
        b = self.refilled(key, now)
        if b.facts < 1.0:
            return "rate"
        if b.bytes < nbytes:
            return "bytes"
        b.facts -= 1.0
        b.bytes -= nbytes
        return None


def envelope_signer(raw: bytes) -> bytes:
    """The `signer` of an envelope that the validator already accepted."""
    env = msgpack.unpackb(raw, raw=False)
    signer = env["signer"] if isinstance(env, dict) else None
    return signer if isinstance(signer, bytes) else b""


class Quotas:
    """Per-peer and per-signer budgets with drop counters (`p2pci status`, section quotas)."""

    def __init__(
        self,
        limits: QuotaLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        signer_of: Callable[[bytes], bytes] = envelope_signer,
    ) -> None:
        self.limits = lim = limits or QuotaLimits()
        self._clock = clock
        self.signer_of = signer_of
        self._peers = _Buckets(
            lim.peer_facts_per_s, lim.peer_burst, lim.peer_kib_per_s * 1024, lim.peer_burst_kib * 1024, lim.max_tracked
        )
        self._signers = _Buckets(
            lim.signer_facts_per_s,
            lim.signer_burst,
            lim.signer_kib_per_s * 1024,
            lim.signer_burst_kib * 1024,
            lim.max_tracked,
        )
        self.dropped: Counter[str] = Counter()
        self._by_peer: OrderedDict[str, int] = OrderedDict()  # the top droppers, bounded

    def check_peer(self, peer: str, nbytes: int) -> str | None:
        """None, or the reason ("peer_rate" / "peer_bytes") the fact is dropped (and counted)."""
        why = self._peers.take(peer, nbytes, self._clock())
        return None if why is None else self._drop(f"peer_{why}", peer)

    def check_signer(self, signer: bytes, nbytes: int, peer: str) -> str | None:
        why = self._signers.take(signer, nbytes, self._clock())
        return None if why is None else self._drop(f"signer_{why}", peer)

    def _drop(self, reason: str, peer: str) -> str:
        self.dropped[reason] += 1
        self._by_peer[peer] = self._by_peer.pop(peer, 0) + 1
        while len(self._by_peer) > 16:
            self._by_peer.popitem(last=False)
        return reason

    def snapshot(self) -> dict[str, Any]:
        """What was dropped and why, the limits, and how many keys are tracked."""
        lim = self.limits
        return {
            "dropped": {r: self.dropped.get(r, 0) for r in REASONS},
            "dropped_from": dict(self._by_peer),
            "tracked_peers": len(self._peers),
            "tracked_signers": len(self._signers),
            "limits": {
                "peer_facts_per_s": lim.peer_facts_per_s,
                "peer_burst": lim.peer_burst,
                "peer_kib_per_s": lim.peer_kib_per_s,
                "peer_burst_kib": lim.peer_burst_kib,
                "signer_facts_per_s": lim.signer_facts_per_s,
                "signer_burst": lim.signer_burst,
                "signer_kib_per_s": lim.signer_kib_per_s,
                "signer_burst_kib": lim.signer_burst_kib,
            },
        }


# ------------------------------------------------------------------------ serving sync
# Each `/p2pci/sync/1` round this node serves is a pass over its live ids and up to
# `sync_budget` (4 MiB) of encoding, paid by the asker only in bandwidth, and fresh peer
# identities are free: rounds are rate-limited per peer and in total (docs/internals.md).


@dataclass(frozen=True)
class SyncLimits:
    """Sync rounds this node serves: per peer and in total (rounds per second, with a burst)."""

    peer_per_s: float = 1.0
    peer_burst: int = 32
    total_per_s: float = 10.0
    total_burst: int = 256
    max_tracked: int = 10_000

    @classmethod
    def for_interval(cls, sync_interval: float) -> SyncLimits:
        """The defaults, raised for a network that syncs more often than every 2 s: a peer may
        ask twice per `sync_interval` (an honest one asks once per 0.8 x interval at most, one
        round unless its board differs by more than 4 MiB), ten times that in total."""
        per_s = max(cls.peer_per_s, 2.0 / max(sync_interval, 1e-3))
        return cls(peer_per_s=per_s, total_per_s=max(cls.total_per_s, 10.0 * per_s))


class RequestLimiter:
    """Token buckets per peer (bounded: the least recently charged forgotten first, starting
    again full, as a fresh identity would) and one in total, so that many identities cannot
    multiply the per-peer rate."""

    def __init__(self, limits: SyncLimits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = lim = limits or SyncLimits()
        self._clock = clock
        # the fact quotas' buckets, counting rounds (no byte budget)
        self._peers = _Buckets(lim.peer_per_s, lim.peer_burst, 0.0, 0, lim.max_tracked)
        self._total = _Buckets(lim.total_per_s, lim.total_burst, 0.0, 0, 1)

    def __len__(self) -> int:
        return len(self._peers)

    def take(self, peer: str) -> str | None:
        """None if a round for `peer` may be served now (a token of its bucket and of the total
        spent), else "peer" or "total": the bucket that is empty (nothing spent)."""
        now = self._clock()
        b = self._peers.refilled(peer, now)
        total = self._total.refilled(None, now)
        if b.facts < 1.0:
            return "peer"
        if total.facts < 1.0:
            return "total"
        b.facts -= 1.0
        total.facts -= 1.0
        return None
