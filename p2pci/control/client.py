"""The one control client, with a sync face (the CLI) and a trio face (the TUI, tests).

`home` arguments are a node's home directory (the socket is `home/control.sock`); `path`
arguments are the socket itself. A call fails with `DaemonNotRunning` (nobody answers: the CLI
exits 2 with a hint) or `ControlError` (the daemon answered with an error); a reply that is not
of the documented shape is a `ProtocolError` for the trio face (the TUI counts and drops it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import Any

import trio

from p2pci.config import Paths
from p2pci.control.frames import BadFrame, FrameBuffer, FrameReader, pack_frame, unpack_body
from p2pci.core.errors import LocalError, ProtocolError


class DaemonNotRunning(LocalError):
    """No daemon answers on the control socket."""


NoDaemon = DaemonNotRunning


class ControlError(LocalError):
    """The daemon answered a request with an error."""


def socket_path(home: Path | str) -> Path:
    return Paths(Path(home)).control


def _not_running(where: Path | str, detail: str = "") -> DaemonNotRunning:
    """The one "no daemon" error (CLI and TUI alike)."""
    extra = f" ({detail})" if detail else ""
    return DaemonNotRunning(f"no daemon running: no p2pci daemon answers for {where}{extra}; start one with `p2pci daemon`")


def _result(reply: Any, prefix: str = "") -> Any:
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError("malformed reply from the daemon")
    if reply["ok"] is True:
        return reply.get("result")
    error = reply.get("error")
    raise ControlError(prefix + (error if isinstance(error, str) else "request failed"))


# ---------------------------------------------------------------- sync face (CLI)


def _connect(home: Path, timeout: float | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(socket_path(home)))
    except OSError:
        s.close()
        raise _not_running(home) from None
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


def control_call(
    home: Path | str,
    op: str,
    *,
    timeout: float | None = 600.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    **args: Any,
) -> Any:
    """One request to the daemon of `home`; returns the result or raises.

    With `on_event` the request asks for progress: the op's `{event: "step", …}` frames that
    come before the reply are passed to it (unvalidated maps: the caller prints them safely)."""
    s = _connect(Path(home), timeout)
    try:
        req: dict[str, Any] = {"op": op, "args": args}
        if on_event is not None:
            req["progress"] = True
        s.sendall(pack_frame(req))
        buf = FrameBuffer()
        while True:
            frame = _recv_frame(s, buf)
            if on_event is not None and isinstance(frame, dict) and "event" in frame and "ok" not in frame:
                on_event(frame)
                continue
            return _result(frame)
    except TimeoutError:
        raise ControlError(f"the daemon did not answer {op} in time") from None
    finally:
        s.close()


def iter_events(
    home: Path | str, *, timeout: float | None = None, job: str | None = None
) -> Generator[dict[str, Any], None, None]:
    """Subscribe (sync) and yield event frames until the daemon goes away. With `job`, the
    snapshot ends with that job's object (a `job` event): every later one is newer."""
    s = _connect(Path(home), timeout)
    try:
        s.sendall(pack_frame({"op": "subscribe", "args": {} if job is None else {"job": job}}))
        buf = FrameBuffer()
        _result(_recv_frame(s, buf))
        while True:
            ev = _recv_frame(s, buf)
            if isinstance(ev, dict):
                yield ev
    finally:
        s.close()


# ---------------------------------------------------------------- trio face (TUI, tests)


async def open_control(path: Path) -> trio.SocketStream:
    """Connect to the control socket `path`; DaemonNotRunning if nobody listens there."""
    try:
        return await trio.open_unix_socket(os.fspath(path))
    except FileNotFoundError:
        raise _not_running(path.parent, f"{path} does not exist") from None
    except ConnectionRefusedError:
        raise _not_running(path.parent, f"nobody listens on {path}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            raise _not_running(path.parent, str(exc.strerror)) from None
        raise _not_running(path.parent, f"cannot open {path}: {exc}") from None


async def request(path: Path, op: str, **args: Any) -> Any:
    """One request on a fresh connection to the socket `path`; the reply's `result`."""
    stream = await open_control(path)
    async with stream:
        await stream.send_all(pack_frame({"op": op, "args": args}))
        reply = await FrameReader(stream).read()
        if reply is None:
            raise ProtocolError(f"daemon closed the connection without replying to {op!r}")
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ProtocolError("control reply is not a {ok, ...} map")
        return _result(reply, "daemon: ")


async def acontrol_call(home: Path | str, op: str, **args: Any) -> Any:
    """`control_call` for trio code. Timeouts are the caller's cancel scope."""
    stream = await open_control(socket_path(home))
    async with stream:
        await stream.send_all(pack_frame({"op": op, "args": args}))
        reply = await FrameReader(stream).read()
        if reply is None:
            raise DaemonNotRunning("the p2pci daemon closed the control connection")
        return _result(reply)


async def event_frames(path: Path) -> AsyncIterator[Any]:
    """The frames of a `subscribe` stream on the socket `path`, until the daemon hangs up.

    Frames are yielded as decoded, unvalidated (the TUI model checks their shape and counts
    what is malformed); a frame whose body is not msgpack is yielded as None. The `{ok: true}`
    acknowledgement is skipped; `{ok: false}` raises ControlError.
    """
    stream = await open_control(path)
    async with stream:
        await stream.send_all(pack_frame({"op": "subscribe", "args": {}}))
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
                _result(frame, "daemon: ")
                continue
            yield frame


@contextlib.asynccontextmanager
async def subscribe(home: Path | str, job: str | None = None) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """``async with subscribe(home) as events: async for ev in events: ...`` (event maps only;
    the iterator stops when the daemon closes the stream). With `job`, as `iter_events`."""
    stream = await open_control(socket_path(home))
    async with stream:
        reader = FrameReader(stream)
        await stream.send_all(pack_frame({"op": "subscribe", "args": {} if job is None else {"job": job}}))
        ack = await reader.read()
        if ack is None:
            raise DaemonNotRunning("the p2pci daemon closed the control connection")
        _result(ack)

        async def gen() -> AsyncIterator[dict[str, Any]]:
            while True:
                try:
                    ev = await reader.read()
                except BadFrame:
                    continue
                except ProtocolError:
                    return
                if ev is None:
                    return
                if isinstance(ev, dict):
                    yield ev

        yield gen()
