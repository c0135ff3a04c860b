"""The control server (trio): `serve_control(path, handler)`, and the one-daemon-per-home lock.

A malformed request gets an error reply and never takes the server down; a subscriber that
stops reading is dropped by the handler (the node's broadcast), never waited on.

A request `{op, args, progress: true}` may get `{event: "step", …}` frames before its reply (the
long steps of `publish`: docs/cli.md, "Progress"); they go through a bounded buffer, so a client
that does not read them loses some of them, never blocks the op (which still runs to its end).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import trio
from trio_typing import TaskStatus

from p2pci.control.frames import FrameBuffer, pack_frame, unpack_body
from p2pci.core.errors import LocalError, P2pciError, first_error

PROGRESS_BUFFER = 256  # step events buffered for one request; more are dropped while the client lags

Emit = Callable[[dict[str, Any]], None]


class ControlHandler(Protocol):
    async def control_op(self, op: str, args: dict[str, Any], emit: Emit | None = None) -> Any:
        """Run one request; raise P2pciError for an error reply. `emit` (a client that asked for
        progress) takes the op's `step` events; an op without progress ignores it."""

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """A fresh channel of events; the server closes it when the client leaves."""

    def initial_events(self, job: str | None = None) -> list[dict[str, Any]]:
        """Events sent first on a new subscription (a snapshot of the present); with `job` (a hex
        prefix), that job's object last, as a `job` event. LocalError for an unknown job."""


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
                    job = args.get("job")
                    if job is not None and not isinstance(job, str):
                        await _send(stream, {"ok": False, "error": "subscribe: job must be a hex job id"})
                        continue
                    if await _stream_events(stream, handler, job):
                        return
                    continue  # an unknown job: answered with an error, the connection goes on
                if _wants_progress(req):
                    await stream.send_all(await _run_with_progress(stream, handler, op, args))
                    continue
                await stream.send_all(await _run_op(handler, op, args))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return  # the client went away


def _parse_request(req: Any) -> tuple[str, dict[str, Any], str | None]:
    """`{op, args}` and the optional `progress: bool` (read with `_wants_progress`)."""
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
    extra = set(req) - {"op", "args", "progress"}
    if extra:
        return "", {}, f"unknown request field {sorted(map(str, extra))[0]}"
    if not isinstance(req.get("progress", False), bool):
        return "", {}, "request field progress must be a boolean"
    return op, args, None


def _wants_progress(req: Any) -> bool:
    return isinstance(req, dict) and req.get("progress") is True


async def _run_with_progress(stream: trio.SocketStream, handler: ControlHandler, op: str, args: dict[str, Any]) -> bytes:
    """Run the op while its `step` events go to this client as frames; the reply comes last."""
    send, recv = trio.open_memory_channel[dict[str, Any]](PROGRESS_BUFFER)

    def emit(ev: dict[str, Any]) -> None:
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            send.send_nowait(ev)

    async def pump() -> None:
        broken = False
        async with recv:
            async for ev in recv:
                if broken:
                    continue  # the client left: drain, and let the op run to its end (as without progress)
                try:
                    await _send(stream, ev)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    broken = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump)
        async with send:
            reply = await _run_op(handler, op, args, emit)
    return reply


def _error_reply(op: str, exc: Exception) -> bytes:
    if isinstance(exc, P2pciError):
        return pack_frame({"ok": False, "error": str(exc)})
    if isinstance(exc, (TypeError, ValueError, KeyError)):
        return pack_frame({"ok": False, "error": f"bad arguments for {op}: {exc}"})
    # a bug of ours: report it, keep serving
    return pack_frame({"ok": False, "error": f"internal error in {op}: {type(exc).__name__}: {exc}"})


async def _run_op(handler: ControlHandler, op: str, args: dict[str, Any], emit: Emit | None = None) -> bytes:
    try:
        if emit is None:
            result = await handler.control_op(op, args)
        else:
            result = await handler.control_op(op, args, emit)
    except BaseExceptionGroup as group:  # an op's nursery: its first failure, as if raised alone
        leaf = first_error(group, Exception)
        if leaf is None:
            raise
        return _error_reply(op, leaf)
    except Exception as exc:
        return _error_reply(op, exc)
    try:
        return pack_frame({"ok": True, "result": result})
    except (LocalError, TypeError, ValueError) as exc:
        return pack_frame({"ok": False, "error": f"cannot encode the reply to {op}: {exc}"})


async def _stream_events(stream: trio.SocketStream, handler: ControlHandler, job: str | None) -> bool:
    """Answer `subscribe` and stream events until the client leaves (True), or send the error
    reply for an unknown `job` (False: the connection takes more requests).

    The channel is opened and the snapshot taken with no checkpoint in between, so every event
    after the snapshot is newer than it: a client never sees a job go back to an older state."""
    events = handler.open_subscription()
    try:
        initial = handler.initial_events(job)
    except LocalError as exc:
        await events.aclose()
        await _send(stream, {"ok": False, "error": str(exc)})
        return False
    async with events:
        await _send(stream, {"ok": True, "result": None})
        for ev in initial:
            await _send(stream, ev)
        async with trio.open_nursery() as nursery:

            async def watch_hangup() -> None:
                # The client sends nothing more; EOF (or anything) ends the stream.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.receive_some(1)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_hangup)
            async for ev in events:
                try:
                    await _send(stream, ev)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break  # the subscriber left mid-event: never let that out of this nursery
            nursery.cancel_scope.cancel()
    return True
