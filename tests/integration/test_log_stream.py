"""Live build logs: the runner's `on_log`, the daemon's `log` events, their bounds.

A build held open by a gate must already have sent its log lines to a
subscriber of the real control socket; when it ends, only the rest follows
(no repeated tail). `LiveLog` (the bounded buffer between the runner thread
and trio) is checked directly for coalescing, line alignment and caps.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.daemon.control import acontrol_call, subscribe
from p2pci.daemon.livelog import LOG_BUFFER_MAX, LOG_EVENT_MAX, LOG_INTERVAL, LiveLog
from p2pci.daemon.testing import ScriptedRunner, open_cluster
from p2pci.runner.base import BuildResult, BuildSpec, accepts_on_log, run_build
from p2pci.runner.fake import FakeRunner

IMAGE = "sha256:" + "0" * 64


async def _next_log(events: Any, job: str) -> str:
    async for ev in events:
        if ev.get("event") == "log" and ev.get("job") == job:
            return str(ev["text"])
    raise AssertionError("the subscription ended")


async def test_log_lines_reach_a_subscriber_before_the_build_ends(tmp_path: Path) -> None:
    gate = threading.Event()
    runner = ScriptedRunner(gate=gate, log_lines=("step 1: configure", "step 2: compile"))
    async with open_cluster(tmp_path, 2, runners=[None, runner]) as c:
        builder = c.nodes[1]
        async with subscribe(builder.paths.home) as events:
            job = await c.publish(c.nodes[0], replicas=1, quorum=1, workers=[builder.peer_id])
            jid = bytes.fromhex(job)
            got = ""
            with trio.fail_after(20):
                while "step 2: compile" not in got:
                    got += await _next_log(events, job)
            # still building: held by the gate, nothing committed, no verdict
            assert not gate.is_set()
            assert jid in builder.machine.building
            view = builder.board.job(jid)
            assert view is not None and view.commits == {} and view.reveals == {}
            assert got == "step 1: configure\nstep 2: compile\n"
            # `p2pci logs` shows the output so far while the build runs
            text = await acontrol_call(builder.paths.home, "logs", job=job)
            assert "step 2: compile" in text
            gate.set()
            with trio.fail_after(20):
                while "log of a build of" not in got:
                    got += await _next_log(events, job)
            assert got.count("step 1: configure") == 1  # the end sends the rest, not the tail again
            (obj,) = await c.wait_verdict(job, [builder])
            assert obj["verdict"] == "REPRODUCED"


async def test_a_burst_of_output_is_coalesced_and_capped(tmp_path: Path) -> None:
    gate = threading.Event()
    lines = tuple(f"compiling unit {i:05d}" for i in range(3000))  # ~63 KB at once
    runner = ScriptedRunner(gate=gate, log_lines=lines)
    async with open_cluster(tmp_path, 2, runners=[None, runner]) as c:
        builder = c.nodes[1]
        async with subscribe(builder.paths.home) as events:
            job = await c.publish(c.nodes[0], replicas=1, quorum=1, workers=[builder.peer_id])
            texts: list[str] = []
            with trio.fail_after(20):
                texts.append(await _next_log(events, job))
                t0 = trio.current_time()
                while lines[-1] not in texts[-1]:
                    texts.append(await _next_log(events, job))
                elapsed = trio.current_time() - t0
            gate.set()
        assert len(texts) <= 2 + elapsed / LOG_INTERVAL  # at most one event per interval
        assert all(len(t.encode()) <= LOG_EVENT_MAX + 64 for t in texts)
        assert any("bytes of log skipped]" in t for t in texts)  # the burst was cut, and said so
        assert "".join(texts).endswith(lines[-1] + "\n")


class _OldRunner:
    """A runner written before `on_log` existed."""

    def __init__(self) -> None:
        self.inner = ScriptedRunner()

    def run(self, spec: BuildSpec, source_tar: Path, *, cancel: threading.Event) -> BuildResult:
        return self.inner.run(spec, source_tar, cancel=cancel)


async def test_a_runner_without_on_log_still_sends_the_tail_at_the_end(tmp_path: Path) -> None:
    old = _OldRunner()
    assert not accepts_on_log(old) and accepts_on_log(ScriptedRunner()) and accepts_on_log(FakeRunner())
    async with open_cluster(tmp_path, 2, runners=[None, old]) as c:  # type: ignore[list-item]
        async with subscribe(c.nodes[1].paths.home) as events:
            job = await c.publish(c.nodes[0], replicas=1, quorum=1, workers=[c.nodes[1].peer_id])
            with trio.fail_after(20):
                text = await _next_log(events, job)
            assert text.startswith("log of a build of")


async def test_run_build_forwards_on_log_from_the_runner_thread(tmp_path: Path) -> None:
    src = tmp_path / "src.tar"
    src.write_bytes(b"source")
    chunks: list[tuple[bytes, bool]] = []
    main = threading.current_thread()
    runner = FakeRunner(work_dir=tmp_path)
    spec = BuildSpec(IMAGE, ("make", "all"))
    result = await run_build(runner, spec, src, on_log=lambda b: chunks.append((b, threading.current_thread() is main)))
    try:
        assert chunks == [(b"fake build of make all\n", False)]
        assert result.log_path.read_bytes() == b"fake build of make all\n"
    finally:
        result.cleanup()


def test_livelog_sends_whole_lines_and_the_rest_at_the_end() -> None:
    live = LiveLog()
    live.feed(b"one\ntw")
    assert live.take() == "one\n"
    live.feed(b"o\nthr")
    assert live.take() == "two\n"
    assert live.take() == ""
    live.feed(b"ee")
    assert live.take(final=True) == "three\n"
    assert live.fed == len(b"one\ntwo\nthree")
    assert live.recent_text() == "one\ntwo\nthree"


def test_livelog_caps_a_burst_and_says_what_it_skipped() -> None:
    live = LiveLog()
    lines = [f"line {i:06d}\n".encode() for i in range(20_000)]  # 240 000 bytes in one burst
    for line in lines:
        live.feed(line)
    text = live.take()
    assert text.startswith("[p2pci: ") and "bytes of log skipped]\n" in text
    body = text.split("]\n", 1)[1]
    assert len(body.encode()) <= LOG_EVENT_MAX
    assert body.endswith("line 019999\n") and body.startswith("line ")  # the newest, whole lines
    skipped = int(text.split()[1])
    assert skipped + len(body.encode()) == sum(map(len, lines))
    assert LOG_BUFFER_MAX < sum(map(len, lines))  # the buffer itself stayed bounded


def test_livelog_cuts_a_line_without_end() -> None:
    live = LiveLog()
    live.feed(b"x" * (LOG_EVENT_MAX * 3))
    text = live.take()
    assert text.endswith("x\n") and len(text) <= LOG_EVENT_MAX + 64
    assert live.take(final=True) == ""


@pytest.mark.parametrize("data", [b"\xff\xfe broken utf-8\n", "héllo wörld\n".encode()])
def test_livelog_decodes_with_replacement(data: bytes) -> None:
    live = LiveLog()
    live.feed(data)
    assert live.take().endswith("\n")


async def test_livelog_wakes_trio_from_a_thread_without_blocking() -> None:
    live = LiveLog(trio.lowlevel.current_trio_token())
    fed = threading.Event()

    def producer() -> None:
        for i in range(100):
            live.feed(f"{i}\n".encode())
        fed.set()

    await trio.to_thread.run_sync(producer)
    assert fed.is_set()
    got = ""
    with trio.fail_after(5):
        while not got.endswith("99\n"):
            await live.wait()
            got += live.take()
    assert got == "".join(f"{i}\n" for i in range(100))
