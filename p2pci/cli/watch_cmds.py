"""`p2pci watch REPO --branch B`: publish each new commit of a git branch, keep a history.

A thin loop around `p2pci publish`: it polls the branch head with
`git ls-remote` (REPO: a local path or any git URL), fetches a new head
shallowly into a temporary directory, runs `p2pci publish --json [--wait]`
on it (the same command, in a child process, so that it behaves exactly as
publishing by hand), and records the result in `$P2PCI_HOME/watch.sqlite`.
Commits pushed between two polls are built as one (the head). `p2pci badge`
reads the same history when no daemon runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from p2pci.core.errors import LocalError
from p2pci.textsafe import safe_text

HISTORY_FILE = "watch.sqlite"
GIT_TIMEOUT_S = 300.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    project TEXT,
    job TEXT,
    verdict TEXT NOT NULL,
    agreed INTEGER NOT NULL DEFAULT 0,
    replicas INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL,
    error TEXT,
    published_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS history_head ON history (repo, branch, id);
CREATE INDEX IF NOT EXISTS history_project ON history (project, id);
"""
MAX_ERROR = 2000


@dataclass(frozen=True)
class Entry:
    repo: str
    branch: str
    commit: str
    project: str | None
    job: str | None
    verdict: str  # a job verdict (REPRODUCED, …, PENDING when not waited for) or ERROR
    agreed: int  # workers in the agreeing (largest) group
    replicas: int
    exit_code: int  # that of `p2pci publish`
    error: str | None
    published_at: float
    finished_at: float | None


class History:
    """Per-project publish history of `p2pci watch` (SQLite in the node's home)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        try:
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise LocalError(f"{path}: not a p2pci watch history ({e}): move it away") from None

    def close(self) -> None:
        self.db.close()

    def add(self, e: Entry) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO history (repo, branch, commit_id, project, job, verdict, agreed, replicas, "
                "exit_code, error, published_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (e.repo, e.branch, e.commit, e.project, e.job, e.verdict, e.agreed, e.replicas,
                 e.exit_code, e.error, e.published_at, e.finished_at),
            )

    def last_commit(self, repo: str, branch: str) -> str | None:
        row = self.db.execute(
            "SELECT commit_id FROM history WHERE repo = ? AND branch = ? ORDER BY id DESC LIMIT 1", (repo, branch)
        ).fetchone()
        return None if row is None else str(row[0])

    def entries(self, project: str | None = None, limit: int = 100) -> list[Entry]:
        """Newest first."""
        sql = "SELECT repo, branch, commit_id, project, job, verdict, agreed, replicas, exit_code, error, published_at, finished_at FROM history"
        args: tuple[Any, ...] = ()
        if project is not None:
            sql += " WHERE project = ?"
            args = (project,)
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Entry(*row) for row in rows]


@contextmanager
def open_history(home: Path) -> Iterator[History]:
    h = History(home / HISTORY_FILE)
    try:
        yield h
    finally:
        h.close()


def agreed_count(job: dict[str, Any]) -> int:
    """Workers behind the verdict: the group with the job's digest, else the largest group."""
    groups = [g for g in job.get("groups", []) if isinstance(g, dict)]
    if job.get("digest"):
        for g in groups:
            if g.get("digest") == job["digest"]:
                return len(g.get("workers", []))
    return max((len(g.get("workers", [])) for g in groups), default=0)


# ---------------------------------------------------------------- git


def _git(*args: str, cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError:
        raise LocalError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise LocalError(f"git {args[0]} took longer than {GIT_TIMEOUT_S:.0f} s") from None
    if p.returncode != 0:
        raise LocalError(f"git {args[0]} failed: {p.stderr.strip()[-500:] or p.returncode}")
    return p.stdout


def branch_head(repo: str, branch: str) -> str | None:
    """The commit at the tip of `branch` in `repo` (None: no such branch)."""
    out = _git("ls-remote", "--", repo, f"refs/heads/{branch}")
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha.strip()
    return None


def checkout(repo: str, branch: str, dest: Path) -> str:
    """A shallow checkout of `branch` into `dest`; returns its commit."""
    _git("init", "-q", str(dest))
    _git("fetch", "-q", "--depth", "1", "--", repo, f"refs/heads/{branch}", cwd=dest)
    _git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=dest)
    return _git("rev-parse", "HEAD", cwd=dest).strip()


# ---------------------------------------------------------------- publishing


