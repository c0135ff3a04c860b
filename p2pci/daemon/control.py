"""The control socket: daemon <-> CLI/TUI (internals.md "Control socket").

Frames are a 4-byte big-endian length followed by a msgpack map. A request
is ``{op: str, args: map}``; the reply is ``{ok: true, result: any}`` or
``{ok: false, error: str}``. ``op = "subscribe"`` answers ``{ok: true}`` and
then turns the connection into a stream of event frames ``{event: str, ...}``.

This module holds both ends:

* server: `serve_control(path, handler, task_status=...)` (trio);
* clients: `control_call(home, op, **args)` (plain sync sockets, for the CLI),
  `acontrol_call(home, op, **args)` and `subscribe(home)` (trio, for the TUI
  and `publish --wait`), and the sync `iter_events(home)`.

A malformed request gets an error reply and never takes the server down.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import IO, Any, Protocol

import msgpack
import trio
from trio_typing import TaskStatus

from p2pci.core.errors import LocalError, P2pciError

MAX_FRAME = 64 * 1024 * 1024  # an export bundle or a log can be large
_LEN = struct.Struct(">I")


class DaemonNotRunning(LocalError):
    """No daemon answers on the control socket."""


class ControlError(LocalError):
    """The daemon answered a request with an error."""


# ---------------------------------------------------------------- framing


def pack_frame(obj: Any) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise LocalError(f"control frame of {len(body)} bytes is too large")
    return _LEN.pack(len(body)) + body


def unpack_body(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise LocalError(f"malformed control frame: {type(exc).__name__}") from None


class FrameBuffer:
    """Incremental frame splitter: feed bytes, take whole frames."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_body(self) -> bytes | None:
        """The next complete frame body, or None; LocalError if the length is absurd."""
        if len(self._buf) < 4:
            return None
        (n,) = _LEN.unpack_from(self._buf)
        if n > self._max:
            raise LocalError(f"control frame of {n} bytes exceeds the limit")
        if len(self._buf) < 4 + n:
            return None
        body = bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        return body


# ---------------------------------------------------------------- server


class ControlHandler(Protocol):
    async def control_op(self, op: str, args: dict[str, Any]) -> Any:
        """Run one request; raise P2pciError for an error reply."""

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """A fresh channel of events; the server closes it when the client leaves."""

    def initial_events(self) -> list[dict[str, Any]]:
        """Events sent first on a new subscription (a snapshot of the present)."""


class DaemonLock:
    """An exclusive lock on `$P2PCI_HOME/daemon.lock` for the daemon's lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def acquire(self) -> None:
        fh = open(self.path, "ab")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LocalError(f"another p2pci daemon is running on {self.path.parent}") from None
            raise
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _socket_is_live(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _clear_stale_socket(path: Path) -> None:
    if path.exists() or path.is_symlink():
        if _socket_is_live(path):
            raise LocalError(f"another p2pci daemon is listening on {path}")
        path.unlink()  # stale: left by a daemon that died


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


async def _bind_listener(path: Path) -> trio.SocketListener:
    await trio.to_thread.run_sync(_clear_stale_socket, path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
    try:
        await sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise LocalError(f"cannot create the control socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    return trio.SocketListener(sock)


async def serve_control(
    path: Path,
    handler: ControlHandler,
    *,
    task_status: TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the unix socket `path` until cancelled; removes it on the way out."""
    listener = await _bind_listener(path)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            await trio.serve_listeners(
                lambda stream: _serve_client(stream, handler), [listener], handler_nursery=nursery
            )
    finally:
        _remove(path)


async def _send(stream: trio.abc.Stream, obj: Any) -> None:
    await stream.send_all(pack_frame(obj))


async def _serve_client(stream: trio.SocketStream, handler: ControlHandler) -> None:
    buf = FrameBuffer()
    try:
        async with stream:
            while True:
                try:
                    body = buf.next_body()
                except LocalError as exc:
                    await _send(stream, {"ok": False, "error": str(exc)})
                    return  # framing is lost: hang up
                if body is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf.feed(data)
                    continue
                try:
                    req = unpack_body(body)
                except LocalError as exc:
                    await _send(stream, {"ok": False, "error": str(exc)})
                    continue
                op, args, err = _parse_request(req)
                if err is not None:
                    await _send(stream, {"ok": False, "error": err})
                    continue
                if op == "subscribe":
                    await _send(stream, {"ok": True, "result": None})
                    await _stream_events(stream, handler)
                    return
                await stream.send_all(await _run_op(handler, op, args))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return  # the client went away


