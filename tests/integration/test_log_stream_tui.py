"""`p2pci status`: the job detail shows this node's build log as it streams in.

Against the fake control server (lines arriving in several `log` events,
before and after the detail opens), and against a real in-process node whose
build is held open by a gate: its lines must show while it still builds.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import trio
from textual.pilot import Pilot
from textual.widgets import RichLog, Static

from p2pci.daemon.testing import ScriptedRunner, open_cluster
from p2pci.tui.app import JobScreen, StatusApp
from tests.integration.test_tui import J1, J2, emit, row_keys, run_scenario, start_fake, static_text, until
from tests.integration.test_tui_helpers import PEER_ME, job_obj, status_obj


def log_text(screen: JobScreen) -> list[str]:
    return [str(line.text) for line in screen.query_one("#log", RichLog).lines]


async def test_detail_pane_shows_streamed_lines_in_order(tmp_path: Path) -> None:
    status = status_obj([job_obj(J1, "PENDING"), job_obj(J2, "PENDING", created=1)])
    status["node"]["building"] = [{"job": J1, "project": "hello-c", "started": 1}]
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status)

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: len(row_keys(app)) == 2, "two rows")
            trio.from_thread.run(server.wait_subscribers)
            # output that streamed before the detail was opened is kept by the model
            emit(server, {"event": "log", "job": J1, "worker": PEER_ME, "text": "step 1\nstep 2\n"})
            await until(pilot, lambda: len(app.model.logs.get(J1, ())) == 2, "the early lines in the model")
            assert app.selected_job() == J1
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            screen = app.screen
            assert isinstance(screen, JobScreen)
            assert "this node: building" in static_text(screen.query_one("#detail", Static))
            await until(pilot, lambda: log_text(screen) == ["step 1", "step 2"], "the early lines")
            for i in range(3, 8):
                emit(server, {"event": "log", "job": J1, "worker": PEER_ME, "text": f"step {i}\n"})
            emit(server, {"event": "log", "job": J2, "worker": PEER_ME, "text": "another job\n"})
            emit(server, {"event": "log", "job": J1, "worker": PEER_ME, "text": "step 8\nstep 9\n"})
            want = [f"step {i}" for i in range(1, 10)]
            await until(pilot, lambda: log_text(screen) == want, "every streamed line, in order")
            assert "another job" not in log_text(screen)

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


async def test_detail_pane_streams_a_real_build_while_it_runs(tmp_path: Path) -> None:
    gate = threading.Event()
    runner = ScriptedRunner(gate=gate, log_lines=("configure: ok", "compile: hello.c"))
    async with open_cluster(tmp_path, 2, runners=[None, runner]) as c:
        builder = c.nodes[1]
        jobs: list[str] = []

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: app.model.connected and app.model.node is not None, "the node snapshot")
            jobs.append(trio.from_thread.run(
                lambda: c.publish(c.nodes[0], replicas=1, quorum=1, workers=[builder.peer_id])))
            job = jobs[0]
            await until(pilot, lambda: job in row_keys(app), "the job row", within=20)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail view")
            screen = app.screen
            assert isinstance(screen, JobScreen)
            await until(pilot, lambda: "compile: hello.c" in log_text(screen), "the streamed lines", within=20)
            assert not gate.is_set() and bytes.fromhex(job) in builder.machine.building  # still building
            gate.set()
            await until(pilot, lambda: any(t.startswith("log of a build of") for t in log_text(screen)),
                        "the last line, after the gate", within=20)
            assert log_text(screen).count("configure: ok") == 1

        def in_thread() -> None:
            async def main() -> None:
                app = StatusApp(builder.paths.control)
                async with app.run_test(size=(140, 45)) as pilot:
                    await scenario(app, pilot)
                    await pilot.press("q")

            asyncio.run(main())

        try:
            with trio.fail_after(90):
                await trio.to_thread.run_sync(in_thread, abandon_on_cancel=True)
        finally:
            gate.set()
        assert jobs
