"""`p2pci badge`: a valid SVG, with everything it shows escaped (p2pci.cli.badge_cmd)."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from p2pci.cli.badge_cmd import COLOURS, badge_svg
from p2pci.cli.main import cli
from p2pci.cli.watch_cmds import Entry, open_history

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("height") == "20"
    width = int(root.get("width") or "0")
    rects = [r for r in root.iter(f"{SVG}rect") if r.get("x") is not None]
    assert width > 0 and all(0 < float(r.get("x") or 0) < width for r in rects)
    return root


@pytest.mark.parametrize("verdict", sorted(COLOURS))
def test_each_verdict_is_a_valid_svg(verdict: str) -> None:
    root = parse(badge_svg(verdict, 2, 3, "hello"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts == ["p2pci", f"{verdict.lower()} 2/3"]
    assert any(r.get("fill") == COLOURS[verdict] for r in root.iter(f"{SVG}rect"))
    assert root.findtext(f"{SVG}title") == f"hello: {verdict.lower()} 2/3"


def test_hostile_project_name_is_escaped() -> None:
    name = '</title><script>alert(1)</script>" onload="x" &amp; \'q\''
    svg = badge_svg("REPRODUCED", 1, 1, name)
    root = parse(svg)
    assert not list(root.iter(f"{SVG}script")) and "<script>" not in svg
    assert root.findtext(f"{SVG}title") == f"{name}: reproduced 1/1"  # shown as text, intact
    assert root.get("aria-label") == f"{name}: reproduced 1/1" and root.get("onload") is None


def entry(project: str, verdict: str, agreed: int, job: str) -> Entry:
    return Entry("/repo", "main", job * 4, project, job, verdict, agreed, 3, 0, None, time.time(), time.time())


def test_badge_from_the_history_without_a_daemon(tmp_path: Path) -> None:
    with open_history(tmp_path) as h:
        h.add(entry("p", "REPRODUCED", 3, "aa" * 5))
        h.add(entry("p", "DISPUTED", 2, "bb" * 5))
        h.add(entry("p", "ERROR", 0, "cc" * 5))  # not a verdict: skipped
        h.add(entry("other", "FAILED", 3, "dd" * 5))
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "badge", "p", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"project": "p", "job": "bb" * 5, "verdict": "DISPUTED", "agreed": 2,
                                    "replicas": 3, "source": "history"}
    out = tmp_path / "badge.svg"
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "badge", "p", "-o", str(out)])
    assert r.exit_code == 0 and r.stdout == ""
    assert [t.text for t in parse(out.read_text()).iter(f"{SVG}text")] == ["p2pci", "disputed 2/3"]
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "badge", "nope"])
    assert r.exit_code == 2 and "no finished job of project 'nope'" in r.stderr


def test_history_and_watch_lines_show_a_watched_repos_text_escaped(tmp_path: Path) -> None:
    # the project name comes from the watched repository's recipe, the error from publish's
    # stderr about it: a repository anyone pushes to must not drive this terminal
    from p2pci.cli.watch_cmds import _echo_entry

    hostile = "x\x1b[2J\x1b]0;owned\x07"
    with open_history(tmp_path) as h:
        h.add(entry(hostile, "REPRODUCED", 3, "aa" * 5))
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "history"])
    assert r.exit_code == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert r.stdout.splitlines()[1].split()[1].startswith("x\\x1b[2J")
    failed = Entry("/repo", "main", "ab" * 20, None, None, "ERROR", 0, 0, 2, "bad name " + hostile, 0.0, None)
    r = CliRunner().invoke(click.Command("t", callback=lambda: _echo_entry(failed, False)), [])
    assert "\x1b" not in r.stdout and r.stdout.rstrip().endswith("bad name x\\x1b[2J\\x1b]0;owned\\x07")
    r = CliRunner().invoke(click.Command("t", callback=lambda: _echo_entry(failed, True)), [])
    assert json.loads(r.stdout)["error"] == "bad name " + hostile  # JSON keeps the text, escaped by JSON
