"""`publish --wait` progress lines (p2pci.cli.progress): what one new job object adds."""

from __future__ import annotations

import io
from typing import Any

import trio

from p2pci.cli.progress import Progress, changes, status_line, step_line

P1 = "12D3KooWAlphaAlphaAlphaAlphaAlphaAlphaAlphaAlpha02"
P2 = "12D3KooWBravoBravoBravoBravoBravoBravoBravoBravo03"


def obj(verdict: str = "PENDING", workers: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "verdict": verdict,
        "reason": kw.get("reason"),
        "cause": kw.get("cause"),
        "rounds": kw.get("rounds", []),
        "workers": workers or [],
        "deadlines": {"claim_window_end": 1_000, "reveal": 40_000, "offer": 100_000},
    }


def row(peer: str, phase: str, reason: str | None = None, detail: str | None = None) -> dict[str, Any]:
    return {"worker": peer, "phase": phase, "selected": phase != "claimed", "reason": reason, "detail": detail, "log": None}


def test_each_phase_change_is_one_line_and_repeats_are_silent() -> None:
    a = obj(workers=[row(P1, "claimed")])
    assert changes(None, a) == ["worker 12D3KooW…lpha02: claimed"]
    b = obj(workers=[row(P1, "selected"), row(P2, "claimed")], rounds=[{"round": 0, "workers": [P1]}])
    assert changes(a, b) == [
        "round 0: selected 1 worker(s)",
        "worker 12D3KooW…lpha02: selected (building)",
        "worker 12D3KooW…ravo03: claimed",
    ]
    assert changes(b, b) == []


def test_a_decline_shows_its_reason_and_the_verdict_its_cause() -> None:
    a = obj(workers=[row(P1, "selected")])
    b = obj("EXPIRED", [row(P1, "timed_out", "timeout", "timed out after 5s; log tail:\nstep 2")], reason="not enough", cause="1 timed out")
    assert changes(a, b) == [
        "worker 12D3KooW…lpha02: timed out (timeout: timed out after 5s; log tail: step 2)",
        "verdict EXPIRED: not enough (1 timed out)",
    ]


def test_status_line_counts_phases_and_the_next_deadline() -> None:
    o = obj(workers=[row(P1, "committed"), row(P2, "declined", "policy")])
    assert status_line(o, 2_000) == "PENDING · 1 committed · 1 declined · reveal deadline in 38s"
    assert status_line(obj(), 0) == "PENDING · waiting for claims · claim window in 1s"


def test_plain_output_has_no_control_sequences_and_escapes_peer_text() -> None:
    out = io.StringIO()
    p = Progress(out, tty=False)
    p.job(obj(workers=[row(P1, "declined", "image", "evil\x1b[2J")]))
    p.log(P1, "line one\nline\x1b]0;two")
    p.done()
    text = out.getvalue()
    assert "\x1b" not in text and "\\x1b[2J" in text and "\r" not in text
    assert text.splitlines()[-2:] == ["  12D3KooW…lpha02 | line one", "  12D3KooW…lpha02 | line\\x1b]0;two"]


def test_a_terminal_gets_a_rewritten_status_line() -> None:
    out = io.StringIO()
    p = Progress(out, tty=True)
    p.job(obj(workers=[row(P1, "claimed")]))
    p.job(obj(workers=[row(P1, "selected")]))
    p.done()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") >= 2 and "PENDING · 1 selected" in text


def step(step: str, state: str, text: str, ms: int = 0, size: int | None = None) -> dict[str, Any]:
    return {"event": "step", "step": step, "state": state, "text": text, "elapsed_ms": ms, "bytes": size}


def test_daemon_steps_are_lines_and_running_ticks_only_rewrite_the_terminal_status() -> None:
    assert step_line(step("image", "start", "resolving the image busybox")) == "image: resolving the image busybox"
    assert step_line(step("export", "done", "image archive sha256 ab (9 bytes)", 2345)) == (
        "export: image archive sha256 ab (9 bytes) (2.3 s)"
    )
    assert step_line(step("image", "running", "building", 4000)) is None
    assert step_line(step("nonsense", "info", "x\ny")) == "step: x y"  # unknown step: still one line
    plain, tty = io.StringIO(), io.StringIO()
    for out, is_tty in ((plain, False), (tty, True)):
        p = Progress(out, tty=is_tty)
        p.daemon_step(step("image", "start", "building the busybox image"))
        p.daemon_step(step("image", "running", "building the busybox image", 6000))
        p.daemon_step(step("image", "done", "image busybox: sha256:00", 7000))
        p.done()
    assert plain.getvalue().splitlines() == ["image: building the busybox image", "image: image busybox: sha256:00 (7.0 s)"]
    assert "\r" not in plain.getvalue()
    assert "image: building the busybox image … 6.0 s" in tty.getvalue() and "\r\x1b[2K" in tty.getvalue()
    evil = io.StringIO()
    Progress(evil, tty=True).daemon_step(step("image", "running", "x\x1b]0;owned", 1))
    assert "\x1b]" not in evil.getvalue().replace("\r\x1b[2K", "")


async def test_steps_tick_while_a_step_runs_and_stop_when_it_is_done(autojump_clock: trio.abc.Clock) -> None:
    from p2pci.daemon.api import TICK_S, Steps

    got: list[dict[str, Any]] = []
    steps = Steps(got.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(steps.tick)
        steps.event("image", "start", "building")
        await trio.sleep(TICK_S * 2.5)
        steps.event("image", "done", "built")
        await trio.sleep(TICK_S * 3)
        nursery.cancel_scope.cancel()
    assert [(e["state"], e["elapsed_ms"]) for e in got] == [
        ("start", 0), ("running", 2000), ("running", 4000), ("done", 5000)]
    assert all(e["event"] == "step" and e["step"] == "image" for e in got)
    assert Steps(None).emit is None  # a client without progress: nothing is sent


def test_when_every_worker_that_answered_gave_up_it_says_the_job_waits_and_how_to_end_it() -> None:
    one = {**obj(workers=[row(P1, "declined", "policy")]), "job": "ab" * 32}
    two = {**obj(workers=[row(P1, "declined", "policy"), row(P2, "timed_out", "timeout")]), "job": "ab" * 32}
    mixed = {**obj(workers=[row(P1, "declined", "policy"), row(P2, "selected")]), "job": "ab" * 32}

    def hints(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
        return [line for line in changes(before, after) if line.startswith("every worker")]

    assert hints(None, one) == [
        "every worker that answered so far declined or timed out, none is building: the job waits for other "
        f"workers until 1970-01-01 00:01:40 UTC (`p2pci cancel {'ab' * 32}` ends it now)"
    ]
    assert not hints(None, mixed)  # one still builds
    assert hints(mixed, two)  # now all gave up
    assert not hints(one, two)  # said once
    assert not hints(None, {**one, "verdict": "EXPIRED"}) and not hints(None, {**obj(), "job": "ab" * 32})
    assert status_line(two, 0).endswith("none building: waiting for other workers · claim window in 1s")
    assert "none building" not in status_line(mixed, 0)
