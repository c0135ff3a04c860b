"""SIGTERM to pytest (`timeout`, a CI cancel) leaves no daemon behind (tests/conftest.py).

The daemons run in sessions of their own, so the signal never reaches them: before the
SIGTERM handler of tests/conftest.py, pytest died at once and every daemon of the running
test stayed up. Now SIGTERM is handled as Ctrl-C and the fixtures' teardown stops them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import trio

from tests.e2e.sigterm_child import PID_FILE_ENV

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("sigterm_child.py")


def _open_log(path: Path) -> IO[bytes]:
    return open(path, "wb")  # noqa: SIM115 - closed by the test's `with`


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sigterm_to_pytest_stops_the_daemons_of_the_running_test(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    log_path = tmp_path / "pytest.log"
    env = {**os.environ, PID_FILE_ENV: str(pid_file)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CHILD)]
    daemon = 0
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            with trio.fail_after(180):
                while not pid_file.exists():
                    assert proc.returncode is None, log_path.read_text()
                    await trio.sleep(0.05)
            daemon = int(pid_file.read_text())
            assert alive(daemon)
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(60):
                await proc.wait()
            output = log_path.read_text()
            assert not alive(daemon), output
            assert "KeyboardInterrupt" in output, output  # stopped as Ctrl-C stops it
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if daemon and alive(daemon):  # a failed run must not leave it either
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon, signal.SIGKILL)
