"""`publish --wait` progress lines (p2pci.cli.progress): what one new job object adds."""

from __future__ import annotations

import io
from typing import Any

from p2pci.cli.progress import Progress, changes, status_line

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
