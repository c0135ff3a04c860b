"""`DockerRunner.run(on_log=…)`: the build's output reaches the callback from the log pump."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pci.core.errors import BuildError
from p2pci.runner.base import BuildSpec, Limits
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.images import resolve_image
from tests.integration.test_runner import labeled_runner, packed_source

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def busybox() -> str:
    return resolve_image("busybox")


@pytest.fixture
def runner(tmp_path: Path, busybox: str) -> Iterator[DockerRunner]:
    with labeled_runner(tmp_path / "work", busybox) as r:
        yield r


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return packed_source(tmp_path, {"hello.txt": "hello\n"})


def spec(image: str, script: str, timeout_s: int = 60) -> BuildSpec:
    return BuildSpec(
        image_id=image,
        command=("sh", "-c", script),
        limits=Limits(timeout_s=timeout_s, memory_mb=256, cpus=1, pids=64, out_mb=4),
    )


def test_on_log_gets_the_output_from_the_pump_thread(runner: DockerRunner, busybox: str, source: Path) -> None:
    chunks: list[tuple[bytes, str]] = []
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; echo done > /out/x"
    result = runner.run(
        spec(busybox, script),
        source,
        cancel=threading.Event(),
        on_log=lambda b: chunks.append((b, threading.current_thread().name)),
    )
    try:
        assert result.status == "ok" and result.exit_code == 0
        text = b"".join(c for c, _ in chunks)
        # stdout in order; stderr is a separate stream in docker, so "oops" may land anywhere
        assert [ln for ln in text.splitlines() if ln != b"oops"] == [b"line %d" % i for i in range(1, 6)]
        assert text.count(b"oops\n") == 1 and len(text) == len(b"line 1\n") * 5 + len(b"oops\n")
        assert text == result.log_path.read_bytes()  # the same bytes as the log file
        assert {name for _, name in chunks} == {"p2pci-log"}  # called from the pump, not after the build
    finally:
        result.cleanup()


def test_on_log_runs_while_the_build_runs(runner: DockerRunner, busybox: str, source: Path) -> None:
    """The callback sees the first line while the build sleeps: it cancels the build then."""
    cancel = threading.Event()
    seen: list[bytes] = []

    def on_log(chunk: bytes) -> None:
        seen.append(chunk)
        if b"started" in b"".join(seen):
            cancel.set()

    t0 = time.monotonic()
    with pytest.raises(BuildError, match="cancelled"):
        runner.run(spec(busybox, "echo started; sleep 50; echo never"), source, cancel=cancel, on_log=on_log)
    assert time.monotonic() - t0 < 40  # the sleep did not run to its end
    assert b"".join(seen) == b"started\n"


def test_a_failing_callback_does_not_break_the_build_or_the_log(
    runner: DockerRunner, busybox: str, source: Path
) -> None:
    def on_log(chunk: bytes) -> None:
        raise RuntimeError("listener bug")

    result = runner.run(spec(busybox, "echo a; echo b"), source, cancel=threading.Event(), on_log=on_log)
    try:
        assert result.status == "ok" and result.log_path.read_bytes() == b"a\nb\n"
    finally:
        result.cleanup()


def test_the_time_limit_note_reaches_on_log(runner: DockerRunner, busybox: str, source: Path) -> None:
    seen: list[bytes] = []
    result = runner.run(spec(busybox, "echo begin; sleep 30", timeout_s=1), source, cancel=threading.Event(),
                        on_log=seen.append)
    try:
        assert result.status == "timeout"
        text = b"".join(seen)
        assert text.startswith(b"begin\n") and b"killed after the 1 s time limit" in text
        assert text == result.log_path.read_bytes()
    finally:
        result.cleanup()
