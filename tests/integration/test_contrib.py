"""The systemd unit and the worker Dockerfile in contrib/ (docs/operator.md)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from p2pci.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "p2pci.service"
DOCKERFILE = ROOT / "contrib" / "docker" / "Dockerfile"


def parses(argv: list[str]) -> click.Command:
    """The p2pci subcommand `argv` runs, after click parsed all its options (UsageError if not)."""
    ctx = cli.make_context("p2pci", list(argv), resilient_parsing=False)
    name, cmd, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
    assert cmd is not None, name
    cmd.make_context(name or "", rest, parent=ctx)
    return cmd


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    return cp


def test_unit_runs_real_p2pci_commands() -> None:
    s = unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(s[key])
        assert argv[0] == "/usr/local/bin/p2pci", argv
        parses(argv[1:])
    assert shlex.split(s["ExecStart"])[1] == "daemon" and shlex.split(s["ExecStartPre"])[1] == "init"
    env = dict(e.split("=", 1) for e in unit()["Service"].get("Environment", "").split())
    assert env.get("P2PCI_LOG") == "WARNING"
    assert "ReadWritePaths" in s and s["ReadWritePaths"] == "/var/lib/p2pci"
    assert s["KillSignal"] == "SIGTERM"
    # the first start's `init` mints the identity proof (minutes of CPU on a slow or busy host):
    # systemd's default 90 s start timeout would kill it over and over
    assert s["TimeoutStartSec"] == "infinity"
    with pytest.raises(click.UsageError):
        parses(["daemon", "--no-such-flag"])  # the check can fail


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "p2pci"
    assert exe.is_file(), "the venv's p2pci entry point"
    text = UNIT.read_text().replace("/usr/local/bin/p2pci", str(exe))
    good = tmp_path / "p2pci.service"
    good.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(good)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "p2pci.service" not in r.stdout + r.stderr, r.stdout + r.stderr
    bad = tmp_path / "bad" / "p2pci.service"
    bad.parent.mkdir()
    bad.write_text(text.replace(str(exe), "/nonexistent/p2pci"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "not executable" in r.stderr


def test_dockerfile_runs_the_daemon_on_a_mounted_home() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    entry = next(ln for ln in lines if ln.startswith("ENTRYPOINT "))
    import json

    argv = json.loads(entry.removeprefix("ENTRYPOINT "))
    assert argv[0] == "p2pci" and parses(argv[1:]).name == "daemon"
    assert any(ln.startswith("ENV P2PCI_HOME=/var/lib/p2pci") for ln in lines)
    assert 'VOLUME ["/var/lib/p2pci"]' in lines
    assert any(ln.startswith("USER ") and ln != "USER root" for ln in lines)
    text = DOCKERFILE.read_text()
    assert "root-equivalent" in text and "-v /var/lib/p2pci:/var/lib/p2pci" in text
