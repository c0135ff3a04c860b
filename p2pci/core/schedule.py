"""When a donor's worker takes new work: `[worker] schedule` time windows (pure; no clock).

A window is ``"HH:MM-HH:MM"`` (local time; the end may be before the start: it wraps past
midnight), optionally after days: ``"mon-fri 19:00-07:00"``, ``"sat,sun 00:00-24:00"``. A window
that wraps belongs to the day it starts on. An empty schedule means always.

    windows = parse_schedule(["mon-fri 19:00-07:00", "sat,sun 00:00-24:00"])
    in_schedule(windows, weekday=0, minute=20 * 60)   # Monday 20:00 -> True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from p2pci.core.errors import LocalError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(?:(?P<days>[a-z,\-]+)\s+)?(?P<h1>\d{1,2}):(?P<m1>\d{2})-(?P<h2>\d{1,2}):(?P<m2>\d{2})$")
MAX_WINDOWS = 64


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minute of the day, 0..1439
    end: int  # minute of the day, 1..1440 (<= start: wraps past midnight)


def _days(text: str | None, raw: str) -> frozenset[int]:
    if text is None:
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        if a not in DAYS or (b and b not in DAYS):
            raise LocalError(f"schedule {raw!r:.60}: days are mon..sun, like mon-fri or sat,sun")
        i, j = DAYS.index(a), DAYS.index(b or a)
        out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    return frozenset(out)


def parse_schedule(entries: list[str] | tuple[str, ...]) -> tuple[Window, ...]:
    """The windows of `[worker] schedule`; LocalError (naming the entry) for a bad one."""
    if len(entries) > MAX_WINDOWS:
        raise LocalError(f"schedule: at most {MAX_WINDOWS} windows")
    out: list[Window] = []
    for raw in entries:
        m = _WINDOW.match(raw.strip().lower()) if isinstance(raw, str) else None
        if m is None:
            raise LocalError(f"schedule {raw!r:.60}: expected \"HH:MM-HH:MM\", optionally after days (\"mon-fri 19:00-07:00\")")
        h1, m1, h2, m2 = (int(m.group(k)) for k in ("h1", "m1", "h2", "m2"))
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise LocalError(f"schedule {raw!r:.60}: not a time of day")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise LocalError(f"schedule {raw!r:.60}: an empty window (use 00:00-24:00 for a whole day)")
        out.append(Window(_days(m.group("days"), raw), start, end))
    return tuple(out)


def in_schedule(windows: tuple[Window, ...], weekday: int, minute: int) -> bool:
    """Is local time (`weekday` 0 = Monday, `minute` of the day) inside a window? Empty: always."""
    if not windows:
        return True
    for w in windows:
        if w.start < w.end:
            if weekday in w.days and w.start <= minute < w.end:
                return True
        else:  # wraps past midnight: the evening of its day, the morning of the next
            if (weekday in w.days and minute >= w.start) or ((weekday - 1) % 7 in w.days and minute < w.end):
                return True
    return False
