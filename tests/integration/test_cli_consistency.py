"""CLI consistency against in-process nodes (issue 16): one JSON document per command, `--json`
where a command prints data, `fetch` into non-empty directories, `diff` exit codes, `--home` anywhere."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import trio

from p2pci.testing.cluster import ScriptedRunner, open_cluster
from tests.integration.test_daemon_cli import project, run_cli


async def test_publish_wait_json_is_one_document_and_data_commands_speak_json(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(20):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--json")
        assert r.exit_code == 0, r.output
        final = json.loads(r.stdout)  # the whole stdout is one document
        assert final["verdict"] == "REPRODUCED"
        assert f"published {final['job']}" in r.stderr
        job = final["job"]

        r = await run_cli(home, "logs", job, "--json")
        logs = json.loads(r.stdout)
        assert r.exit_code == 0 and logs["job"] == job and logs["logs"]
        assert all("log of a build" in entry["text"] for entry in logs["logs"])

        r = await run_cli(home, "diff", job, "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["differs"] is False

        r = await run_cli(home, "status", "--json")
        status = json.loads(r.stdout)
        assert r.exit_code == 0 and [j["job"] for j in status["jobs"]] == [job]
        assert status["node"]["peer_id"] == c.nodes[0].peer_id

        out = tmp_path / "out"
        r = await run_cli(home, "fetch", job, "--out", str(out), "--json")
        assert r.exit_code == 0, r.output
        fetched = json.loads(r.stdout)
        assert sorted(f["path"] for f in fetched["files"]) == ["artifact.txt", "sub/empty"]

        # a second fetch into the now non-empty directory is refused, nothing is touched
        (out / "artifact.txt").write_text("mine")
        r = await run_cli(home, "fetch", job, "--out", str(out))
        assert r.exit_code == 2 and "is not empty" in r.stderr and "--force" in r.stderr
        assert (out / "artifact.txt").read_text() == "mine"
        r = await run_cli(home, "fetch", job, "--out", str(out), "--force")
        assert r.exit_code == 0, r.output
        assert (out / "artifact.txt").read_text().startswith("built ")

        # a path under a file: a clear error, not an internal NotADirectoryError
        r = await run_cli(home, "fetch", job, "--out", str(out / "artifact.txt" / "x"))
        assert r.exit_code == 2 and "not a directory" in r.stderr and "internal" not in r.stderr

        # --home after the subcommand, and as --home=DIR
        r = await run_cli(tmp_path / "wrong-home", "jobs", "--json", "--home", str(home))
        assert r.exit_code == 0 and [j["job"] for j in json.loads(r.stdout)] == [job]
        r = await run_cli(tmp_path / "wrong-home", "show", f"--home={home}", job[:8])
        assert r.exit_code == 0 and job in r.stdout


async def test_diff_exits_1_when_results_differ(tmp_path: Path) -> None:
    runners = [None, ScriptedRunner(), ScriptedRunner(lie=True)]
    async with open_cluster(tmp_path, 3, runners=runners) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(20):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--json")
        final = json.loads(r.stdout)
        assert (r.exit_code, final["verdict"]) == (1, "DISPUTED")
        r = await run_cli(home, "diff", final["job"], "--json")
        assert r.exit_code == 1
        d = json.loads(r.stdout)
        assert d["differs"] is True and "something else" in d["text"]


async def test_cancel_json(tmp_path: Path) -> None:
    gate = ScriptedRunner(gate=threading.Event())
    async with open_cluster(tmp_path, 2, runners=[None, gate]) as c:
        home = c.nodes[0].paths.home
        r = await run_cli(home, "publish", str(project(tmp_path)), "--json")
        job = json.loads(r.stdout)["job"]
        r = await run_cli(home, "cancel", job, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["verdict"] == "CANCELLED"
        assert gate.gate is not None
        gate.gate.set()


async def test_jobs_table_has_a_header_and_counts_like_the_tui(tmp_path: Path) -> None:
    from p2pci.tui import model as m

    runners = [None, ScriptedRunner(), ScriptedRunner(lie=True)]
    async with open_cluster(tmp_path, 3, runners=runners) as c:
        home = c.nodes[0].paths.home
        with trio.fail_after(20):
            r = await run_cli(home, "publish", str(project(tmp_path)), "--wait")
        assert r.exit_code == 1 and f"why      p2pci diff {c.nodes[0].machine.job_list(c.nodes[0].now())[0]['job'][:12]}" in r.stdout
        r = await run_cli(home, "jobs")
        header, row = r.stdout.splitlines()
        assert header.split() == ["JOB", "PROJECT", "VERDICT", "VOTES", "AGREE", "REPLICAS/QUORUM"]
        cells = row.split()
        assert cells[2:] == ["DISPUTED", "2", "1", "2/2"]
        # the TUI's votes column counts the same
        status = json.loads((await run_cli(home, "status", "--json")).stdout)
        model = m.StatusModel(connected=True)
        assert model.apply_status(status, 0)
        assert [str(j.votes) for j in model.jobs.values()] == [cells[3]]
        assert [str(j.agree) for j in model.jobs.values()] == [cells[4]]
        (job,) = model.jobs.values()
        tui_row = dict(zip(m.JOB_COLUMNS, m.job_row(model, job, 0), strict=True))
        assert (tui_row["votes"], tui_row["agree"], tui_row["verdict"]) == (cells[3], cells[4], cells[2])
        # the other tables have headers too: `peers` (its rows under them)
        r = await run_cli(home, "peers")
        header, *rows = r.stdout.splitlines()
        assert header.split() == ["PEER", "VIA", "ADDRESSES"], r.output
        assert sorted(line.split()[0] for line in rows) == sorted(n.peer_id for n in c.nodes[1:])
        assert all(line.index(line.split()[1]) == header.index("VIA") for line in rows)
