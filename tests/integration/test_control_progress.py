"""The control server's progress frames (`{op, args, progress: true}`): the op's `step` events come
before its reply, in order; a client that does not read them never blocks the op (they are
dropped past a bound); a request without `progress` gets none; a bad `progress` is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.control import server as control
from p2pci.control.client import ControlError, control_call
from p2pci.control.frames import FrameReader, pack_frame


class Handler:
    def __init__(self, n: int) -> None:
        self.n = n
        self.done = trio.Event()
        self.got_emit: list[bool] = []

    async def control_op(self, op: str, args: dict[str, Any], emit: Any = None) -> Any:
        if op != "publish":
            from p2pci.core.errors import LocalError

            raise LocalError(f"unknown op {op!r}")
        self.got_emit.append(emit is not None)
        for i in range(self.n):
            if emit is not None:
                emit({"event": "step", "step": "image", "state": "info", "text": f"line {i}"})
        self.done.set()
        return {"op": op, "n": self.n}

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return trio.open_memory_channel[dict[str, Any]](1)[1]

    def initial_events(self, job: str | None = None) -> list[dict[str, Any]]:
        return []


async def test_steps_come_before_the_reply_and_a_lagging_client_never_blocks_the_op(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    many = control.PROGRESS_BUFFER * 4
    handler = Handler(many)
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve_control, sock, handler)
        with trio.fail_after(10):
            stream = await trio.open_unix_socket(str(sock))
            async with stream:
                await stream.send_all(pack_frame({"op": "publish", "args": {}, "progress": True}))
                await handler.done.wait()  # the op ran to its end while nobody read a frame
                reader = FrameReader(stream)
                frames = []
                while True:
                    f = await reader.read()
                    frames.append(f)
                    if "ok" in f:
                        break
        steps = frames[:-1]
        assert frames[-1] == {"ok": True, "result": {"op": "publish", "n": many}}
        assert 0 < len(steps) < many  # bounded: the lagging client lost some
        texts = [int(f["text"].split()[1]) for f in steps]
        assert texts == sorted(texts) and texts[0] == 0  # in order, from the first

        handler.n = 3
        seen: list[dict[str, Any]] = []
        with trio.fail_after(10):
            res = await trio.to_thread.run_sync(lambda: control_call(tmp_path, "publish", on_event=seen.append))
            assert res == {"op": "publish", "n": 3} and [e["text"] for e in seen] == ["line 0", "line 1", "line 2"]
            res = await trio.to_thread.run_sync(lambda: control_call(tmp_path, "publish"))
            assert res == {"op": "publish", "n": 3} and handler.got_emit == [True, True, False]
            stream = await trio.open_unix_socket(str(sock))
            async with stream:
                await stream.send_all(pack_frame({"op": "publish", "args": {}, "progress": 1}))
                assert await FrameReader(stream).read() == {
                    "ok": False, "error": "request field progress must be a boolean"}
        with pytest.raises(ControlError, match="unknown op"):
            await trio.to_thread.run_sync(lambda: control_call(tmp_path, "nonsense", on_event=seen.append))
        nursery.cancel_scope.cancel()
