"""A fake daemon control socket for the TUI tests (trio, a real unix socket).

It answers `status` and `logs` from in-memory state and turns `subscribe`
connections into event streams fed by `emit()`. The test controls it from
the TUI's thread with `trio.from_thread.run(...)`.
"""

from __future__ import annotations

import os
import socket as _stdsocket
import struct
from pathlib import Path
from typing import Any

import trio

from p2pci.control.frames import FrameReader, encode_frame

PEER_ME = "12D3KooWMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMe01"
PEER_A = "12D3KooWAlphaAlphaAlphaAlphaAlphaAlphaAlphaAlpha02"
PEER_B = "12D3KooWBravoBravoBravoBravoBravoBravoBravoBravo03"
PEER_C = "12D3KooWCharlieCharlieCharlieCharlieCharlieChar04"


PROVENANCE: dict[str, Any] = {
    "source_sha256": "5c" * 32,
    "source_size": 10240,
    "commit": "c0" * 20,
    "tree": "7e" * 20,
    "image": "sha256:" + "1d" * 32,
    "image_recipe": "busybox",
    "command": ["sh", "build.sh"],
    "env": {"LC_ALL": "C"},
    "source_date_epoch": 1700000000,
    "inputs_sha256": None,
    "inputs_size": None,
}


def job_obj(
    job: str,
    verdict: str = "PENDING",
    *,
    project: str = "hello-c",
    groups: list[dict[str, Any]] | None = None,
    created: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A job object with exactly the keys the daemon sends (p2pci.control.schema.JobObj)."""
    obj: dict[str, Any] = {
        "job": job,
        "project": project,
        "verdict": verdict,
        "digest": None,
        "replicas": 3,
        "quorum": 2,
        "groups": groups or [],
        "dissenters": [],
        "equivocators": [],
        "ignored": [],
        "reason": None,
        "rounds": [],
        "ignored_selects": [],
        "missing": [],
        "declines": [],
        "cause": None,
        "workers": [],
        "created": created,
        "deadlines": None,
        "provenance": PROVENANCE,
    }
    obj.update(extra)
    return obj


def worker_row(worker: str, phase: str, *, selected: bool = True, reason: str | None = None,
               detail: str | None = None, log: str | None = None) -> dict[str, Any]:
    """One row of a job's `workers`, with exactly the keys the daemon sends (schema.WorkerRowObj)."""
    return {"worker": worker, "phase": phase, "selected": selected, "reason": reason, "detail": detail, "log": log}


def round_obj(n: int, workers: list[str], *, created: int | None = None) -> dict[str, Any]:
    """One valid select round (schema.RoundObj)."""
    return {"round": n, "select": f"{n + 0x50:02x}" * 32, "created": created if created is not None else 1_700_000_000_000 + n,
            "workers": workers}


def deadlines_obj(created: int, *, window_ms: int = 2_000, reveal_ms: int = 90_000, offer_ms: int = 3_600_000) -> dict[str, int]:
    """A job's `deadlines` (schema.DeadlinesObj), relative to its offer's `created`."""
    return {"claim_window_end": created + window_ms, "reveal": created + reveal_ms, "offer": created + offer_ms}


def status_obj(jobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "node": {
            "peer_id": PEER_ME,
            "addrs": ["/ip4/127.0.0.1/tcp/4001"],
            "slots": 2,
            "busy": 1,
            "uptime_s": 3725,
            "building": [],
            "accepting": "open",
            "paused_why": "",
        },
        "peers": [
            {"peer_id": PEER_A, "addrs": ["/ip4/127.0.0.1/tcp/4002"], "connected_since": 1_699_999_990_000, "via": "relayed"},
        ],
        "jobs": jobs or [],
        "facts": {"received": 12, "new": 8, "duplicate": 2, "rejected": {"signature": 1, "body": 1}, "dropped": {}},
    }


class FakeControl:
    def __init__(self, path: Path, status: dict[str, Any] | None = None) -> None:
        self.path = path
        self.status = status if status is not None else status_obj()
        self.logs: dict[str, str] = {}
        self.accepting = True
        self.mute = False
        self.requests: list[str] = []
        self._subscribers: list[trio.SocketStream] = []
        self._changed = trio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
        await sock.bind(os.fspath(self.path))
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started()
        async with listener:
            await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if not self.accepting:
                return
            frame = await FrameReader(stream).read()
            if not isinstance(frame, dict):
                return
            op = frame.get("op")
            self.requests.append(str(op))
            if self.mute:  # a hung daemon: accepts, reads, never answers
                await trio.sleep_forever()
            args = frame.get("args") or {}
            if op == "status":
                await stream.send_all(encode_frame({"ok": True, "result": self.status}))
            elif op == "logs":
                text = self.logs.get(args.get("job", ""))
                reply = {"ok": True, "result": text} if text is not None else {"ok": False, "error": "no log"}
                await stream.send_all(encode_frame(reply))
            elif op == "subscribe":
                await stream.send_all(encode_frame({"ok": True, "result": None}))  # as the daemon does
                self._subscribers.append(stream)
                self._notify()
                try:
                    await trio.sleep_forever()
                finally:
                    if stream in self._subscribers:
                        self._subscribers.remove(stream)
            else:
                await stream.send_all(encode_frame({"ok": False, "error": f"unknown op {op!r}"}))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_subscribers(self, n: int = 1) -> None:
        while len(self._subscribers) < n:
            await self._changed.wait()

    async def emit(self, event: dict[str, Any]) -> None:
        await self.emit_raw(encode_frame(event))

    async def emit_raw(self, data: bytes) -> None:
        for s in list(self._subscribers):
            await s.send_all(data)

    async def emit_garbage(self) -> None:
        """Three hostile frames: not msgpack, not a map, a job of the wrong shape."""
        junk = b"\xc1\xc1\xc1 not msgpack"
        await self.emit_raw(struct.pack(">I", len(junk)) + junk)
        await self.emit_raw(encode_frame([1, 2, 3]))
        await self.emit({"event": "job", "job": {"job": "zz-not-hex", "verdict": "MAYBE"}})
        await self.emit_raw(encode_frame({"event": "peers", "peers": "everyone"}))

    async def kick(self) -> None:
        """Drop every subscriber connection (the daemon went away)."""
        for s in list(self._subscribers):
            await s.aclose()
        self._subscribers.clear()
