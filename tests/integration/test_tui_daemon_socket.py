"""The TUI's client against the daemon's real control server (p2pci.control.server).

Protocol compatibility: the same framing, the `{ok: true}` acknowledgement of
`subscribe`, the initial node/peers events, job events, error replies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.control import server as control
from p2pci.control.client import event_frames as subscribe
from p2pci.control.client import request
from p2pci.core.errors import LocalError
from p2pci.tui import model as m

ME = "12D3KooWMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMe01"
JOB = {"job": "ab" * 32, "project": "busybox-smoke", "verdict": "PENDING", "digest": None, "replicas": 3,
       "quorum": 2, "groups": [], "dissenters": [], "equivocators": [], "ignored": [],
       "reason": None, "rounds": [], "ignored_selects": [], "missing": [], "declines": [], "cause": None,
       "workers": [], "created": None, "deadlines": None,
       "provenance": None}


class Handler:
    def __init__(self) -> None:
        self.subs: list[trio.MemorySendChannel[dict[str, Any]]] = []
        self.subscribed = trio.Event()

    def node(self) -> dict[str, Any]:
        return {"peer_id": ME, "addrs": ["/ip4/127.0.0.1/tcp/1"], "slots": 2, "busy": 0, "uptime_s": 5,
                "building": [], "accepting": "open", "paused_why": ""}

    async def control_op(self, op: str, args: dict[str, Any]) -> Any:
        if op == "status":
            return {"node": self.node(), "peers": [], "jobs": [JOB]}
        raise LocalError(f"unknown op {op!r}")

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, recv = trio.open_memory_channel[dict[str, Any]](16)
        self.subs.append(send)
        self.subscribed.set()
        return recv

    def initial_events(self, job: str | None = None) -> list[dict[str, Any]]:
        return [{"event": "node", "node": self.node()}, {"event": "peers", "peers": []}]


async def test_tui_client_speaks_the_daemon_control_protocol(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    handler = Handler()
    model = m.StatusModel()
    async with trio.open_nursery() as nursery:
        await nursery.start(control.serve_control, sock, handler)
        assert model.apply_status(await request(sock, "status"), 0)
        assert list(model.jobs) == [JOB["job"]]
        with pytest.raises(LocalError, match="unknown op"):
            await request(sock, "nonsense")
        with trio.fail_after(10):
            kinds = []
            events = subscribe(sock)
            async for frame in events:
                kinds.append(model.apply_event(frame, 1))
                if kinds == ["node", "peers"]:
                    await handler.subscribed.wait()
                    await handler.subs[0].send({"event": "job", "job": {**JOB, "verdict": "REPRODUCED"}})
                if len(kinds) == 3:
                    break
            await events.aclose()  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
    assert kinds == ["node", "peers", "job"]
    assert model.jobs[JOB["job"]].verdict == "REPRODUCED" and model.bad_frames == 0
