"""`p2pci status` against real in-process daemons (Node + MemoryNetwork + scripted runner).

The TUI connects to node 0's real control socket; a job published on the
cluster must appear, change verdict and open in the detail view through the
daemon's own subscription events.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trio
from textual.pilot import Pilot
from textual.widgets import RichLog, Static

from p2pci.tui.app import JobScreen, StatusApp
from tests.integration.test_tui import jobs_table, row_keys, until, verdict_cell

testing = pytest.importorskip("p2pci.testing.cluster")


async def test_tui_follows_a_real_node(tmp_path: Path) -> None:
    runners = [None, testing.ScriptedRunner(), testing.ScriptedRunner(), testing.ScriptedRunner(lie=True)]
    async with testing.open_cluster(tmp_path, 4, runners=runners) as cluster:
        observer = cluster.nodes[0]
        sock = observer.paths.control
        jobs: list[str] = []
        # a job finished before the TUI opens: its age comes from the offer's `created`, not "-"
        before = await cluster.publish(observer, replicas=3, quorum=2, project="before")
        await cluster.wait_verdict(before, [observer])

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: app.model.connected and app.model.node is not None, "the node snapshot")
            assert app.model.node is not None and app.model.node.peer_id == observer.peer_id
            await until(pilot, lambda: len(app.model.peers) == 3, "three peers")
            await until(pilot, lambda: before in row_keys(app), "the job from before the TUI opened")
            assert before not in app.model.first_seen  # from the snapshot, not a live event
            assert jobs_table(app).get_cell(before, "age") != "-"
            jobs.append(trio.from_thread.run(lambda: cluster.publish(observer, replicas=3, quorum=2)))
            job = jobs[0]
            await until(pilot, lambda: job in row_keys(app), "the published job's row", within=20)
            await until(pilot, lambda: verdict_cell(app, job).plain == "REPRODUCED", "REPRODUCED", within=30)
            assert verdict_cell(app, job).style == "green"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail view")
            detail = str(app.screen.query_one("#detail", Static).render())
            liar = cluster.nodes[3].peer_id
            await until(pilot, lambda: liar in str(app.screen.query_one("#detail", Static).render()),
                        "the dissenter in the detail", within=20)
            assert "groups (by result digest)" in detail
            # the daemon's own rounds, phases and deadlines (issues 13 and 16)
            assert "  round 0 at " in detail and "revealed" in detail and "reveal by " in detail, detail
            await until(pilot, lambda: "evidence: complete" in str(app.screen.query_one("#detail", Static).render()),
                        "every selected worker's reveal here", within=20)
            await pilot.press("q")

        def in_thread() -> None:
            async def main() -> None:
                app = StatusApp(sock)
                async with app.run_test(size=(140, 45)) as pilot:
                    await scenario(app, pilot)

            asyncio.run(main())

        with trio.fail_after(90):
            await trio.to_thread.run_sync(in_thread, abandon_on_cancel=True)
        assert jobs


async def test_tui_shows_a_real_expired_job_with_its_cause_and_each_decline(tmp_path: Path) -> None:
    """Issue 16 on real in-process daemons: both workers' policy refuses the offer (memory), the job
    ends EXPIRED at its deadline, and the observer's TUI shows the verdict's reason and cause and
    each worker's decline with the limit it names."""
    from p2pci.config import WorkerSettings

    strict = WorkerSettings(slots=2, max_memory_mb=32)  # the offer asks for 64 MB
    runners = [None, testing.ScriptedRunner(), testing.ScriptedRunner()]
    async with testing.open_cluster(tmp_path, 3, runners=runners, worker=strict) as cluster:
        observer = cluster.nodes[0]
        jobs: list[str] = []

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: app.model.connected and len(app.model.peers) == 2, "two peers")
            limits = {"timeout_s": 1, "memory_mb": 64, "cpus": 1, "pids": 64, "out_mb": 1}  # deadline in ~10 s
            jobs.append(trio.from_thread.run(lambda: cluster.publish(observer, replicas=2, quorum=2, limits=limits)))
            job = jobs[0]
            await until(pilot, lambda: job in row_keys(app), "the job's row", within=20)
            await until(pilot, lambda: verdict_cell(app, job).plain == "EXPIRED", "EXPIRED", within=40)
            assert verdict_cell(app, job).style == "grey50"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail view")

            def detail() -> str:
                return str(app.screen.query_one("#detail", Static).render())

            await until(pilot, lambda: detail().count("declined (policy: memory 64 MB exceeds 32 MB)") == 2,
                        "both declines", within=20)
            text = detail()
            assert "expired:  the publisher never selected workers" in text, text
            assert "cause:    no eligible worker claimed the job; 2 declined: 2 policy" in text, text
            assert "evidence: incomplete (no valid select round" in text
            assert app.screen.query_one("#log", RichLog).display is False  # node 0 never builds
            await pilot.press("q")

        def in_thread() -> None:
            async def main() -> None:
                app = StatusApp(observer.paths.control)
                async with app.run_test(size=(140, 50)) as pilot:
                    await scenario(app, pilot)

            asyncio.run(main())

        with trio.fail_after(90):
            await trio.to_thread.run_sync(in_thread, abandon_on_cancel=True)
        assert jobs
