"""The blob receive path: chunk frames parsed from reads of any size, hostile framing refused."""

from __future__ import annotations

import hashlib
import os
import types

import pytest
import trio

from p2pci.core.errors import ProtocolError
from p2pci.net import wire
from p2pci.net.libp2p_net import _BLOB_CHUNK, _BLOB_READ, LibP2PNetwork


class Pieces:
    """A stream whose reads return the given pieces (never more than asked), then b""."""

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        self.data, self.cuts, self.pos, self.asked = data, list(cuts), 0, []

    async def read(self, n: int) -> bytes:
        self.asked.append(n)
        await trio.lowlevel.checkpoint()
        step = self.cuts.pop(0) if self.cuts else len(self.data)
        out = self.data[self.pos : self.pos + min(step, n)]
        self.pos += len(out)
        return out


def frames(payload: bytes, size: int) -> bytes:
    return b"".join(wire.frame(payload[i : i + size]) for i in range(0, len(payload), size))


async def receive(stream: Pieces, size: int) -> bytes:
    got = bytearray()
    net = types.SimpleNamespace(read_timeout=1.0)
    await LibP2PNetwork._receive_blob(net, stream, size, got.extend)  # type: ignore[arg-type]
    return bytes(got)


@pytest.mark.parametrize("cuts", [[], [1, 2, 3, 5, 7], [3, 1, 262_000, 9, 4], [4], [5] * 50])
async def test_any_read_boundaries_give_the_same_bytes(cuts: list[int]) -> None:
    blob = os.urandom(700_000)
    for size in (wire.CHUNK, _BLOB_CHUNK, 1000):  # an old sender's frames, ours, small ones
        stream = Pieces(frames(blob, size), cuts)
        got = await receive(stream, len(blob))
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        assert max(stream.asked) <= _BLOB_READ


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (wire.LEN.pack(wire.CHUNK + 1) + bytes(wire.CHUNK + 1), wire.CHUNK + 1, "exceeds the limit"),
        (wire.LEN.pack(0) + wire.frame(b"abc"), 3, "bad blob chunk"),
        (wire.frame(b"abcdef"), 3, "bad blob chunk"),  # a frame past the announced size
        (wire.frame(b"abc") + b"\x00", 3, "after the end"),
        (wire.frame(b"abc")[:5], 3, "closed mid-blob"),
        (wire.LEN.pack(3)[:2], 3, "closed mid-blob"),  # EOF inside a header
    ],
)
async def test_hostile_framing_is_a_protocol_error(data: bytes, size: int, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        await receive(Pieces(data, []), size)


def test_our_chunk_frames_fill_whole_noise_sized_yamux_frames() -> None:
    assert _BLOB_CHUNK <= wire.CHUNK  # receivers of the older code accept them
    assert (wire.LEN.size + _BLOB_CHUNK) % (65535 - 16 - 12) == 0
