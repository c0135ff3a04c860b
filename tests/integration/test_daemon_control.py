"""Control socket: framing, errors, subscription, stale socket, 0600."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pci.control.client import (
    ControlError,
    DaemonNotRunning,
    acontrol_call,
    control_call,
    subscribe,
)
from p2pci.control.server import serve_control
from p2pci.core.errors import LocalError


class Echo:
    def __init__(self) -> None:
        self.subs: list[trio.MemorySendChannel[dict[str, Any]]] = []

    async def control_op(self, op: str, args: dict[str, Any]) -> Any:
        if op == "echo":
            return args
        if op == "boom":
            raise RuntimeError("bug")
        if op == "bad":
            raise LocalError("no such job")
        if op == "grouped":  # an op whose nursery failed: its LocalError, beside a sibling's cancellation
            raise BaseExceptionGroup("nursery", [trio.Cancelled._create(), ExceptionGroup("inner", [LocalError("no Docker here")])])
        raise LocalError(f"unknown op {op}")

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, recv = trio.open_memory_channel[dict[str, Any]](16)
        self.subs.append(send)
        return recv

    def initial_events(self, job: str | None = None) -> list[dict[str, Any]]:
        return [{"event": "node", "node": {"peer_id": "x"}}]


def raw_exchange(path: Path, payload: bytes) -> list[Any]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        out.append(msgpack.unpackb(data[4 : 4 + n]))
        data = data[4 + n :]
    return out


def frame(obj: Any) -> bytes:
    b: bytes = msgpack.packb(obj)
    return struct.pack(">I", len(b)) + b


async def test_calls_errors_and_hostile_frames(tmp_path: Path) -> None:
    h = Echo()
    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve_control, tmp_path / "control.sock", h)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert await trio.to_thread.run_sync(lambda: control_call(tmp_path, "echo", a=1, b=b"x")) == {"a": 1, "b": b"x"}
        assert await acontrol_call(tmp_path, "echo", z="q") == {"z": "q"}
        with pytest.raises(ControlError, match="no such job"):
            await acontrol_call(tmp_path, "bad")
        with pytest.raises(ControlError, match="internal error"):
            await acontrol_call(tmp_path, "boom")
        with pytest.raises(ControlError) as grouped:
            await acontrol_call(tmp_path, "grouped")
        assert str(grouped.value) == "no Docker here"  # the leaf itself, not "internal error … ExceptionGroup"
        hostile = [
            b"\x00\x00\x00\x03\xc1\xc1\xc1",  # not msgpack
            frame([1, 2, 3]),  # not a map
            frame({"op": 5}),
            frame({"op": "echo", "args": [1]}),
            frame({"op": "echo", "args": {}, "extra": 1}),
            frame({"op": "echo", "args": {"ok": True}}),
            b"\xff\xff\xff\xff",  # absurd length: error, then hang up
        ]
        replies = await trio.to_thread.run_sync(raw_exchange, path, b"".join(hostile))
        assert [r["ok"] for r in replies] == [False, False, False, False, False, True, False]
        assert all(isinstance(r.get("error", ""), str) for r in replies)
        # still serving
        assert await acontrol_call(tmp_path, "echo") == {}
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "control.sock").exists()


async def test_subscription_stream(tmp_path: Path) -> None:
    h = Echo()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, tmp_path / "control.sock", h)
        async with subscribe(tmp_path) as events:
            first = await events.__anext__()
            assert first["event"] == "node"
            for s in h.subs:
                await s.send({"event": "job", "job": {"job": "ab"}})
            ev = await events.__anext__()
            assert ev == {"event": "job", "job": {"job": "ab"}}
        # the server notices the client left and closes the channel
        with trio.fail_after(5):
            while True:
                try:
                    h.subs[0].send_nowait({"event": "x"})
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                except trio.WouldBlock:
                    pass
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


class Versions(Echo):
    """One job, "ab", whose version a task bumps (and broadcasts) at every checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    async def bump_forever(self) -> None:
        while True:
            self.version += 1
            for s in self.subs:
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    s.send_nowait({"event": "job", "job": {"job": "ab", "v": self.version}})
            await trio.lowlevel.checkpoint()

    def initial_events(self, job: str | None = None) -> list[dict[str, Any]]:
        if job is not None and job != "ab":
            raise LocalError(f"no job {job}")
        out = super().initial_events()
        return out if job is None else [*out, {"event": "job", "job": {"job": "ab", "v": self.version}}]


