"""What `publish --wait` shows while a job runs: each step, per-worker phases, live log lines.

`changes(before, after)` is pure (the lines that one new job object adds, tested alone);
`step_line(ev)` too (the line of one of the daemon's `step` events: image build, export, offer);
`Progress` writes them to stderr: plain lines when stderr is not a terminal, and on a
terminal also a one-line status (claims, selected, committed, revealed, declined, time to the
deadline) that is rewritten in place. Every text from a peer goes through `safe_text`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from p2pci.textsafe import safe_text

PHASE_WORDS = {
    "claimed": "claimed",
    "selected": "selected (building)",
    "dropped": "dropped by a later round",
    "committed": "committed",
    "revealed": "revealed",
    "declined": "declined",
    "timed_out": "timed out",
}
DETAIL_SHOWN = 300  # chars of a decline's detail in a progress line


def short(peer: str) -> str:
    return peer[:8] + "…" + peer[-6:] if len(peer) > 16 else peer


def _rows(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not obj:
        return {}
    return {str(w.get("worker")): w for w in obj.get("workers") or [] if isinstance(w, dict)}


def worker_line(w: dict[str, Any]) -> str:
    """One worker's phase, with the decline's reason and detail (one line, bounded)."""
    text = f"worker {short(str(w['worker']))}: {PHASE_WORDS.get(str(w.get('phase')), str(w.get('phase')))}"
    if w.get("reason"):
        detail = " ".join(str(w.get("detail") or "").split())[:DETAIL_SHOWN]
        text += f" ({w['reason']}" + (f": {detail}" if detail else "") + ")"
    if w.get("log"):
        text += f"  log {str(w['log'])[:16]}"
    return text


GAVE_UP = frozenset({"declined", "timed_out"})


def all_gave_up(obj: dict[str, Any] | None) -> bool:
    """A PENDING job whose every worker that answered declined or timed out (docs/protocol.md
    section 5: it still waits for late claims until its deadline, unless the publisher cancels)."""
    if not obj or obj.get("verdict") != "PENDING":
        return False
    rows = _rows(obj)
    return bool(rows) and all(
        w.get("phase") in GAVE_UP for w in rows.values()
    )


def _utc(ms: Any) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        return "its deadline"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms // 1000))


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """The progress lines a new job object adds to the previous one (rounds, phases, verdict)."""
    out: list[str] = []
    old_rounds = len((before or {}).get("rounds") or [])
    for r in (after.get("rounds") or [])[old_rounds:]:
        out.append(f"round {r['round']}: selected {len(r['workers'])} worker(s)")
    old = _rows(before)
    for peer, w in sorted(_rows(after).items()):
        prev = old.get(peer)
        if prev is None or prev.get("phase") != w.get("phase"):
            out.append(worker_line(w))
    if all_gave_up(after) and not all_gave_up(before):
        out.append(
            "every worker that answered so far declined or timed out, none is building: the job waits for "
            f"other workers until {_utc((after.get('deadlines') or {}).get('offer'))} "
            f"(`p2pci cancel {str(after.get('job', 'JOB'))[:64]}` ends it now)"
        )
    if after.get("verdict") != (before or {}).get("verdict") and after.get("verdict") != "PENDING":
        line = f"verdict {after['verdict']}"
        if after.get("reason"):
            line += f": {after['reason']}"
        if after.get("cause"):
            line += f" ({after['cause']})"
        out.append(line)
    return out


STEP_WORDS = {"image": "image", "export": "export", "offer": "offer"}


def _seconds(ev: dict[str, Any]) -> str:
    ms = ev.get("elapsed_ms")
    return f"{ms / 1000:.1f} s" if isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0 else "?"


def step_line(ev: dict[str, Any]) -> str | None:
    """The plain line of a daemon `step` event (None for `running`: the tty status shows those)."""
    state, text = ev.get("state"), " ".join(str(ev.get("text") or "").split())[:DETAIL_SHOWN]
    name = STEP_WORDS.get(str(ev.get("step")), "step")
    if state == "running":
        return None
    if state == "done":
        return f"{name}: {text} ({_seconds(ev)})"
    return f"{name}: {text}"


def status_line(obj: dict[str, Any], now_ms: int) -> str:
    """Counts per phase and the time left to the next deadline (for the in-place status)."""
    counts: dict[str, int] = {}
    for w in _rows(obj).values():
        counts[str(w.get("phase"))] = counts.get(str(w.get("phase")), 0) + 1
    parts = [f"{counts[p]} {PHASE_WORDS[p].split(' ')[0]}" for p in PHASE_WORDS if counts.get(p)]
    dl = obj.get("deadlines") or {}
    left = ""
    for name, label in (("claim_window_end", "claim window"), ("reveal", "reveal deadline"), ("offer", "deadline")):
        t = dl.get(name)
        if isinstance(t, int) and t > now_ms:
            left = f"{label} in {(t - now_ms) // 1000}s"
            break
    if all_gave_up(obj):
        parts.append("none building: waiting for other workers")
    return " · ".join([obj.get("verdict", "PENDING"), *(parts or ["waiting for claims"]), *([left] if left else [])])


class Progress:
    """Writes progress lines to `out` (stderr); a rewritten status line when `out` is a terminal."""

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.last: dict[str, Any] | None = None
        self._status = False

    def step(self, text: str) -> None:
        self._line(text)

    def job(self, obj: dict[str, Any]) -> None:
        for line in changes(self.last, obj):
            self._line(line)
        self.last = obj
        if self.tty and obj.get("verdict") == "PENDING":
            self._clear()
            self.out.write(safe_text(status_line(obj, int(time.time() * 1000)))[:200])
            self.out.flush()
            self._status = True

    def daemon_step(self, ev: dict[str, Any]) -> None:
        """One of the daemon's `step` events: a line; `running` rewrites the status on a terminal."""
        line = step_line(ev)
        if line is not None:
            self._line(line)
            return
        if self.tty:
            text = " ".join(str(ev.get("text") or "").split())[:120]
            self._clear()
            self.out.write(safe_text(f"{STEP_WORDS.get(str(ev.get('step')), 'step')}: {text} … {_seconds(ev)}")[:200])
            self.out.flush()
            self._status = True

    def log(self, worker: str, text: str) -> None:
        for line in text.splitlines()[-20:]:
            self._line(f"  {short(worker)} | {line}")

    def done(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._status:
            self.out.write("\r\x1b[2K")
            self._status = False

    def _line(self, text: str) -> None:
        self._clear()
        self.out.write(safe_text(text) + "\n")
        self.out.flush()


class MintProgress:
    """What `p2pci init` shows while it mints the identity proof (on stderr, never stdout).

    On a terminal: a bar rewritten in place, the hashes tried against the expected 2**bits
    (the count is geometric: it may run past 100%), and the rate. Otherwise a plain line at
    most every `every_s` seconds. `__call__(tries)` is `core.identity.mint`'s progress hook.
    """

    WIDTH = 30

    def __init__(self, bits: int, out: TextIO | None = None, *, tty: bool | None = None, every_s: float = 5.0) -> None:
        self.bits = bits
        self.out = out if out is not None else sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.every_s = every_s
        self.t0 = time.monotonic()
        self.last = self.t0
        self.expected = 1 << bits

    def start(self) -> None:
        self.out.write(f"minting the identity proof ({self.bits} bits, about {self.expected:,} hashes)…\n")
        self.out.flush()

    def line(self, tries: int) -> str:
        el = max(time.monotonic() - self.t0, 1e-9)
        rate = tries / el
        pct = 100.0 * tries / self.expected
        if self.tty:
            fill = min(self.WIDTH, int(self.WIDTH * tries / self.expected))
            bar = "#" * fill + "-" * (self.WIDTH - fill)
            return f"identity [{bar}] {pct:5.1f}% of expected · {rate / 1e6:.2f} M hashes/s · {el:.0f}s"
        return f"identity: {tries:,} hashes ({pct:.0f}% of expected), {rate / 1e6:.2f} M/s, {el:.0f}s"

    def __call__(self, tries: int) -> None:
        now = time.monotonic()
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line(tries))
            self.out.flush()
        elif now - self.last >= self.every_s:
            self.out.write(self.line(tries) + "\n")
            self.out.flush()
            self.last = now

    def done(self, bits: int, seconds: float) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K")
        self.out.write(f"identity proof: {bits} bits in {seconds:.1f}s\n")
        self.out.flush()
