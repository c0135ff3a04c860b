"""patches._RpcReader (rpc_reader): the pubsub read loop's RPC framing, against a fake stream.

The reader must frame exactly like upstream's `read_varint_prefixed_bytes_limited` (compared
on random byte streams cut at random places), with its limits (oversize, overlong or 64-bit
overflowing length prefixes, a stream that ends in an RPC), in at most one stream read per
RPC and with a bounded buffer.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.utils.varint import encode_uvarint, read_varint_prefixed_bytes_limited

from p2pci.net.patches import RPC_READ, _RpcReader

LIMIT = 1000


class FakeStream:
    """Hands out the given chunks, each cut to the read's n; then StreamEOF (or b"" if `empty_eof`).

    Records every read and how much the reader had buffered at that moment."""

    def __init__(self, chunks: list[bytes], empty_eof: bool = False) -> None:
        self.chunks = [c for c in chunks if c]
        self.empty_eof = empty_eof
        self.reads: list[int] = []
        self.buffered_at_read: list[int] = []
        self.reader: _RpcReader | None = None

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.reads.append(n if n is not None else -1)
        if self.reader is not None:
            self.buffered_at_read.append(self.reader.buffered())
        if not self.chunks:
            if self.empty_eof:
                return b""
            raise StreamEOF()
        chunk = self.chunks.pop(0)
        if n is not None and n > 0 and len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        return chunk


def _reader(chunks: list[bytes], limit: int = LIMIT, chunk: int = RPC_READ, empty_eof: bool = False) -> tuple[_RpcReader, FakeStream]:
    stream = FakeStream(chunks, empty_eof)
    reader = _RpcReader(stream, limit, chunk)
    stream.reader = reader
    return reader, stream


def _frame(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


async def _drain(reader: _RpcReader) -> tuple[list[bytes], type[BaseException]]:
    """Every RPC until the reader raises; (RPCs, the exception's type)."""
    out: list[bytes] = []
    with trio.fail_after(5):  # a reader that loops on an ended stream fails here, not by hanging
        while True:
            try:
                out.append(await reader.read())
            except Exception as exc:
                return out, type(exc)


async def _upstream(chunks: list[bytes], limit: int, empty_eof: bool = False) -> tuple[list[bytes], type[BaseException]]:
    stream = FakeStream(chunks, empty_eof)
    out: list[bytes] = []
    while True:
        try:
            out.append(await read_varint_prefixed_bytes_limited(stream, limit))
        except Exception as exc:
            return out, type(exc)


async def test_several_rpcs_in_one_read_cost_one_read() -> None:
    payloads = [b"a" * 5, b"", b"b" * 127, b"c" * 128, b"d" * 300]
    reader, stream = _reader([b"".join(_frame(p) for p in payloads)])
    got, end = await _drain(reader)
    assert got == payloads and end is StreamEOF
    assert len(stream.reads) == 2  # the one with every RPC, then the one that found the end
    assert stream.reads[0] == RPC_READ


async def test_a_length_prefix_split_across_reads() -> None:
    payload = bytes(range(200))  # prefix 0xc8 0x01: two bytes
    framed = _frame(payload) + _frame(b"next")
    reader, stream = _reader([framed[:1], framed[1:2], framed[2:50], framed[50:]])
    got, end = await _drain(reader)
    assert got == [payload, b"next"] and end is StreamEOF


async def test_an_rpc_larger_than_one_read() -> None:
    payload = bytes(range(256)) * 3  # 768 bytes, read 100 at a time
    reader, stream = _reader([_frame(payload)], chunk=100)
    assert await reader.read() == payload
    assert all(n == 100 for n in stream.reads)
    assert max(stream.buffered_at_read) < len(payload) + 2  # one incomplete RPC at most


async def test_an_rpc_over_the_limit_is_refused_before_its_body_is_read() -> None:
    reader, stream = _reader([encode_uvarint(LIMIT + 1), b"x" * (LIMIT + 1)], chunk=LIMIT)
    with pytest.raises(MessageTooLarge):
        await reader.read()
    assert len(stream.reads) == 1  # the prefix only: the body was never asked for
    reader, _ = _reader([_frame(b"y" * LIMIT)])  # exactly the limit: accepted
    assert await reader.read() == b"y" * LIMIT


async def test_a_huge_length_prefix_is_too_large_not_a_wait() -> None:
    reader, stream = _reader([encode_uvarint(2**63)])
    with pytest.raises(MessageTooLarge):
        await reader.read()
    assert len(stream.reads) == 1


@pytest.mark.parametrize("prefix", [b"\x80" * 10, b"\xff" * 10 + b"\x01", b"\xff" * 9 + b"\x7f"])
async def test_an_overlong_or_overflowing_prefix_is_a_parse_error(prefix: bytes) -> None:
    # 10 continuation bytes (no 64-bit varint is longer) / a 10-byte varint over 64 bits
    for chunks in ([prefix + b"more"], [prefix[i : i + 1] for i in range(len(prefix))]):
        reader, stream = _reader(list(chunks))
        with pytest.raises(ParseError):
            await reader.read()
        assert len(stream.reads) <= 10  # raised as soon as it is known, without more data
        assert reader.buffered() <= len(prefix) + 4  # what was read, nothing more asked for


async def test_a_stream_that_ends_in_an_rpc() -> None:
    framed = _frame(b"z" * 50)
    for cut in (1, 2, 30):
        reader, _ = _reader([_frame(b"whole"), framed[:cut]])
        got, end = await _drain(reader)
        assert got == [b"whole"] and end is StreamEOF  # the stream's own EOF, as upstream
        reader, _ = _reader([_frame(b"whole"), framed[:cut]], empty_eof=True)
        got, end = await _drain(reader)
        assert got == [b"whole"] and end is IncompleteReadError


async def test_no_buffer_is_kept_between_rpcs() -> None:
    reader, _ = _reader([_frame(b"a") + _frame(b"b")])
    await reader.read()
    assert reader.buffered() == 2
    await reader.read()
    assert reader.buffered() == 0 and reader._buf == b""


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        _RpcReader(FakeStream([]), 0)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


_payloads = st.lists(st.binary(max_size=300), max_size=8)


@settings(max_examples=200, deadline=None)
@given(payloads=_payloads, garbage=st.binary(max_size=12), cuts=st.lists(st.integers(0, 4000), max_size=12),
       limit=st.sampled_from([1, 127, 128, 200, 300, LIMIT]), chunk=st.sampled_from([1, 3, 64, RPC_READ]),
       empty_eof=st.booleans())
def test_frames_like_upstream(payloads: list[bytes], garbage: bytes, cuts: list[int], limit: int, chunk: int,
                              empty_eof: bool) -> None:
    """Any RPCs (some over the limit), then any tail (a bad or cut prefix, a cut body), cut anywhere:
    the same RPCs and the same error as upstream, one read per RPC at most, a bounded buffer."""
    data = b"".join(_frame(p) for p in payloads) + garbage
    chunks = _cut(data, cuts)

    async def main() -> tuple[Any, Any, FakeStream]:
        reader, stream = _reader(list(chunks), limit=limit, chunk=chunk, empty_eof=empty_eof)
        return await _drain(reader), await _upstream(list(chunks), limit, empty_eof), stream

    ours, theirs, stream = trio.run(main)
    assert ours == theirs
    if chunk == RPC_READ:
        assert len(stream.reads) <= len(chunks) + 1
        assert len(stream.reads) <= len(ours[0]) + 11  # a read per RPC, a few for a bad tail, the end
    assert all(b < limit + 10 for b in stream.buffered_at_read)  # one incomplete RPC, at most


async def test_an_rpc_from_the_buffer_is_still_a_checkpoint() -> None:
    """Upstream's reads made every RPC a checkpoint (cancellation, other tasks' turn); a flood of
    small RPCs in one read must not hold the event loop for all of them."""
    reader, stream = _reader([_frame(b"a") + _frame(b"b")])
    assert await reader.read() == b"a"
    with trio.CancelScope() as scope:
        scope.cancel()
        await reader.read()
    assert scope.cancelled_caught
    assert await reader.read() == b"b"  # nothing lost to the cancellation
    assert len(stream.reads) == 1
