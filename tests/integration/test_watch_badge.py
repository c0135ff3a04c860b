"""`p2pci watch` publishes each new commit of a git branch against a running cluster;
`p2pci badge` draws the last verdict (issue 16, CI integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import trio

from p2pci.cli.watch_cmds import HISTORY_FILE, open_history
from p2pci.testing.cluster import ScriptedRunner, open_cluster
from tests.integration.test_daemon_cli import hello_recipe, run_cli

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
RECIPE = hello_recipe("watched")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


def commit(repo: Path, text: str) -> str:
    (repo / "hello.txt").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", text)
    return git(repo, "rev-parse", "HEAD")


def make_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "p2pci.toml").write_text(RECIPE)
    return repo


class Lines:
    """NDJSON lines from a child's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream, self.buf = stream, b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            assert chunk, "p2pci watch exited"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        obj: dict[str, Any] = json.loads(line)
        return obj


async def test_watch_publishes_two_commits_one_after_the_other(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    first = commit(repo, "hello 1\n")
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        home = c.nodes[0].paths.home
        argv = [sys.executable, "-m", "p2pci.cli.main", "watch", str(repo), "--branch", "main",
                "--interval", "0.2", "--json", "--home", str(home)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout is not None
            lines = Lines(proc.stdout)
            with trio.fail_after(60):
                one = await lines.next()
            assert (one["commit"], one["verdict"], one["agreed"], one["replicas"]) == (first, "REPRODUCED", 2, 2)
            assert one["project"] == "watched" and one["exit_code"] == 0
            second = commit(repo, "hello 2\n")
            with trio.fail_after(60):
                two = await lines.next()
            assert (two["commit"], two["verdict"]) == (second, "REPRODUCED")
            assert two["job"] != one["job"]
        finally:
            proc.terminate()
            with trio.fail_after(10):
                await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()
        # both jobs are on the board, built from each commit's own source
        jobs = {j["job"]: j for j in c.nodes[0].machine.job_list(c.nodes[0].now())}
        assert set(jobs) == {one["job"], two["job"]}
        # the history, newest first
        r = await run_cli(home, "history", "watched", "--json")
        assert r.exit_code == 0
        assert [e["commit"] for e in json.loads(r.stdout)] == [second, first]
        # a poll with nothing new publishes nothing (and exits 0)
        r = await run_cli(home, "watch", str(repo), "--branch", "main", "--once")
        assert (r.exit_code, r.stdout) == (0, "")
        assert len(c.nodes[0].machine.job_list(c.nodes[0].now())) == 2
        # the badge: the last verdict and how many agreed, from the daemon's board
        r = await run_cli(home, "badge", "watched")
        assert r.exit_code == 0, r.output
        root = ET.fromstring(r.stdout)
        assert root.tag == f"{SVG}svg"
        assert [t.text for t in root.iter(f"{SVG}text")] == ["p2pci", "reproduced 2/2"]
        r = await run_cli(home, "badge", "watched", "--json")
        assert json.loads(r.stdout) == {"project": "watched", "job": two["job"], "verdict": "REPRODUCED",
                                        "agreed": 2, "replicas": 2, "source": "daemon"}
    # no daemon: the watch history answers
    r = await run_cli(home, "badge", "watched", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["source"] == "history"
    assert (home / HISTORY_FILE).exists()


async def test_watch_once_disputed_and_errors(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, "hello\n")
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner(lie=True)]) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(60):
            r = await run_cli(home, "watch", str(repo), "--branch", "main", "--once")
        assert r.exit_code == 1, r.output  # DISPUTED: publish's exit code
        assert "DISPUTED" in r.stdout and "1 of 2 agreed" in r.stdout
        # a git URL (not a path) goes through the same ls-remote and fetch: its own history
        url = repo.resolve().as_uri()
        with trio.fail_after(60):
            r = await run_cli(home, "watch", url, "--branch", "main", "--once", "--json")
        entry = json.loads(r.stdout)
        assert r.exit_code == 1 and (entry["repo"], entry["verdict"]) == (url, "DISPUTED"), r.output
        r = await run_cli(home, "watch", str(repo), "--branch", "nope", "--once")
        assert r.exit_code == 2 and "no branch 'nope'" in r.stderr
        # a commit with a broken recipe is recorded as an error, and not retried
        (repo / "p2pci.toml").write_text(RECIPE.replace("timeout = 5", "timeout = -5"))
        bad = commit(repo, "broken\n")
        r = await run_cli(home, "watch", str(repo), "--branch", "main", "--once", "--json")
        entry = json.loads(r.stdout)
        assert r.exit_code == 2 and (entry["commit"], entry["verdict"], entry["job"]) == (bad, "ERROR", None)
        assert "timeout" in entry["error"]
        r = await run_cli(home, "watch", str(repo), "--branch", "main", "--once")
        assert (r.exit_code, r.stdout) == (0, "")
        with open_history(home) as h:
            assert [(e.verdict, e.repo) for e in h.entries()] == [
                ("ERROR", str(repo.resolve())), ("DISPUTED", url), ("DISPUTED", str(repo.resolve()))]


async def test_watch_without_a_daemon_records_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, "hello\n")
    home = tmp_path / "home"
    r = await run_cli(home, "watch", str(repo), "--branch", "main", "--once")
    assert r.exit_code == 2 and "no p2pci daemon" in r.stderr
    r = await run_cli(home, "history", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []  # retried at the next poll, not an ERROR entry
