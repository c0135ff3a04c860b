"""`make dist` builds a single-file p2pci.pyz that runs with a bare Python 3.11.

Slow (about a minute: pip resolves every dependency, from its cache when warm).
The .pyz runs in isolated mode (-I, no venv on PATH, a fresh SHIV_ROOT) so it
can only use what it carries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


def bare_python() -> str:
    """The interpreter under the venv: a plain CPython 3.11 without our deps."""
    base = getattr(sys, "_base_executable", sys.executable)
    return base if base and Path(base).exists() else sys.executable


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "DIST_DIR": str(out), "VENV": str(ROOT / ".venv")}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make-dist.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().endswith("p2pci.pyz")
    assert list(out.glob("p2pci-*.whl")) and list(out.glob("p2pci-*.tar.gz"))
    return out / "p2pci.pyz"


def bare_env(tmp: Path) -> dict[str, str]:
    """A minimal environment; the identity proof stays at the suite's low difficulty (tests/conftest.py):
    `init` at the default 27 bits takes a minute or more of CPU."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "SHIV_ROOT": str(tmp / "shiv"), "LANG": "C.UTF-8",
            "P2PCI_IDENTITY_BITS": os.environ["P2PCI_IDENTITY_BITS"]}


def run_pyz(pyz: Path, tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = bare_env(tmp)
    return subprocess.run(
        [bare_python(), "-I", str(pyz), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_pyz_runs_help_and_init(pyz: Path, tmp_path: Path) -> None:
    helped = run_pyz(pyz, tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr[-2000:]
    for command in ("init", "daemon", "publish", "status"):
        assert command in helped.stdout
    home = tmp_path / "home"
    inited = run_pyz(pyz, tmp_path, "--home", str(home), "init")
    assert inited.returncode == 0, inited.stderr[-2000:]
    assert "12D3KooW" in inited.stdout
    assert (home / "node.key").stat().st_mode & 0o777 == 0o600


async def test_pyz_runs_a_daemon(pyz: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_pyz(pyz, tmp_path, "--home", str(home), "init").returncode == 0
    env = bare_env(tmp_path)
    argv = [bare_python(), "-I", str(pyz), "--home", str(home), "daemon", "--no-build",
            "--listen", "/ip4/127.0.0.1/tcp/0"]
    async with trio.open_nursery() as nursery:
        run = partial(trio.run_process, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
        proc = await nursery.start(run)
        assert isinstance(proc, trio.Process) and proc.stdout is not None
        seen = b""
        with trio.fail_after(90):
            while b"p2pci daemon ready:" not in seen:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"daemon exited early: {seen!r}"
                seen += chunk
        proc.terminate()
        with trio.fail_after(30):
            await proc.wait()
    assert b"12D3KooW" in seen
