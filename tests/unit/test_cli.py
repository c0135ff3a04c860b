"""CLI parsing and output without a daemon (click CliRunner)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from p2pci.cli.main import cli


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, (*prefix, name)))
    return out


def test_root_help_lists_the_design_commands() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in ("init", "daemon", "id", "peers", "publish", "jobs", "show", "fetch", "logs", "diff",
                 "cancel", "trust", "export", "verify"):
        assert name in cli.commands, name
        assert f"  {name} " in r.output


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def test_init_creates_key_and_config_once(tmp_path: Path) -> None:
    home = tmp_path / "h"
    r = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert r.exit_code == 0, r.output
    peer = r.stdout.strip()
    assert peer.startswith("12D3KooW")
    assert stat.S_IMODE(os.stat(home / "node.key").st_mode) == 0o600
    assert len((home / "node.key").read_bytes()) == 32
    assert (home / "config.toml").is_file()
    again = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert again.stdout.strip() == peer


def test_home_from_environment(tmp_path: Path) -> None:
    r = CliRunner(env={"P2PCI_HOME": str(tmp_path / "env")}).invoke(cli, ["init"])
    assert r.exit_code == 0
    assert (tmp_path / "env" / "node.key").exists()


def test_id_without_daemon_uses_the_key(tmp_path: Path) -> None:
    CliRunner().invoke(cli, ["--home", str(tmp_path), "init"])
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "id", "--json"])
    assert r.exit_code == 0
    obj = json.loads(r.stdout)
    assert set(obj) == {"peer_id", "addrs"} and obj["addrs"] == []


@pytest.mark.parametrize(
    "args",
    [["jobs"], ["jobs", "--json"], ["show", "abcd"], ["peers"], ["cancel", "ab"], ["logs", "ab"],
     ["diff", "ab"], ["export", "ab"], ["fetch", "ab", "--out", "x"]],
    ids=lambda a: a[0],
)
def test_no_daemon_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), *args])
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no p2pci daemon" in lines[0]


def write(dir: Path, text: str) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "p2pci.toml").write_text(text)
    return dir


def test_publish_bad_recipe_is_exit_2_before_anything(tmp_path: Path) -> None:
    proj = write(tmp_path / "p", '[build]\nimagee = "busybox"\ncommand = ["true"]\n')
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(proj)])
    assert r.exit_code == 2
    assert "p2pci.toml" in r.stderr and "imagee" in r.stderr
    assert not (tmp_path / "h" / "blobs").exists()  # nothing packed


def test_publish_no_recipe(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no p2pci.toml" in r.stderr


def test_publish_good_recipe_without_daemon(tmp_path: Path) -> None:
    proj = write(tmp_path / "p", '[build]\nimage = "busybox"\ncommand = ["true"]\n')
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(proj), "--wait"])
    assert r.exit_code == 2 and "no p2pci daemon" in r.stderr
    assert not (tmp_path / "h" / "blobs").exists()


def test_publish_quorum_above_replicas(tmp_path: Path) -> None:
    proj = write(tmp_path / "p", '[build]\nimage = "busybox"\ncommand = ["true"]\n')
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(proj), "--replicas", "2", "--quorum", "3"])
    assert r.exit_code == 2 and "quorum 3 is larger than replicas 2" in r.stderr


def test_bad_option_values_are_usage_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "publish", str(tmp_path), "--replicas", "0"])
    assert r.exit_code == 2 and "replicas" in r.stderr


def test_trust_offline(tmp_path: Path) -> None:
    peer = CliRunner().invoke(cli, ["--home", str(tmp_path), "init"]).stdout.strip()
    run = CliRunner().invoke
    assert run(cli, ["--home", str(tmp_path), "trust", "add", peer]).exit_code == 0
    r = run(cli, ["--home", str(tmp_path), "trust", "list", "--json"])
    assert json.loads(r.stdout) == [peer]
    assert run(cli, ["--home", str(tmp_path), "trust", "remove", peer]).exit_code == 0
    assert json.loads(run(cli, ["--home", str(tmp_path), "trust", "list", "--json"]).stdout) == []
    bad = run(cli, ["--home", str(tmp_path), "trust", "add", "not-a-peer"])
    assert bad.exit_code == 2 and "peer ID" in bad.stderr
    # --json: the resulting set (add, remove) or mode (count), one document on stdout
    assert json.loads(run(cli, ["--home", str(tmp_path), "trust", "add", peer, "--json"]).stdout) == [peer]
    assert json.loads(run(cli, ["--home", str(tmp_path), "trust", "remove", peer, "--json"]).stdout) == []
    assert json.loads(run(cli, ["--home", str(tmp_path), "trust", "count", "all", "--json"]).stdout) == {"count": "all"}


def test_verify_garbage_file(tmp_path: Path) -> None:
    f = tmp_path / "b"
    f.write_bytes(b"\x00garbage")
    r = CliRunner().invoke(cli, ["verify", str(f)])
    assert r.exit_code == 2 and r.stderr.startswith("error:")


def test_publish_open_mode_single_replica_is_refused(tmp_path: Path) -> None:
    # A lone open-mode vote never counts (nobody else witnessed its commit): refuse up front.
    proj = write(tmp_path / "p", '[build]\nimage = "busybox"\ncommand = ["true"]\n')
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(proj), "--replicas", "1"])
    assert r.exit_code == 2 and "open mode needs at least 2 replicas" in r.stderr
    assert not (tmp_path / "h" / "blobs").exists()


def test_daemon_refuses_to_start_with_a_malformed_trusted_key(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert CliRunner().invoke(cli, ["--home", str(home), "init"]).exit_code == 0
    cfg = home / "config.toml"
    cfg.write_text('[trust]\ncount = "listed"\nkeys = ["12D3KooWbroken"]\n')
    r = CliRunner().invoke(cli, ["--home", str(home), "daemon"])
    assert r.exit_code == 2, r.output
    assert "12D3KooWbroken" in r.output and str(cfg) in r.output and "line 3" in r.output
    assert not (home / "control.sock").exists() and not (home / "p2pci.db").exists()


def test_verify_reports_rounds_and_completeness(tmp_path: Path) -> None:
    from p2pci.core.codec import canonical
    from p2pci.core.evidence import export_bundle

    from .jobgen import JobSim, key, make_offer

    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(key("a"), b"good", 0), (key("b"), b"good", 0)])
    full = tmp_path / "full.p2pci"
    full.write_bytes(export_bundle(sim.view()))
    r = CliRunner().invoke(cli, ["verify", str(full), "--now", "1500000"])
    assert r.exit_code == 0, r.output
    assert "verdict  REPRODUCED" in r.output and "bundle   complete" in r.output
    assert "round 0   selected 2:" in r.output
    cut = [f.raw for f in sim.facts if not (f.kind == "reveal" and f.signer == key("b").public)]
    part = tmp_path / "cut.p2pci"
    part.write_bytes(canonical({"v": 2, "job": sim.job, "facts": cut}))
    r = CliRunner().invoke(cli, ["verify", str(part), "--now", "1500000", "--json"])
    assert r.exit_code == 1
    obj = json.loads(r.output)
    assert obj["bundle"]["complete"] is False and obj["bundle"]["missing"] == [key("b").peer_id]
    r = CliRunner().invoke(cli, ["verify", str(part), "--now", "1500000"])
    assert r.exit_code == 1 and "INCOMPLETE" in r.output and f"no reveal of selected worker {key('b').peer_id}" in r.output
