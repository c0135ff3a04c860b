"""`p2pci status` against a fake control server (a real trio unix socket).

Textual runs on asyncio, so each scenario runs `App.run_test()` inside
`asyncio.run` in a worker thread while the trio test hosts the fake daemon;
the scenario drives the fake daemon with `trio.from_thread.run`. Waiting is
always "poll a condition under a timeout", never a bare sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from click.testing import CliRunner
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog, Static

from p2pci.cli.status_cmd import status_command
from p2pci.tui.app import JobScreen, StatusApp
from tests.integration.test_tui_helpers import (
    PEER_A,
    PEER_B,
    PEER_C,
    PEER_ME,
    FakeControl,
    job_obj,
    status_obj,
)

NOW = 1_700_000_100_000
J1 = "a1" * 32
J2 = "b2" * 32
J3 = "c3" * 32

Scenario = Callable[[StatusApp, Pilot[int]], Awaitable[None]]


async def until(pilot: Pilot[int], cond: Callable[[], bool], what: str, within: float = 10.0) -> None:
    try:
        async with asyncio.timeout(within):
            while not cond():
                await pilot.pause(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def run_scenario(sock: Path, scenario: Scenario, within: float = 60.0) -> None:
    def in_thread() -> None:
        async def main() -> None:
            app = StatusApp(sock, clock=lambda: NOW)
            async with app.run_test(size=(120, 40)) as pilot:
                await scenario(app, pilot)
                await pilot.press("q")

        asyncio.run(main())

    with trio.fail_after(within):
        await trio.to_thread.run_sync(in_thread, abandon_on_cancel=True)


def emit(server: FakeControl, event: dict[str, Any]) -> None:
    trio.from_thread.run(server.emit, event)


def jobs_table(app: StatusApp) -> DataTable[Any]:
    return app.query_one("#jobs", DataTable)


def row_keys(app: StatusApp) -> list[str | None]:
    return [k.value for k in jobs_table(app).rows]


def verdict_cell(app: StatusApp, job: str) -> Text:
    cell = jobs_table(app).get_cell(job, "verdict")
    assert isinstance(cell, Text)
    return cell


def static_text(widget: Static) -> str:
    return str(widget.render())


async def start_fake(nursery: trio.Nursery, tmp_path: Path, status: dict[str, Any] | None = None) -> FakeControl:
    server = FakeControl(tmp_path / "control.sock", status)
    await nursery.start(server.run)
    return server


async def test_rows_appear_when_events_arrive_and_verdicts_are_coloured(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status_obj([job_obj(J1, "PENDING")]))

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: row_keys(app) == [J1], "the job from the status snapshot")
            assert verdict_cell(app, J1).style == "yellow"
            node = static_text(app.query_one("#node", Static))
            assert PEER_ME in node and "1 busy / 1 free" in node
            trio.from_thread.run(server.wait_subscribers)
            emit(server, {"event": "job", "job": job_obj(J2, "DISPUTED", created=NOW - 5_000)})
            await until(pilot, lambda: J2 in row_keys(app), "a new job row from a job event")
            assert row_keys(app)[0] == J2  # newest first
            assert verdict_cell(app, J2).style == "red"
            groups = [{"digest": "d0" * 32, "exit_code": 0, "workers": [PEER_A, PEER_B]}]
            emit(server, {"event": "job", "job": job_obj(J1, "REPRODUCED", groups=groups, digest="d0" * 32)})
            await until(pilot, lambda: verdict_cell(app, J1).plain == "REPRODUCED", "the verdict update")
            assert verdict_cell(app, J1).style == "green"
            assert jobs_table(app).get_cell(J1, "votes") == "2"
            for job, verdict, style in ((J3, "EXPIRED", "grey50"), ("d4" * 32, "FAILED", "red")):
                emit(server, {"event": "job", "job": job_obj(job, verdict)})
                await until(pilot, lambda job=job: job in row_keys(app), f"{verdict} row")  # type: ignore[misc]
                assert verdict_cell(app, job).style == style
            emit(server, {"event": "peers", "peers": [{"peer_id": PEER_B, "addrs": [], "connected_since": NOW}]})
            peers = app.query_one("#peers", DataTable)
            await until(pilot, lambda: [k.value for k in peers.rows] == [PEER_B], "the peers event")

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


async def test_enter_opens_detail_with_groups_ignored_votes_and_live_log(tmp_path: Path) -> None:
    groups = [
        {"digest": "d0" * 32, "exit_code": 0, "workers": [PEER_A, PEER_ME]},
        {"digest": "e1" * 32, "exit_code": 0, "workers": [PEER_B]},
    ]
    job = job_obj(
        J1,
        "REPRODUCED",
        groups=groups,
        digest="d0" * 32,
        dissenters=[PEER_B],
        equivocators=[PEER_C],
        ignored=[{"worker": PEER_C, "reason": "equivocated: two different reveals"}],
    )
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status_obj([job, job_obj(J2, "PENDING")]))  # newest first
        server.logs[J1] = "full log line 1\nfull log line 2\n"

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: len(row_keys(app)) == 2, "two rows")
            trio.from_thread.run(server.wait_subscribers)
            await pilot.press("j")  # J2 is older (the daemon lists newest first), so second; then back up
            assert app.selected_job() == J2
            await pilot.press("k")
            assert app.selected_job() == J1
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            screen = app.screen
            assert isinstance(screen, JobScreen) and screen.job_id == J1
            detail = static_text(screen.query_one("#detail", Static))
            for needle in (J1, "REPRODUCED", "d0d0d0d0", "e1e1e1e1", PEER_A, "dissenters", PEER_B,
                           "equivocators", "equivocated: two different reveals", "this node: built and voted"):
                assert needle in detail, needle
            log = screen.query_one("#log", RichLog)
            emit(server, {"event": "log", "job": J1, "worker": PEER_ME, "text": "cc -O2 hello.c\nlinking\n"})
            await until(pilot, lambda: any("linking" in str(line.text) for line in log.lines), "the live log tail")
            await pilot.press("l")
            await until(pilot, lambda: any("full log line 2" in str(line.text) for line in log.lines),
                        "the log fetched with `l`")
            emit(server, {"event": "job", "job": {**job, "verdict": "DISPUTED", "digest": None}})
            await until(pilot, lambda: "DISPUTED" in static_text(screen.query_one("#detail", Static)),
                        "the detail follows job events")
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, JobScreen), "back to the list")

        await run_scenario(server.path, scenario)
        assert "logs" in server.requests
        nursery.cancel_scope.cancel()


async def test_filter_cycles_by_verdict(tmp_path: Path) -> None:
    jobs = [job_obj(J1, "PENDING", created=3), job_obj(J2, "REPRODUCED", created=2), job_obj(J3, "FAILED", created=1)]
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status_obj(jobs))

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: len(row_keys(app)) == 3, "three rows")
            await pilot.press("f")
            assert row_keys(app) == [J1] and app.model.filter == "PENDING"
            await pilot.press("f")
            assert row_keys(app) == [J2] and app.model.filter == "REPRODUCED"
            await pilot.press("f")
            assert row_keys(app) == [J3] and app.model.filter == "FAILED"
            for _ in range(4):
                await pilot.press("f")
            assert app.model.filter is None and row_keys(app) == [J1, J2, J3]

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


async def test_hostile_frames_are_dropped_and_counted(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path)

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: app.model.connected, "connection")
            trio.from_thread.run(server.wait_subscribers)
            trio.from_thread.run(server.emit_garbage)
            emit(server, {"event": "job", "job": job_obj(J1, "PENDING")})
            await until(pilot, lambda: row_keys(app) == [J1], "a good job after the garbage")
            assert app.model.bad_frames == 4
            assert app.model.connected

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


async def test_lost_connection_shows_retrying_then_recovers(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path)

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            conn = app.query_one("#conn", Static)
            await until(pilot, lambda: app.model.connected, "connection")
            trio.from_thread.run(server.wait_subscribers)
            server.accepting = False  # plain attribute: the trio side reads it on the next accept
            trio.from_thread.run(server.kick)
            await until(pilot, lambda: "disconnected, retrying" in static_text(conn), "the disconnected banner")
            server.status = status_obj([job_obj(J2, "REPRODUCED")])
            server.accepting = True
            await until(pilot, lambda: app.model.connected and J2 in row_keys(app), "reconnection", within=20)
            assert "connected to" in static_text(conn)

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


async def test_status_once_prints_a_plain_snapshot(tmp_path: Path) -> None:
    groups = [{"digest": "d0" * 32, "exit_code": 0, "workers": [PEER_A, PEER_B]}]
    async with trio.open_nursery() as nursery:
        await start_fake(nursery, tmp_path, status_obj([job_obj(J1, "REPRODUCED", groups=groups)]))
        runner = CliRunner()
        results = []
        for args in (["--once"], []):  # without a terminal, plain `status` prints the snapshot too
            results.append(await trio.to_thread.run_sync(
                lambda args=args: runner.invoke(status_command, args, env={"P2PCI_HOME": str(tmp_path)})
            ))
        nursery.cancel_scope.cancel()
    for result in results:
        assert result.exit_code == 0, result.output
        out = result.output
        assert PEER_ME in out and "== peers (1)" in out and "== jobs (1)" in out
        row = next(line for line in out.splitlines() if line.startswith("hello-c"))
        assert J1[:12] in row and "3/2" in row and row.endswith("REPRODUCED") and " 2 " in row


def test_status_without_daemon_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["--once"], []):
        result = runner.invoke(status_command, args, env={"P2PCI_HOME": str(tmp_path)})
        assert result.exit_code == 2
        assert "no daemon running" in result.output
        assert "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit) and result.exception.code == 2


async def test_status_gives_up_on_a_daemon_that_never_answers(tmp_path: Path, monkeypatch: Any) -> None:
    import p2pci.cli.status_cmd as status_mod

    monkeypatch.setattr(status_mod, "STATUS_TIMEOUT_S", 0.3)
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path)
        server.mute = True
        runner = CliRunner()
        with trio.fail_after(20):
            result = await trio.to_thread.run_sync(
                lambda: runner.invoke(status_command, ["--once"], env={"P2PCI_HOME": str(tmp_path)})
            )
        nursery.cancel_scope.cancel()
    assert result.exit_code == 2 and "did not answer" in result.output


async def test_detail_shows_worker_phases_and_the_expired_cause(tmp_path: Path) -> None:
    """Issue 16: the detail view lists each worker's phase (a decline with its reason, a timeout)
    and why an EXPIRED job expired."""
    workers = [
        {"worker": PEER_A, "phase": "revealed", "selected": True, "reason": None, "detail": None, "log": None},
        {"worker": PEER_B, "phase": "timed_out", "selected": True, "reason": "timeout",
         "detail": "timed out after 5s; log tail:\nstill linking", "log": "ab" * 32},
        {"worker": PEER_C, "phase": "declined", "selected": False, "reason": "policy",
         "detail": "timeout 7200s exceeds 3600s\x1b[2J", "log": None},
    ]
    job = job_obj(J1, "EXPIRED", reason="not enough agreeing votes by the deadline",
                  cause="2 declined: 1 policy, 1 timeout; 1 timed out", workers=workers)
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status_obj([job]))

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: len(row_keys(app)) == 1, "one row")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            detail = static_text(app.screen.query_one("#detail", Static))
            for needle in ("expired:  not enough agreeing votes by the deadline",
                           "cause:    2 declined: 1 policy, 1 timeout; 1 timed out",
                           "revealed", "timed out (timeout: timed out after 5s; log tail: still linking)",
                           "declined (policy: timeout 7200s exceeds 3600s\\x1b[2J)"):
                assert needle in detail, (needle, detail)
            assert "\x1b" not in detail

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


def footer_line(app: StatusApp) -> str:
    """The footer as drawn: the last line of the screen's SVG export."""
    from tests.integration.test_tui_snapshot import svg_grid

    return svg_grid(app.export_screenshot())[0][-1]