def _parse_request(req: Any) -> tuple[str, dict[str, Any], str | None]:
    if not isinstance(req, dict):
        return "", {}, "a request is a map {op, args}"
    op = req.get("op")
    args = req.get("args", {})
    if not isinstance(op, str) or not op:
        return "", {}, "request has no op"
    if args is None:
        args = {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        return "", {}, "request args must be a map with string keys"
    extra = set(req) - {"op", "args"}
    if extra:
        return "", {}, f"unknown request field {sorted(map(str, extra))[0]}"
    return op, args, None


async def _run_op(handler: ControlHandler, op: str, args: dict[str, Any]) -> bytes:
    try:
        result = await handler.control_op(op, args)
    except P2pciError as exc:
        return pack_frame({"ok": False, "error": str(exc)})
    except (TypeError, ValueError, KeyError) as exc:
        return pack_frame({"ok": False, "error": f"bad arguments for {op}: {exc}"})
    except Exception as exc:  # a bug of ours: report it, keep serving
        return pack_frame({"ok": False, "error": f"internal error in {op}: {type(exc).__name__}: {exc}"})
    try:
        return pack_frame({"ok": True, "result": result})
    except (LocalError, TypeError, ValueError) as exc:
        return pack_frame({"ok": False, "error": f"cannot encode the reply to {op}: {exc}"})


async def _stream_events(stream: trio.SocketStream, handler: ControlHandler) -> None:
    events = handler.open_subscription()
    async with events:
        for ev in handler.initial_events():
            await _send(stream, ev)
        async with trio.open_nursery() as nursery:

            async def watch_hangup() -> None:
                # The client sends nothing more; EOF (or anything) ends the stream.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.receive_some(1)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_hangup)
            async for ev in events:
                await _send(stream, ev)
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- sync client (CLI)


def _connect(home: Path, timeout: float | None) -> socket.socket:
    path = Path(home) / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise DaemonNotRunning(f"no p2pci daemon is running for {home} (start one with `p2pci daemon`)") from None
    return s


def _recv_frame(s: socket.socket, buf: FrameBuffer) -> Any:
    while True:
        body = buf.next_body()
        if body is not None:
            return unpack_body(body)
        data = s.recv(65536)
        if not data:
            raise DaemonNotRunning("the p2pci daemon closed the control connection")
        buf.feed(data)


def _result(reply: Any) -> Any:
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError("malformed reply from the daemon")
    if not reply["ok"]:
        raise ControlError(str(reply.get("error", "unknown error")))
    return reply.get("result")


def control_call(home: Path | str, op: str, *, timeout: float | None = 600.0, **args: Any) -> Any:
    """One request to the daemon of `home`; returns the result or raises.

    DaemonNotRunning if no daemon answers, ControlError for an error reply.
    """
    s = _connect(Path(home), timeout)
    try:
        s.sendall(pack_frame({"op": op, "args": args}))
        return _result(_recv_frame(s, FrameBuffer()))
    except TimeoutError:
        raise ControlError(f"the daemon did not answer {op} in time") from None
    finally:
        s.close()


def iter_events(home: Path | str, *, timeout: float | None = None) -> Generator[dict[str, Any], None, None]:
    """Subscribe (sync) and yield event frames until the daemon goes away."""
    s = _connect(Path(home), timeout)
    try:
        s.sendall(pack_frame({"op": "subscribe", "args": {}}))
        buf = FrameBuffer()
        _result(_recv_frame(s, buf))
        while True:
            ev = _recv_frame(s, buf)
            if isinstance(ev, dict):
                yield ev
    finally:
        s.close()


# ---------------------------------------------------------------- trio clients (TUI, tests)


async def _aconnect(home: Path) -> trio.SocketStream:
    try:
        return await trio.open_unix_socket(str(Path(home) / "control.sock"))
    except OSError:
        raise DaemonNotRunning(f"no p2pci daemon is running for {home} (start one with `p2pci daemon`)") from None


async def _arecv(stream: trio.SocketStream, buf: FrameBuffer) -> Any:
    while True:
        body = buf.next_body()
        if body is not None:
            return unpack_body(body)
        data = await stream.receive_some(65536)
        if not data:
            raise DaemonNotRunning("the p2pci daemon closed the control connection")
        buf.feed(data)


async def acontrol_call(home: Path | str, op: str, **args: Any) -> Any:
    """`control_call` for trio code (the TUI). Timeouts are the caller's cancel scope."""
    stream = await _aconnect(Path(home))
    async with stream:
        await stream.send_all(pack_frame({"op": op, "args": args}))
        return _result(await _arecv(stream, FrameBuffer()))


@contextlib.asynccontextmanager
async def subscribe(home: Path | str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """``async with subscribe(home) as events: async for ev in events: ...``

    Ends (the iterator stops) when the daemon closes the stream.
    """
    stream = await _aconnect(Path(home))
    async with stream:
        buf = FrameBuffer()
        await stream.send_all(pack_frame({"op": "subscribe", "args": {}}))
        _result(await _arecv(stream, buf))

        async def gen() -> AsyncIterator[dict[str, Any]]:
            while True:
                try:
                    ev = await _arecv(stream, buf)
                except DaemonNotRunning:
                    return
                if isinstance(ev, dict):
                    yield ev

        yield gen()

