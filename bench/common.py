"""Small helpers shared by the benchmark parts: percentiles, /proc sampling, the table."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

Results = dict[str, Any]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# Monotonic time by which the whole run must be over (set by bench.__main__):
# `make bench` must finish in 10 minutes, `make bench-quick` in 2.
DEADLINE: float | None = None


def budget(seconds: float) -> float:
    """A part's own time budget, cut to what is left of the run's (at least 10 s)."""
    if DEADLINE is None:
        return seconds
    return max(10.0, min(seconds, DEADLINE - time.monotonic() - 5.0))


def pct(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0..100), nearest-rank on sorted values; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))
    return xs[k]


def rnd(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def log(msg: str) -> None:
    """Progress goes to stderr so that the table on stdout stays clean."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        data = fh.read()
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine() -> dict[str, Any]:
    """A short description of the machine for the notes."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) // 1024
    except OSError:
        pass
    return {
        "machine_cpu": model,
        "machine_cores": os.cpu_count(),
        "machine_mem_mb": mem,
        "machine_kernel": os.uname().release,
        "machine_python": sys.version.split()[0],
        "machine_loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)
