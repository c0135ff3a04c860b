"""Ten node processes on loopback: propagation latency, kill -9, restart with the same key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, seed: bytes, bootstrap: list[str]) -> None:
        self.seed = seed
        self.bootstrap = bootstrap
        self.got: dict[str, float] = {}
        self.replies: trio.MemorySendChannel[dict[str, Any]]
        self.replies, self._replies = trio.open_memory_channel[dict[str, Any]](100)
        self.changed = trio.Event()
        self.ready = trio.Event()
        self.info: dict[str, Any] = {}
        self.proc: trio.Process | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cmd = [sys.executable, "-m", "tests.e2e.net_node", self.seed.hex()]
        for b in self.bootstrap:
            cmd += ["--bootstrap", b]
        self.proc = await trio.lowlevel.open_process(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        task_status.started()
        assert self.proc.stdout is not None
        buf = b""
        async for data in self.proc.stdout:
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if "ready" in msg:
                    self.info = msg
                    self.ready.set()
                elif "got" in msg:
                    self.got[msg["got"]] = msg["t"]
                    self.changed.set()
                    self.changed = trio.Event()
                else:
                    await self.replies.send(msg)

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.send_all(command.encode() + b"\n")
        with trio.fail_after(10):
            return await self._replies.receive()

    async def wait_got(self, fact: str) -> float:
        while fact not in self.got:
            await self.changed.wait()
        return self.got[fact]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def test_ten_processes_latency_kill_and_rejoin() -> None:
    async with trio.open_nursery() as nursery:
        procs: list[Proc] = []
        try:
            for i in range(10):
                boot = [procs[(i - 1) // 2].info["addrs"][0]] if procs else []  # a binary tree of dials
                p = Proc(bytes([i + 1]) * 32, boot)
                await nursery.start(p.run)
                with trio.fail_after(30):
                    await p.ready.wait()
                procs.append(p)
            with trio.fail_after(30):
                for p in procs:
                    while (await p.ask("peers"))["peers"] < 2:  # noqa: ASYNC110 - polls another process
                        await trio.sleep(0.2)
            # propagation latency: 20 facts from rotating publishers, measured at the 9 others
            latencies: list[float] = []
            for k in range(20):
                pub = procs[k % 10]
                sent = await pub.ask(f"publish lat-{k}")
                with trio.fail_after(5):
                    for p in procs:
                        if p is not pub:
                            latencies.append(await p.wait_got(sent["published"]) - sent["t"])
            p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
            print(f"propagation at 10 processes: p50 {p50:.0f} ms, p99 {p99:.0f} ms (n={len(latencies)})")
            assert p99 < 3000

            victim = procs[4]
            victim.kill9()
            assert victim.proc is not None
            with trio.fail_after(10):
                await victim.proc.wait()
            alive = [p for p in procs if p is not victim]
            missed = []
            for k in range(5):
                sent = await alive[k].ask(f"publish after-kill-{k}")
                missed.append(sent["published"])
                with trio.fail_after(5):
                    for p in alive:
                        if p is not alive[k]:
                            await p.wait_got(sent["published"])
            # restart with the same key: it rejoins and catches up by sync
            again = Proc(victim.seed, [procs[0].info["addrs"][0]])
            await nursery.start(again.run)
            with trio.fail_after(30):
                await again.ready.wait()
            assert again.info["peer_id"] == victim.info["peer_id"]
            with trio.fail_after(15):
                for f in missed:
                    await again.wait_got(f)
            sent = await procs[9].ask("publish after-restart")
            with trio.fail_after(5):
                await again.wait_got(sent["published"])
        finally:
            for p in procs + ([again] if "again" in locals() else []):
                if p.proc is not None and p.proc.returncode is None:
                    p.kill9()
            nursery.cancel_scope.cancel()
