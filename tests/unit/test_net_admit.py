"""admit_fact: the one gate for facts from the network (gossip and sync)."""

from __future__ import annotations

import hashlib
import os

import trio

from p2pci.core.errors import ProtocolError
from p2pci.core.messages import Cancel
from p2pci.core.signing import NodeKey, open_envelope, seal
from p2pci.net.base import Delivery, EmptySyncSource
from p2pci.net.common import SeenIds, Stats, admit_fact


class _Held(EmptySyncSource):
    def __init__(self, ids: set[bytes]) -> None:
        self.ids = ids

    def get(self, fact_id: bytes) -> bytes | None:
        return b"held" if fact_id in self.ids else None


def test_duplicates_are_not_verified_again_and_forgeries_never_pass() -> None:
    key = NodeKey.from_seed(os.urandom(32))
    raw = seal(key, Cancel(job=hashlib.sha256(b"j").digest())).raw
    held = seal(key, Cancel(job=hashlib.sha256(b"h").digest())).raw
    calls: list[bytes] = []

    def validate(r: bytes) -> bytes:
        calls.append(r)
        return open_envelope(r).id

    send, recv = trio.open_memory_channel[Delivery](8)
    seen, stats = SeenIds(), Stats()
    sync = _Held({hashlib.sha256(held).digest()})

    def admit(r: bytes) -> str:
        return admit_fact(r, "peer", validate=validate, seen=seen, sync=sync, deliver=send, stats=stats)

    assert admit(raw) == "delivered" and calls == [raw]
    assert admit(raw) == "duplicate" and calls == [raw]  # a second copy: no second Ed25519 check
    assert admit(held) == "duplicate" and calls == [raw]  # the daemon holds it (came by sync)
    forged = bytearray(seal(key, Cancel(job=hashlib.sha256(b"f").digest())).raw)
    forged[-40] ^= 1
    for _ in range(2):  # a forgery is verified (and rejected) every time: it never enters `seen`
        assert admit(bytes(forged)) == "rejected"
    assert calls.count(bytes(forged)) == 2
    assert recv.receive_nowait().raw == raw
    try:
        recv.receive_nowait()
        raise AssertionError("only one delivery")
    except trio.WouldBlock:
        pass
    snap = stats.snapshot()
    assert {k: snap[k] for k in ("delivered", "duplicate", "rejected")} == {"delivered": 1, "duplicate": 2, "rejected": 2}
    assert snap["received"] == 5


def test_validator_errors_are_rejections() -> None:
    def validate(r: bytes) -> bytes:
        raise ProtocolError("bad")

    send, _ = trio.open_memory_channel[Delivery](1)
    stats = Stats()
    out = admit_fact(b"x", "p", validate=validate, seen=SeenIds(), sync=EmptySyncSource(), deliver=send, stats=stats)
    assert out == "rejected" and stats.get("rejected") == 1