async def test_footer_lists_enter_the_arrows_and_the_detail_keys(tmp_path: Path) -> None:
    """Issue 16: the footer names every key: Enter and the arrows (j/k too) on the list, the
    scroll keys and Esc in the detail; and the arrows it names really move the cursor."""
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status_obj([job_obj(J1, created=2), job_obj(J2, created=1)]))

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: len(row_keys(app)) == 2, "two rows")
            await until(pilot, lambda: "Quit" in footer_line(app), "the footer drawn")
            footer = footer_line(app)
            for needle in ("↑↓ Move", "Enter Detail", "f Filter", "l Logs", "q Quit"):
                assert needle in footer, (needle, footer)
            assert app.selected_job() == J1
            await pilot.press("down")
            assert app.selected_job() == J2
            await pilot.press("up")
            assert app.selected_job() == J1
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            await until(pilot, lambda: "Back" in footer_line(app), "the detail's footer drawn")
            footer = footer_line(app)
            for needle in ("↑ ↓ PgUp PgDn Scroll", "Esc Back", "l Logs", "q Quit"):
                assert needle in footer, (needle, footer)
            assert "Filter" not in footer and "Enter" not in footer  # list-only keys are off here

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()


async def test_log_pane_is_hidden_on_a_node_that_never_builds_until_l_brings_a_log(tmp_path: Path) -> None:
    """Issue 16: a `--no-build` node (slots 0) never streams a build log, so its detail shows no
    empty log pane; `l` fetches the revealed logs and the pane appears with them. A building node
    keeps the pane (its own builds stream into it)."""
    observer = status_obj([job_obj(J1, "REPRODUCED")])
    observer["node"].update(slots=0, busy=0)
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, observer)
        server.logs[J1] = "revealed log line\n"

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: row_keys(app) == [J1], "the row")
            assert "observer, never builds" in static_text(app.query_one("#node", Static))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            log = app.screen.query_one("#log", RichLog)
            assert log.display is False
            await pilot.press("l")
            await until(pilot, lambda: log.display is True, "the log pane shown by `l`")
            await until(pilot, lambda: any("revealed log line" in str(line.text) for line in log.lines),
                        "the log fetched with `l`")
            assert "revealed logs" in str(log.border_title)

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        (tmp_path / "builder").mkdir()
        server = await start_fake(nursery, tmp_path / "builder", status_obj([job_obj(J1, "PENDING")]))

        async def builder(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: row_keys(app) == [J1], "the row")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            assert app.screen.query_one("#log", RichLog).display is True

        await run_scenario(server.path, builder)
        nursery.cancel_scope.cancel()


