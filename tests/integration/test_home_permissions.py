"""`p2pci init` and `p2pci daemon` make the home 0700 and its secrets 0600 (issue 14)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import trio
from click.testing import CliRunner

from p2pci.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def loose_home(tmp: Path) -> Path:
    """A home left world-readable by an older p2pci (or a careless mkdir)."""
    home = tmp / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    (home / "config.toml").write_text("")
    os.chmod(home / "config.toml", 0o644)
    (home / "state.sqlite").write_bytes(b"")
    os.chmod(home / "state.sqlite", 0o644)
    (home / "blobs").mkdir()
    os.chmod(home / "blobs", 0o755)
    return home


def assert_private(home: Path) -> None:
    assert mode(home) == 0o700
    for name in ("node.key", "config.toml", "state.sqlite"):
        assert mode(home / name) == 0o600, name
    assert mode(home / "blobs") == 0o700


def test_init_tightens_an_existing_0755_home_and_says_so(tmp_path: Path) -> None:
    home = loose_home(tmp_path)
    r = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert r.exit_code == 0, r.output
    assert_private(home)
    assert f"tightened {home} from 0755 to 0700" in r.stderr
    assert f"tightened {home / 'state.sqlite'} from 0644 to 0600" in r.stderr
    r = CliRunner().invoke(cli, ["--home", str(home), "init"])  # nothing left to say
    assert r.exit_code == 0 and "tightened" not in r.stderr


def test_init_creates_a_private_home(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    r = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert r.exit_code == 0 and "tightened" not in r.stderr
    assert mode(home) == 0o700 and mode(home / "config.toml") == 0o600 and mode(home / "node.key") == 0o600


async def test_daemon_tightens_an_existing_0755_home(tmp_path: Path) -> None:
    home = loose_home(tmp_path)
    cmd = [sys.executable, "-m", "p2pci.cli.main", "--home", str(home), "daemon", "--no-build",
           "--listen", "/ip4/127.0.0.1/tcp/0"]
    proc = await trio.lowlevel.open_process(cmd, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        err = out = b""
        with trio.fail_after(30):
            while b"tightened" not in err or b"state.sqlite" not in err:
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, err
                err += chunk
            while b"p2pci daemon ready" not in out:  # the daemon is up: key and store exist
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, err
                out += chunk
        assert f"tightened {home} from 0755 to 0700".encode() in err
        assert_private(home)
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await proc.wait()


def test_a_private_home_is_tightened_silently(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "state.sqlite").write_bytes(b"")
    os.chmod(home / "state.sqlite", 0o644)  # what SQLite makes under the default umask
    r = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert r.exit_code == 0 and "tightened" not in r.stderr
    assert mode(home / "state.sqlite") == 0o600
