"""Control frames: a 4-byte big-endian length, then a msgpack body (at most MAX_FRAME bytes)."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import trio

from p2pci.core.errors import LocalError, ProtocolError

MAX_FRAME = 64 * 1024 * 1024  # an export bundle or a log can be large
_LEN = struct.Struct(">I")


class BadFrame(ProtocolError):
    """A well-delimited frame whose body is not msgpack: the stream is still usable."""


def pack_frame(obj: Any) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise LocalError(f"control frame of {len(body)} bytes is too large (limit {MAX_FRAME})")
    return _LEN.pack(len(body)) + body


encode_frame = pack_frame


def unpack_body(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises many types on garbage
        raise LocalError(f"malformed control frame: {type(exc).__name__}") from None


class FrameBuffer:
    """Incremental frame splitter (sans I/O): feed bytes, take whole frame bodies."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        return len(self._buf)

    def next_body(self) -> bytes | None:
        """The next complete frame body, or None; LocalError if the length is absurd."""
        if len(self._buf) < _LEN.size:
            return None
        (n,) = _LEN.unpack_from(self._buf)
        if n > self._max:
            raise LocalError(f"control frame of {n} bytes exceeds the limit")
        if len(self._buf) < _LEN.size + n:
            return None
        body = bytes(self._buf[_LEN.size : _LEN.size + n])
        del self._buf[: _LEN.size + n]
        return body


class FrameReader:
    """Frames from a trio stream: `read()` gives the next decoded frame, None at a clean end.

    Broken framing (oversize, a stream ending mid-frame) is a ProtocolError; a frame whose body
    is not msgpack is a BadFrame (the stream stays usable).
    """

    def __init__(self, stream: trio.abc.ReceiveStream, *, max_size: int = MAX_FRAME) -> None:
        self._stream = stream
        self._buf = FrameBuffer(max_size)

    async def read(self) -> Any | None:
        while True:
            try:
                body = self._buf.next_body()
            except LocalError as exc:
                raise ProtocolError(str(exc)) from None
            if body is not None:
                try:
                    return unpack_body(body)
                except LocalError:
                    raise BadFrame("control frame is not msgpack") from None
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                if self._buf.pending:
                    raise ProtocolError("control stream ended inside a frame")
                return None
            self._buf.feed(chunk)