async def test_detail_lists_select_rounds_ignored_selects_phases_deadlines_and_completeness(tmp_path: Path) -> None:
    """Issues 13 and 16: the detail lists the workers each select round named, the select facts
    that were not counted and why, every worker's phase (this node's own as "building" while it
    builds), the deadlines relative to now, and whether this node holds every reveal the verdict
    needs; a later job event (the missing reveal) makes the evidence complete."""
    from tests.integration.test_tui_helpers import deadlines_obj, round_obj, worker_row

    created = NOW - 60_000
    workers = [
        worker_row(PEER_A, "committed"),
        worker_row(PEER_B, "dropped"),
        worker_row(PEER_C, "claimed", selected=False),
        worker_row(PEER_ME, "selected"),
    ]
    job = job_obj(
        J1, "PENDING", created=created, workers=workers,
        rounds=[round_obj(0, [PEER_A, PEER_B], created=created + 2_000),
                round_obj(1, [PEER_A, PEER_ME], created=created + 30_000)],
        ignored_selects=[{"select": "77" * 32, "round": 0, "signer": PEER_C,
                          "reason": "signed by someone other than the publisher"}],
        missing=[PEER_A, PEER_ME], deadlines=deadlines_obj(created),
    )  # fmt: skip
    status = status_obj([job])
    status["node"]["building"] = [{"job": J1, "project": "hello-c", "started": NOW - 20_000}]
    async with trio.open_nursery() as nursery:
        server = await start_fake(nursery, tmp_path, status)

        async def scenario(app: StatusApp, pilot: Pilot[int]) -> None:
            await until(pilot, lambda: row_keys(app) == [J1], "the row")
            assert jobs_table(app).get_cell(J1, "age") == "1m00s"  # from the offer's `created`
            trio.from_thread.run(server.wait_subscribers)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the detail screen")
            detail = static_text(app.screen.query_one("#detail", Static))
            lines = detail.splitlines()
            r0 = lines.index("  round 0 at 22:14:02 UTC: selected 2")
            assert lines[r0 + 1:r0 + 3] == [f"      {PEER_A}", f"      {PEER_B}"]
            r1 = lines.index("  round 1 at 22:14:30 UTC: selected 2")
            assert lines[r1 + 1:r1 + 3] == [f"      {PEER_A}", f"      {PEER_ME}"]
            for needle in (
                "ignored select (round 0) by 12D3KooWCh…Char04: signed by someone other than the publisher",
                "12D3KooWAl…lpha02  committed", "12D3KooWBr…ravo03  dropped by a later round",
                "12D3KooWCh…Char04  claimed", "12D3KooWMe…MeMe01  building (this node)",
                "claim window ends 22:14:02 UTC (58s ago)", "reveal by         22:15:30 UTC (in 30s)",
                "deadline          23:14:00 UTC (in 59m00s)",
                "evidence: waiting for 2 reveal(s) of selected workers",
            ):
                assert needle in detail, (needle, detail)
            assert "expired:" not in detail and "cause:" not in detail
            # the reveals arrive: the job is final, nothing is missing
            done = {**job, "verdict": "REPRODUCED", "digest": "d0" * 32, "missing": [],
                    "groups": [{"digest": "d0" * 32, "exit_code": 0, "workers": [PEER_A, PEER_ME]}],
                    "workers": [worker_row(PEER_A, "revealed"), worker_row(PEER_ME, "revealed")]}
            emit(server, {"event": "job", "job": done})
            await until(pilot, lambda: "evidence: complete" in static_text(app.screen.query_one("#detail", Static)),
                        "the evidence complete")
            emit(server, {"event": "job", "job": {**done, "verdict": "EXPIRED", "missing": [PEER_ME]}})
            await until(pilot, lambda: "evidence: incomplete: missing 1 reveal(s)"
                        in static_text(app.screen.query_one("#detail", Static)), "the evidence incomplete")

        await run_scenario(server.path, scenario)
        nursery.cancel_scope.cancel()
