"""A fuzz run leaves no scratch directory behind (/tmp/p2pci-fuzz-*): not when it ends, not when
the fuzzing process dies at a finding, not at Ctrl-C. Each test gives the run its own TMPDIR and
looks there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "P2PCI_FUZZ_SCRATCH"}
    env["TMPDIR"] = str(tmp)
    return env


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("p2pci-fuzz-"))


def _poll(cond: object, timeout: float, what: str) -> None:
    """Poll `cond()` (a check of another process's progress) until true or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_in_process_use_removes_its_scratch_directory_at_exit(tmp_path: Path) -> None:
    # what pytest and `make fuzz-cov` do: the targets run in this process, no runner around them
    code = (
        "import os, tempfile\n"
        "from tests.fuzz.targets import TARGETS\n"
        "one = TARGETS['config'].make()\n"
        "one(b'[worker]\\nmax_jobs = 1\\n')\n"
        "print(sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith('p2pci-fuzz-')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] != "[]"  # while it ran, its scratch was where we look
    assert _leftovers(tmp_path) == []


@pytest.mark.timeout(180)
def test_a_fuzz_run_removes_its_scratch_directory(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "run", "--seconds", "1", "config"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config         ok" in proc.stdout
    assert _leftovers(tmp_path) == []


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _has_input(tmp: Path) -> bool:
    """A file in a scratch directory; the fuzzer writes and removes them as it goes, so a walk can
    meet a file or directory that is gone by the time it is listed (FileNotFoundError)."""
    try:
        return any(p.is_file() for d in _leftovers(tmp) for p in (tmp / d).rglob("*"))
    except FileNotFoundError:
        return False


@contextmanager
def _long_run(tmp: Path) -> Iterator[subprocess.Popen[str]]:
    """A `make fuzz` of 300 s whose fuzzing child is running and has written an input into a
    scratch directory; its whole process group is killed on the way out whatever happened."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fuzz", "run", "--seconds", "300", "config"],
        cwd=ROOT,
        env=_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the Ctrl-C below reaches it alone
    )
    try:
        _poll(lambda: _has_input(tmp), 120, "an input")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(300)
def test_a_finding_leaves_no_scratch_directory(tmp_path: Path) -> None:
    # a finding ends the fuzzing process at once (libFuzzer's exit: no Python exit handlers run);
    # SIGKILL is the same end with no handler at all
    pytest.importorskip("atheris")
    with _long_run(tmp_path) as proc:
        _poll(lambda: _children(proc.pid), 30, "the fuzzing child")
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    assert _leftovers(tmp_path) == []
    assert proc.returncode == 1, out
    assert "FINDING (exit -9" in out


@pytest.mark.timeout(300)
def test_ctrl_c_leaves_no_scratch_directory(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    with _long_run(tmp_path) as proc:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole group
        out, _ = proc.communicate(timeout=120)
    assert _leftovers(tmp_path) == []
    assert proc.returncode == 130, out
