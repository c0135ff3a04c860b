"""daysuntil: how long until a date, in years, months and days."""

from __future__ import annotations

import sys
from datetime import date

from dateutil.parser import isoparse
from dateutil.relativedelta import relativedelta


def until(start: date, end: date) -> str:
    d = relativedelta(end, start)
    parts = [f"{n} {unit}{'' if abs(n) == 1 else 's'}" for n, unit in ((d.years, "year"), (d.months, "month"), (d.days, "day")) if n]
    return ", ".join(parts) or "today"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: daysuntil END [START]   (ISO dates, START defaults to today)", file=sys.stderr)
        return 2
    end = isoparse(args[0]).date()
    start = isoparse(args[1]).date() if len(args) == 2 else date.today()
    print(until(start, end))
    return 0
