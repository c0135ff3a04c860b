"""The CLI against in-process nodes (memory network, scripted runner) through the real control socket."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from p2pci.cli.main import cli
from p2pci.control.client import ControlError, acontrol_call
from p2pci.control.schema import JOB_KEYS
from p2pci.core.messages import Reveal
from p2pci.core.results import parse_manifest
from p2pci.testing.cluster import Cluster, ScriptedRunner, open_cluster


def hello_recipe(name: str) -> str:
    """A recipe of project `name` that copies hello.txt to /out (2 replicas, quorum 2)."""
    return f"""[project]
name = "{name}"
[build]
image = "busybox"
command = ["sh", "-c", "cp /build/src/hello.txt /out/"]
timeout = 5
[trust]
replicas = 2
quorum = 2
"""


RECIPE = hello_recipe("hello")


async def run_cli(home: Path, *args: str) -> Result:
    def go() -> Result:
        return CliRunner().invoke(cli, ["--home", str(home), *args])

    return await trio.to_thread.run_sync(go)


def project(tmp: Path, text: str = RECIPE) -> Path:
    d = tmp / "proj"
    d.mkdir(exist_ok=True)
    (d / "p2pci.toml").write_text(text)
    (d / "hello.txt").write_text("hello\n")
    return d


async def published(c: Cluster, tmp: Path) -> tuple[Path, dict[str, Any]]:
    home = c.nodes[0].paths.home
    with trio.fail_after(20):
        r = await run_cli(home, "publish", str(project(tmp)), "--wait", "--json")
    assert r.exit_code == 0, r.output
    return home, json.loads(r.stdout.strip().splitlines()[-1])


async def test_publish_wait_show_jobs_fetch_logs_export_verify(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        home, final = await published(c, tmp_path)
        assert final["verdict"] == "REPRODUCED" and final["project"] == "hello"
        assert set(final) == JOB_KEYS and final["provenance"]["command"]  # docs/protocol.md section 6
        workers = {w for g in final["groups"] for w in g["workers"]}
        assert len(workers) == 2 and workers == {c.nodes[1].peer_id, c.nodes[2].peer_id}
        assert [r["round"] for r in final["rounds"]][:1] == [0] and workers <= {
            w for r in final["rounds"] for w in r["workers"]}
        assert (final["reason"], final["ignored_selects"], final["missing"], final["declines"]) == (None, [], [], [])
        job = final["job"]
        r = await run_cli(home, "show", job[:6], "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["job"] == job
        r = await run_cli(home, "show", job[:6])
        assert "REPRODUCED" in r.stdout and job in r.stdout
        r = await run_cli(home, "jobs", "--json")
        assert [j["job"] for j in json.loads(r.stdout)] == [job]
        r = await run_cli(home, "show", "zz")
        assert r.exit_code == 2 and "not a hex job id" in r.stderr
        r = await run_cli(home, "show", "0" if job[0] != "0" else "1")
        assert r.exit_code == 2 and "no job" in r.stderr

        out = tmp_path / "fetched"
        r = await run_cli(home, "fetch", job[:8], "--out", str(out))
        assert r.exit_code == 0, r.output
        view = c.nodes[0].board.job(bytes.fromhex(job))
        assert view is not None
        rev = next(iter(view.reveals.values()))[0].body
        assert isinstance(rev, Reveal)
        # the manifest blob came by hash with the artifacts, and every file matches it
        data = c.nodes[0].blobs.read_bytes(rev.manifest.sha256)
        manifest = parse_manifest(data, sha256=rev.manifest.sha256, files=rev.files, exit_code=0, digest=rev.digest)
        assert manifest and sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
            e.path for e in manifest
        ]
        for e in manifest:
            assert hashlib.sha256((out / e.path).read_bytes()).digest() == e.sha256

        r = await run_cli(home, "logs", job)
        assert r.exit_code == 0 and r.stdout.count("==> 12D3KooW") == 2 and "log of a build" in r.stdout

        bundle = tmp_path / "b.bundle"
        r = await run_cli(home, "export", job, "-o", str(bundle))
        assert r.exit_code == 0, r.output
        r = await run_cli(tmp_path / "elsewhere", "verify", str(bundle), "--json")
        assert r.exit_code == 0, r.output
        offline = json.loads(r.stdout)
        assert offline["verdict"] == "REPRODUCED" and offline["groups"] == final["groups"]
        assert offline["bundle"]["complete"] is True and offline["bundle"]["missing"] == []
        # the bundle holds facts only; verify names the manifest blob the agreeing reveals name
        assert offline["manifests"] == [
            {"digest": rev.digest.hex(), "sha256": rev.manifest.sha256.hex(), "size": rev.manifest.size, "files": 2}
        ]
        r = await run_cli(tmp_path / "elsewhere", "verify", str(bundle))
        assert f"manifest {rev.digest.hex()[:12]}: 2 files, blob {rev.manifest.sha256.hex()[:12]}" in r.stdout

        r = await run_cli(home, "diff", job)
        assert r.exit_code == 0 and "nothing to compare" in r.stdout


async def test_disputed_exit_1_and_diff(tmp_path: Path) -> None:
    runners = [None, ScriptedRunner(), ScriptedRunner(lie=True)]
    async with open_cluster(tmp_path, 3, runners=runners) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(20):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--json")
        final = json.loads(r.stdout.strip().splitlines()[-1])
        assert (r.exit_code, final["verdict"]) == (1, "DISPUTED")
        r = await run_cli(home, "diff", final["job"])
        assert r.exit_code == 1, r.output  # the results differ (as diff(1))
        assert "artifact.txt" in r.stdout and "something else" in r.stdout


async def test_bad_recipe_publishes_nothing(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, ScriptedRunner()]) as c:
        home = c.nodes[0].paths.home
        r = await run_cli(home, "publish", str(project(tmp_path, RECIPE.replace("timeout = 5", "timeout = -5"))))
        assert r.exit_code == 2 and "timeout" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert c.nodes[0].board.jobs() == [] and c.nodes[1].board.jobs() == []


async def test_cancel_and_control_errors(tmp_path: Path) -> None:
    gate_runner = ScriptedRunner(gate=threading.Event())
    async with open_cluster(tmp_path, 2, runners=[None, gate_runner]) as c:
        node = c.nodes[0]
        home = node.paths.home
        r = await run_cli(home, "publish", str(project(tmp_path)), "--json")
        job = json.loads(r.stdout)["job"]
        with trio.fail_after(10):
            await c.wait_verdict(job, [c.nodes[1]], final=False)  # node 1 holds the offer
        r = await run_cli(c.nodes[1].paths.home, "cancel", job)
        assert r.exit_code == 2 and "only the publisher" in r.stderr
        r = await run_cli(home, "cancel", job)
        assert r.exit_code == 0 and "CANCELLED" in r.stdout
        worker = c.nodes[1].machine
        with trio.fail_after(30):  # a hang guard: every wait below is on an event
            await c.wait_verdict(job)
            # the worker steps the job after the verdict reaches it (it may still be CLAIMED here)
            while worker.building or worker.jobs[bytes.fromhex(job)].phase not in ("GAVE_UP", "SKIPPED"):
                await c.nodes[1].changed.wait()  # a build already running is cancelled too
        assert not worker.building
        # malformed requests: error replies, the daemon keeps serving
        for op, args in [("nope", {}), ("show", {"job": 5}), ("show", {}), ("publish", {"project": 1}),
                         ("fetch", {"job": job, "out": "/nonexistent/x"}), ("trust_add", {"peer_id": "x"})]:
            with pytest.raises(ControlError) as err:
                await acontrol_call(home, op, **args)
            # an error reply of the daemon, not a bug of ours reported as one
            assert str(err.value) and not str(err.value).startswith(("internal error", "cannot encode"))
        assert (await acontrol_call(home, "id"))["peer_id"] == node.peer_id
        gate_runner.gate.set()


async def test_publish_wait_shows_progress_and_events_give_ndjson(tmp_path: Path) -> None:
    slow = ScriptedRunner(timeout=True, log_lines=("compiling",))
    runners = [ScriptedRunner(log_lines=("building here",)), slow, ScriptedRunner(), ScriptedRunner()]
    async with open_cluster(tmp_path, 4, runners=runners) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(30):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--replicas", "4")
        assert r.exit_code == 0, r.output
        err = r.stderr.splitlines()
        assert err[0].startswith("packing git commit") or err[0].startswith("packing a directory walk")
        assert any(line.startswith("offer: signing and gossiping the offer of hello") for line in err)
        assert any(line.startswith("round 0: selected") for line in err)
        assert any(line.endswith(": revealed") for line in err)
        # all four are selected: the one that timed out says so, with its log's tail
        assert any("timed out (timeout: timed out after 5s; log tail: compiling" in line for line in err), err
        assert any(line.startswith("  12D3KooW") and line.endswith("| building here") for line in err)
        assert err[-1].startswith("verdict REPRODUCED")
        assert "\x1b" not in r.stderr  # not a terminal: plain lines
        # show lists every worker's phase and the deadlines
        assert "worker   " in r.stdout and "reveal by" in r.stdout and "deadline" in r.stdout

        with trio.fail_after(30):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--events", "--replicas", "2")
        assert r.exit_code == 0, r.output
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert [(e["step"], e.get("state")) for e in lines[:5]] == [
            ("pack", None), ("pack", None), ("offer", "start"), ("offer", "done"), ("published", None)]
        assert lines[1]["text"].startswith("source sha256 ")
        job = lines[4]["text"]
        assert lines[3]["text"] == f"offered job {job}"
        assert all(e["event"] in ("step", "job", "log") for e in lines)
        assert lines[-1]["event"] == "job" and lines[-1]["job"]["verdict"] == "REPRODUCED"
        assert lines[-1]["job"]["job"] == job
        r = await run_cli(home, "publish", str(project(tmp_path)), "--events")
        assert r.exit_code == 2 and "--events needs --wait" in r.stderr


async def test_jobs_mine_and_fetch_group_of_a_disputed_job(tmp_path: Path) -> None:
    runners = [None, ScriptedRunner(), ScriptedRunner(lie=True)]
    async with open_cluster(tmp_path, 3, runners=runners) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(30):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--json")
        assert r.exit_code == 1, r.output
        final = json.loads(r.stdout)
        job = final["job"]
        assert final["verdict"] == "DISPUTED" and len(final["groups"]) == 2
        r = await run_cli(home, "fetch", job, "--out", str(tmp_path / "none"))
        assert r.exit_code == 2 and "--group N" in r.stderr
        fetched = {}
        for n in (1, 2):
            r = await run_cli(home, "fetch", job, "--group", str(n), "--out", str(tmp_path / f"g{n}"), "--json")
            assert r.exit_code == 0, r.output
            res = json.loads(r.stdout)
            assert res["digest"] == final["groups"][n - 1]["digest"]
            fetched[n] = (tmp_path / f"g{n}" / "artifact.txt").read_bytes()
        assert fetched[1] != fetched[2] and b"something else" in fetched[1] + fetched[2]
        r = await run_cli(home, "fetch", job, "--group", "3", "--out", str(tmp_path / "g3"))
        assert r.exit_code == 2 and "has 2 group(s)" in r.stderr
        r = await run_cli(home, "show", job)
        assert "group 1  " in r.stdout and "group 2  " in r.stdout

        # jobs --mine: the workers list the job with their part; the observer built nothing
        r = await run_cli(c.nodes[1].paths.home, "jobs", "--mine")
        assert r.exit_code == 0 and job[:12] in r.stdout and r.stdout.splitlines()[0].endswith("MY PART")
        assert r.stdout.splitlines()[1].endswith("  revealed")
        r = await run_cli(c.nodes[1].paths.home, "jobs", "--mine", "--json")
        assert [j["job"] for j in json.loads(r.stdout)] == [job]
        r = await run_cli(home, "jobs", "--mine")
        assert r.exit_code == 0 and r.stdout.strip() == "this node has built no job yet"
