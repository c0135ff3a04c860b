"""Child processes for the benchmarks: start, wait for a ready line, always clean up.

`ProcGroup` is an async context manager owning a nursery; every process it
started is terminated (SIGTERM, then SIGKILL after a grace period) when the
block exits, whatever happened inside it. Output (stdout and stderr merged)
goes line by line to a log file and is scanned for the ready line, so the
caller waits on an event, not on time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import trio

from bench.common import log

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass
class Proc:
    name: str
    process: trio.Process
    log_path: Path
    started_at: float
    ready_at: float | None = None
    ready_match: re.Match[str] | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])


class ProcError(Exception):
    pass


class ProcGroup:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self._cm: trio.Nursery | None = None
        self._nursery_cm = trio.open_nursery()

    async def __aenter__(self) -> ProcGroup:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._cm = await self._nursery_cm.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        with trio.CancelScope(shield=True):
            await self.stop_all()
        assert self._cm is not None
        self._cm.cancel_scope.cancel()
        return await self._nursery_cm.__aexit__(et, ev, tb)

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        """Start `argv` and wait for a line matching `ready` (ProcError if it exits first).

        No timeout of its own: run it under the caller's `trio.fail_after`.
        """
        assert self._cm is not None
        pattern = re.compile(ready)
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        if env:
            full_env.update(env)
        process = await trio.lowlevel.open_process(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=str(cwd or ROOT),
            start_new_session=True,
        )
        proc = Proc(name, process, self.log_dir / f"{name}.log", time.monotonic())
        self.procs.append(proc)
        self._cm.start_soon(self._pump, proc, pattern)
        try:
            async with trio.open_nursery() as n:

                async def on_exit() -> None:
                    await proc.exited.wait()
                    n.cancel_scope.cancel()

                n.start_soon(on_exit)
                await proc.ready.wait()
                n.cancel_scope.cancel()
        except trio.Cancelled:
            log(f"gave up waiting for {name} to be ready:\n{proc.tail()}")
            raise
        if not proc.ready.is_set():
            raise ProcError(f"{name} exited before it was ready: {' '.join(argv)}\n{proc.tail()}")
        return proc

    async def _pump(self, proc: Proc, pattern: re.Pattern[str]) -> None:
        stream = proc.process.stdout
        assert stream is not None
        buf = b""
        with _open_log(proc.log_path) as logf:
            try:
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    logf.write(chunk)
                    logf.flush()
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    for raw in done:
                        line = raw.decode("utf-8", "replace")
                        proc.lines.append(line)
                        if len(proc.lines) > 400:
                            del proc.lines[:200]
                        if not proc.ready.is_set():
                            m = pattern.search(line)
                            if m:
                                proc.ready_at = time.monotonic()
                                proc.ready_match = m
                                proc.ready.set()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            finally:
                proc.exited.set()

    async def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if proc.process.returncode is None:
            _signal_group(proc, signal.SIGTERM)
            with trio.move_on_after(grace):
                await proc.process.wait()
            if proc.process.returncode is None:
                _signal_group(proc, signal.SIGKILL)
                await proc.process.wait()

    async def stop_all(self) -> None:
        async with trio.open_nursery() as n:
            for p in self.procs:
                n.start_soon(self.stop, p)


def _open_log(path: Path) -> IO[bytes]:
    return open(path, "wb")


def _signal_group(proc: Proc, sig: int) -> None:
    # each child is the leader of its own session: signal only that group
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
