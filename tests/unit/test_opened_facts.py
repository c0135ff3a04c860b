"""The validator's opened facts are handed to the ingest by fact id (no second open)."""

from __future__ import annotations

import pytest

from p2pci.core.errors import ProtocolError
from p2pci.core.messages import Claim
from p2pci.core.signing import NodeKey, seal
from p2pci.daemon.node import OpenedFacts

KEY = NodeKey.from_seed(b"k" * 32)


def _claims(n: int) -> list[bytes]:
    return [seal(KEY, Claim(job=bytes([i % 256]) * 32, lease_until=i + 1)).raw for i in range(n)]


def test_the_ingest_takes_the_validators_fact_once() -> None:
    opened = OpenedFacts()
    raw = _claims(1)[0]
    fid = opened.validate(raw)
    fact = opened.take(fid)
    assert fact is not None and fact.id == fid and fact.raw == raw and fact.kind == "claim"
    assert opened.take(fid) is None  # taken: gone
    assert len(opened) == 0


def test_an_invalid_envelope_is_refused_and_not_kept() -> None:
    opened = OpenedFacts()
    raw = bytearray(_claims(1)[0])
    raw[-3] ^= 1
    with pytest.raises(ProtocolError):
        opened.validate(bytes(raw))
    assert len(opened) == 0


def test_bounded_by_entries_and_bytes_oldest_first() -> None:
    raws = _claims(10)
    opened = OpenedFacts(max_facts=4)
    ids = [opened.validate(r) for r in raws]
    assert len(opened) == 4
    assert opened.take(ids[5]) is None and opened.take(ids[9]) is not None
    size = len(raws[0])
    by_bytes = OpenedFacts(max_bytes=3 * size)
    ids = [by_bytes.validate(r) for r in raws]
    assert len(by_bytes) == 3
    assert [by_bytes.take(i) is not None for i in ids] == [False] * 7 + [True] * 3
    assert by_bytes._bytes == 0  # the byte count follows takes and evictions


def test_the_same_envelope_twice_is_kept_once() -> None:
    opened = OpenedFacts()
    raw = _claims(1)[0]
    opened.validate(raw)
    opened.validate(raw)
    assert len(opened) == 1 and opened._bytes == len(raw)