async def test_a_job_subscription_starts_with_its_snapshot_and_only_newer_states_follow(tmp_path: Path) -> None:
    """`subscribe {job}`: the job's object is the last snapshot event, and every `job` event after
    it is newer, even while the job changes at every checkpoint (the channel is opened and the
    snapshot taken with no checkpoint in between: `publish --wait` never prints a state twice)."""
    h = Versions()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, tmp_path / "control.sock", h)
        nursery.start_soon(h.bump_forever)
        for _ in range(20):
            async with subscribe(tmp_path, job="ab") as events:
                assert (await events.__anext__())["event"] == "node"
                snap = await events.__anext__()
                assert snap["event"] == "job"
                last = snap["job"]["v"]
                for _i in range(5):
                    v = (await events.__anext__())["job"]["v"]
                    assert v > last, (v, last)
                    last = v
        # an unknown job or a job that is not a string: an error reply, and the connection goes on
        replies = await trio.to_thread.run_sync(
            raw_exchange,
            tmp_path / "control.sock",
            frame({"op": "subscribe", "args": {"job": "cd"}})
            + frame({"op": "subscribe", "args": {"job": 5}})
            + frame({"op": "echo", "args": {"a": 1}}),
        )
        assert replies == [
            {"ok": False, "error": "no job cd"},
            {"ok": False, "error": "subscribe: job must be a hex job id"},
            {"ok": True, "result": {"a": 1}},
        ]
        nursery.cancel_scope.cancel()


async def test_stale_socket_is_removed_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody listening
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, Echo())
        with pytest.raises(LocalError, match="another p2pci daemon"):
            await nursery.start(serve_control, path, Echo())
        assert await acontrol_call(tmp_path, "echo", k=1) == {"k": 1}
        nursery.cancel_scope.cancel()


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="no p2pci daemon"):
        control_call(tmp_path, "id")


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(junk=st.lists(st.binary(max_size=64) | st.builds(frame, st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5) | st.none(), max_size=4)), max_size=8))
def test_fuzzed_control_input_never_kills_the_server(tmp_path_factory: pytest.TempPathFactory, junk: list[bytes]) -> None:
    home = tmp_path_factory.mktemp("c")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            path = await nursery.start(serve_control, home / "control.sock", Echo())
            with trio.fail_after(10):
                await trio.to_thread.run_sync(raw_exchange_tolerant, path, b"".join(junk))
                assert await acontrol_call(home, "echo", ok=1) == {"ok": 1}
            nursery.cancel_scope.cancel()

    trio.run(main)


def raw_exchange_tolerant(path: Path, payload: bytes) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    finally:
        s.close()


class Subscribed(Echo):
    def __init__(self) -> None:
        super().__init__()
        self.opened = trio.Event()

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        recv = super().open_subscription()
        self.opened.set()
        return recv


async def test_a_subscriber_leaving_mid_stream_never_takes_the_server_down(tmp_path: Path) -> None:
    """A client that hangs up while events are being written to it (a broken pipe inside the
    stream's nursery) ends its own stream only; the server keeps answering."""
    h = Subscribed()
    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve_control, tmp_path / "control.sock", h)
        for _ in range(5):
            h.opened = trio.Event()
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            body = msgpack.packb({"op": "subscribe", "args": {}})
            s.sendall(struct.pack(">I", len(body)) + body)
            with trio.fail_after(5):
                await h.opened.wait()
            sub = h.subs.pop()
            # lots of data in flight, then an abortive close (RST) while the server writes
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            big = {"event": "log", "text": "x" * 60_000}
            for _ in range(10):
                sub.send_nowait(big)
            s.close()
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
                while True:  # until the server closes this subscription
                    await sub.send(big)
        assert await acontrol_call(tmp_path, "echo", a=1) == {"a": 1}
        nursery.cancel_scope.cancel()
