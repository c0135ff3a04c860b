"""Test helpers for code that uses a `Network` (no libp2p here).

`fake_validate` accepts any `b"fact:" + payload` up to 64 KiB and returns its
sha256 as the fact id; everything else is a ProtocolError. `DictSyncSource` is
a sync source backed by a dict, and `Collector` drains `net.facts()` into it,
so a test can wait for a fact id with `await collector.wait_for(fact_id)`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (from trio_typing) shadow trio's own types

from p2pci.core.errors import ProtocolError
from p2pci.net.base import MAX_FACT, Network


def fake_validate(raw: bytes) -> bytes:
    if not isinstance(raw, bytes) or len(raw) > MAX_FACT or not raw.startswith(b"fact:"):
        raise ProtocolError("not a fake fact")
    return hashlib.sha256(raw).digest()


def fact_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


class DictSyncSource:
    """Every fact it holds is live."""

    def __init__(self) -> None:
        self.facts: dict[bytes, bytes] = {}
        self._changed = trio.Event()

    def add(self, raw: bytes) -> bytes:
        fid = fact_id(raw)
        self.facts[fid] = raw
        self._changed.set()
        self._changed = trio.Event()
        return fid

    def live_ids(self) -> list[bytes]:
        return list(self.facts)

    def get(self, fact_id: bytes) -> bytes | None:
        return self.facts.get(fact_id)

    async def wait_for(self, *ids: bytes) -> None:
        while not all(i in self.facts for i in ids):
            await self._changed.wait()

    async def wait_count(self, n: int) -> None:
        while len(self.facts) < n:
            await self._changed.wait()


class Collector(DictSyncSource):
    """A tiny stand-in for the daemon: stores what `net.facts()` delivers."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: dict[bytes, str] = {}

    async def drain(self, net: Network, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for raw, peer in net.facts():
            self.senders[fact_id(raw)] = peer
            self.add(raw)
