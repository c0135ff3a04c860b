"""A small trio client for the daemon's control socket (docs/internals.md).

Frames are a 4-byte big-endian length followed by a msgpack map. A request
is `{op, args}`; the reply is `{ok: true, result}` or `{ok: false, error}`.
`subscribe` turns the connection into a stream of `{event: ...}` frames.

The daemon is trusted more than the network, but a TUI must still never die
on a bad frame: anything that is not a map of the documented shape is a
`ProtocolError`, which callers count and drop.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import trio

from p2pci.core.errors import LocalError, ProtocolError

MAX_FRAME = 64 * 1024 * 1024  # as the daemon: a log or a bundle can be large
_LEN = struct.Struct(">I")


class NoDaemon(LocalError):
    """Nobody answers on the control socket."""


class BadFrame(ProtocolError):
    """A well-delimited frame whose body is not msgpack: the stream is still usable."""


def default_home() -> Path:
    env = os.environ.get("P2PCI_HOME")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "p2pci"


def socket_path(home: Path) -> Path:
    return home / "control.sock"


def encode_frame(obj: Any) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise LocalError(f"control frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Reassembles length-prefixed frames from a byte stream."""

    def __init__(self, stream: trio.abc.ReceiveStream, *, max_size: int = MAX_FRAME) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._max = max_size

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def read(self) -> Any | None:
        """The next decoded frame, or None at a clean end of stream."""
        if not await self._fill(_LEN.size):
            if self._buf:
                raise ProtocolError("control stream ended inside a frame header")
            return None
        (size,) = _LEN.unpack(self._buf[: _LEN.size])
        if size > self._max:
            raise ProtocolError(f"control frame of {size} bytes exceeds {self._max}")
        if not await self._fill(_LEN.size + size):
            raise ProtocolError("control stream ended inside a frame")
        body = bytes(self._buf[_LEN.size : _LEN.size + size])
        del self._buf[: _LEN.size + size]
        try:
            return msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises many types on garbage
            raise BadFrame(f"control frame is not msgpack: {type(exc).__name__}") from None


async def open_control(path: Path) -> trio.SocketStream:
    """Connect to the control socket; NoDaemon if nobody listens there."""
    try:
        return await trio.open_unix_socket(os.fspath(path))
    except FileNotFoundError:
        raise NoDaemon(f"no daemon running: {path} does not exist (start one with `p2pci daemon`)") from None
    except ConnectionRefusedError:
        raise NoDaemon(f"no daemon running: nobody listens on {path} (start one with `p2pci daemon`)") from None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            raise NoDaemon(f"no daemon running at {path}: {exc.strerror}") from None
        raise NoDaemon(f"cannot open the control socket {path}: {exc}") from None


def _result(reply: Any) -> Any:
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ProtocolError("control reply is not a {ok, ...} map")
    if reply["ok"] is True:
        return reply.get("result")
    error = reply.get("error")
    raise LocalError(f"daemon: {error if isinstance(error, str) else 'request failed'}")


async def request(path: Path, op: str, **args: Any) -> Any:
    """One request on a fresh connection; returns the reply's `result`."""
    stream = await open_control(path)
    async with stream:
        await stream.send_all(encode_frame({"op": op, "args": args}))
        reply = await FrameReader(stream).read()
        if reply is None:
            raise ProtocolError(f"daemon closed the connection without replying to {op!r}")
        return _result(reply)


async def subscribe(path: Path) -> AsyncIterator[Any]:
    """Yield the frames of a `subscribe` stream until the daemon hangs up.

    Frames are yielded as decoded, unvalidated: the consumer (the status
    model) checks their shape and drops and counts anything malformed. A
    frame whose body is not msgpack is yielded as None. An initial
    `{ok: true}` acknowledgement is skipped; `{ok: false}` raises LocalError.
    A broken framing (oversize, stream ending mid-frame) raises ProtocolError.
    """
    stream = await open_control(path)
    async with stream:
        await stream.send_all(encode_frame({"op": "subscribe", "args": {}}))
        reader = FrameReader(stream)
        while True:
            try:
                frame = await reader.read()
            except BadFrame:
                yield None
                continue
            if frame is None:
                return
            if isinstance(frame, dict) and "ok" in frame and "event" not in frame:
                _result(frame)  # raises on {ok: false}
                continue
            yield frame