def _publish(home: Path, project_dir: Path, wait: bool) -> tuple[int, dict[str, Any] | None, str]:
    """`p2pci publish --json [--wait]` in a child process: (exit code, job object, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    argv = [sys.executable, "-c", "from p2pci.cli.main import main; main()", "--home", str(home), "publish",
            str(project_dir), "--json"]
    if wait:
        argv.append("--wait")
    p = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    job = None
    try:
        obj = json.loads(p.stdout) if p.stdout.strip() else None
        job = obj if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        job = None
    return p.returncode, job, p.stderr


def publish_commit(home: Path, repo: str, branch: str, subdir: str, wait: bool) -> Entry | None:
    """Publish the head of `branch` if it is new; the history entry, or None when nothing was new."""
    from p2pci.control.client import control_call

    with open_history(home) as hist:
        last = hist.last_commit(repo, branch)
    head = branch_head(repo, branch)
    if head is None:
        raise LocalError(f"no branch {branch!r} in {repo}")
    if head == last:
        return None
    control_call(home, "id")  # no daemon: an error now (retried at the next poll), not a history entry
    with tempfile.TemporaryDirectory(prefix="p2pci-watch-") as tmp:
        commit = checkout(repo, branch, Path(tmp) / "src")
        if commit == last:  # moved back between ls-remote and fetch
            return None
        t0 = time.time()
        code, job, stderr = _publish(home, Path(tmp) / "src" / subdir, wait)
    error = None
    if job is None:
        error = (stderr.strip() or f"p2pci publish exited {code}")[-MAX_ERROR:]
        if "no p2pci daemon" in error:  # the daemon went away meanwhile: not this commit's fault
            raise LocalError(error.splitlines()[-1])
    entry = Entry(
        repo=repo,
        branch=branch,
        commit=commit,
        project=job.get("project") if job else None,
        job=job.get("job") if job else None,
        verdict=str(job.get("verdict")) if job else "ERROR",
        agreed=agreed_count(job) if job else 0,
        replicas=int(job.get("replicas", 0)) if job else 0,
        exit_code=code,
        error=error,
        published_at=t0,
        finished_at=time.time() if wait else None,
    )
    with open_history(home) as hist:
        hist.add(entry)
    return entry


def _echo_entry(e: Entry, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(asdict(e)), nl=True)
        sys.stdout.flush()
        return
    # a watched repository's recipe and publish's error text are not ours: shown escaped
    if e.job is None:
        click.echo(safe_text(f"{e.commit[:12]}  publish failed (exit {e.exit_code}): {e.error}"))
    else:
        click.echo(safe_text(f"{e.commit[:12]}  {e.job[:12]}  {e.verdict}  {e.agreed} of {e.replicas} agreed"))


@click.command("watch")
@click.argument("repo")
@click.option("--branch", "-b", required=True, help="The branch whose new commits are published.")
@click.option("--subdir", default=".", show_default=True, help="Where p2pci.toml is, inside the repository.")
@click.option("--interval", type=click.FloatRange(0.1), default=60.0, show_default=True, help="Seconds between polls.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for each verdict before the next poll.")
@click.option("--once", is_flag=True, help="Poll once: publish the head if it is new, then exit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per published commit (NDJSON).")
@click.pass_context
def watch_command(
    ctx: click.Context, repo: str, branch: str, subdir: str, interval: float, wait: bool, once: bool, as_json: bool
) -> None:
    """Publish each new commit of a git branch (REPO: a local path or a git URL).

    Polls the branch head every --interval seconds; a new head is fetched
    and published as `p2pci publish` would, one at a time (--wait), and
    recorded in the node's history ($P2PCI_HOME/watch.sqlite, which `p2pci
    badge` reads). Runs until interrupted. With --once: exit 0 if the head
    was already published or is REPRODUCED, else the exit code of `p2pci
    publish` (1 DISPUTED/FAILED, 2 otherwise).
    """
    from p2pci.cli.checks import home_of

    home = home_of(ctx)
    if Path(repo).exists():
        repo = str(Path(repo).resolve())
    if Path(subdir).is_absolute() or ".." in Path(subdir).parts:
        raise click.BadParameter("must be a relative path inside the repository", param_hint="--subdir")
    try:
        while True:
            try:
                entry = publish_commit(home, repo, branch, subdir, wait)
            except LocalError as e:  # no daemon, git unreachable…: say so, poll again
                if once:
                    raise
                click.echo(f"p2pci watch: {e} (retrying in {interval:g} s)", err=True)
                entry = None
            if entry is not None:
                _echo_entry(entry, as_json)
            if once:
                sys.exit(0 if entry is None or entry.verdict == "REPRODUCED" else entry.exit_code)
            time.sleep(interval)  # the polling period itself
    except KeyboardInterrupt:
        click.echo("p2pci watch: stopped", err=True)


@click.command("history")
@click.argument("project", required=False)
@click.option("-n", "limit", type=click.IntRange(1), default=20, show_default=True, help="How many entries.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of entries, newest first.")
@click.pass_context
def history_command(ctx: click.Context, project: str | None, limit: int, as_json: bool) -> None:
    """What `p2pci watch` published (of PROJECT, or every project), newest first."""
    from p2pci.cli.checks import home_of

    home = home_of(ctx)
    if not (home / HISTORY_FILE).exists():
        entries: list[Entry] = []
    else:
        with open_history(home) as hist:
            entries = hist.entries(project, limit)
    if as_json:
        click.echo(json.dumps([asdict(e) for e in entries]))
        return
    if not entries:
        click.echo("no history (p2pci watch records it)")
        return
    click.echo(f"{'COMMIT':<12}  {'PROJECT':<20}  {'JOB':<12}  {'VERDICT':<10}  AGREED")
    for e in entries:
        click.echo(safe_text(
            f"{e.commit[:12]:<12}  {safe_text(e.project or '-'):<20.20}  {(e.job or '-')[:12]:<12}  {e.verdict:<10}  "
            f"{e.agreed} of {e.replicas}"
        ))
