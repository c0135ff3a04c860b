"""Client-side CLI helpers (p2pci.cli.checks) and `--home` anywhere, without a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.checks import check_fetch_dest, hoist_option, results_differ
from p2pci.cli.main import cli
from p2pci.core.errors import LocalError


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["jobs", "--home", "H"], ["--home", "H", "jobs"]),
        (["show", "--home=H", "ab"], ["--home=H", "show", "ab"]),
        (["--home", "A", "jobs", "--home", "B"], ["--home", "A", "--home", "B", "jobs"]),
        (["logs", "ab", "--", "--home", "x"], ["logs", "ab", "--", "--home", "x"]),
        (["jobs", "--home"], ["jobs", "--home"]),  # no value: left for click to report
        (["jobs", "--homely"], ["jobs", "--homely"]),
    ],
)
def test_hoist_option(args: list[str], want: list[str]) -> None:
    assert hoist_option(args, "--home") == want


def test_home_after_the_subcommand(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["init", "--home", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a" / "node.key").exists()
    r2 = CliRunner().invoke(cli, ["id", f"--home={tmp_path / 'a'}"])
    assert r2.exit_code == 0 and r2.stdout.strip() == r.stdout.strip()
    # the last --home wins, wherever it is
    r3 = CliRunner().invoke(cli, ["--home", str(tmp_path / "b"), "id", "--home", str(tmp_path / "a")])
    assert r3.stdout.strip() == r.stdout.strip()
    r4 = CliRunner(env={"P2PCI_HOME": str(tmp_path / "a")}).invoke(cli, ["id"])
    assert r4.stdout.strip() == r.stdout.strip()


def test_fetch_dest(tmp_path: Path) -> None:
    assert check_fetch_dest(tmp_path / "new" / "dir", False) == tmp_path / "new" / "dir"
    (tmp_path / "empty").mkdir()
    assert check_fetch_dest(tmp_path / "empty", False) == tmp_path / "empty"
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(LocalError, match=r"full is not empty \(1 entry\).*--force"):
        check_fetch_dest(full, False)
    assert check_fetch_dest(full, True) == full
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(LocalError, match="it is not a directory"):
        check_fetch_dest(f, True)
    with pytest.raises(LocalError, match=r"it is under .*file, which is not a directory"):
        check_fetch_dest(f / "a" / "b", True)


def test_fetch_refuses_before_calling_the_daemon(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "fetch", "ab", "--out", str(full)])
    assert r.exit_code == 2 and "is not empty" in r.stderr and "daemon" not in r.stderr


def test_results_differ() -> None:
    assert not results_differ("nothing to compare: 1 distinct result(s) for job abc\n")
    assert results_differ("--- a/artifact.txt\n+++ b/artifact.txt\n")


NO_DATA = {"daemon": "runs until stopped", "export": "writes a binary bundle"}


def test_every_command_that_prints_data_takes_json() -> None:
    import click

    missing = []
    for name, cmd in cli.commands.items():
        subs = cmd.commands.items() if isinstance(cmd, click.Group) else [("", cmd)]
        for sub, c in subs:
            full = f"{name} {sub}".strip()
            if full in NO_DATA:
                continue
            if not any("--json" in p.opts for p in c.params if isinstance(p, click.Option)):
                missing.append(full)
    assert missing == []
