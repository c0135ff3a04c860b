"""`make bench` / `make bench-quick`: run every part, print a table, write bench/results.json.

Benchmarks are not tests: a part that cannot run (a dependency missing, a
daemon that does not start) records null for its keys and a reason under
``errors``; the exit status is 0 whatever the numbers are. Results are
written after every part, so an interrupted run still leaves what it had.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Results, fmt, log, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"

# part name -> (module, the keys it owns: null until it fills them)
PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sim": ("bench.sim", ("sim_nodes", "sim_converged", "sim_msgs_per_job")),
    "identity": ("bench.identity", ("identity_hashes_per_s", "identity_mint_s_default")),
    # on the real node machine (bench/sybil.py: the same on the bare selection and tally)
    "sybil": (
        "bench.sybil_machine",
        (
            "sybil_false_reproduced_s30_m3n2",
            "sybil_expected_false_reproduced_s30_m3n2",
            "sybil_z_s30_m3n2",
            "sybil_jobs_s30_m3n2",
            "sybil_ms_per_job",
        ),
    ),
    "tally": ("bench.tally", ("tally_per_s", "verify_per_s", "tally_verify_ratio")),
    "blob": ("bench.blob", ("blob_mb_s", "tcp_mb_s", "blob_tcp_ratio", "blob_cpu_bound_mb_s")),
    "overhead": (
        "bench.overhead",
        (
            "overhead_s_p50",
            "overhead_s_p90",
            "bare_docker_run_s",
            "verdict_s_p50",
            "runner_run_s",
            "bare_docker_true_s",
            "runner_phase_create_s",
            "runner_phase_start_s",
            "runner_phase_run_s",
            "runner_phase_copy_out_s",
        ),
    ),
    "footprint": ("bench.footprint", ("idle_rss_mb", "idle_cpu_pct", "bare_libp2p_rss_mb", "startup_s")),
    "propagation": (
        "bench.propagation",
        (
            "propagation_ms_p50_5",
            "propagation_ms_p99_5",
            "propagation_ms_p50_10",
            "propagation_ms_p99_10",
            "propagation_ms_p50_20",
            "propagation_ms_p99_20",
            "propagation_ms_p50",
            "propagation_ms_p99",
            "propagation_cpu_ms_per_fact_5",
            "propagation_cpu_ms_per_fact_10",
            "propagation_cpu_ms_per_fact_20",
        ),
    ),
}

# Parts whose keys are too generic for one flat object: (prefixes kept as they are,
# keys dropped as duplicates); any other key gets "<part>_" in front.
RENAME: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tally": (("tally_", "verify_"), ("ratio",)),
}

# (key, goal text, check) for the table; check(results) -> True/False/None (unknown)
Check = Callable[[Results], bool | None]


def _le(key: str, limit: float) -> Check:
    return lambda r: None if r.get(key) is None else bool(r[key] <= limit)


def _ge(key: str, limit: float) -> Check:
    return lambda r: None if r.get(key) is None else bool(r[key] >= limit)


def _rss_added(r: Results) -> bool | None:
    a, b = r.get("idle_rss_mb"), r.get("bare_libp2p_rss_mb")
    return None if a is None or b is None else bool(a - b <= 10)


ROWS: list[tuple[str, str, Check | None]] = [
    ("overhead_s_p50", "<= 1.0 s", _le("overhead_s_p50", 1.0)),
    ("overhead_s_p90", "", None),
    ("overhead_s_p50_default_timing", "<= 1.5 s", _le("overhead_s_p50_default_timing", 1.5)),
    ("overhead_window_used_s_p50", "(claim window used)", None),
    ("overhead_window_used_s_p50_default_timing", "(claim window used)", None),
    ("bare_docker_run_s", "(floor)", None),
    ("verdict_s_p50", "", None),
    ("runner_run_s", "", None),
    ("bare_docker_true_s", "(floor)", None),
    ("runner_phase_create_s", "", None),
    ("runner_phase_start_s", "", None),
    ("runner_phase_run_s", "", None),
    ("runner_phase_copy_out_s", "", None),
    ("propagation_ms_p50_5", "", None),
    ("propagation_ms_p99_5", "", None),
    ("propagation_ms_p50_10", "", None),
    ("propagation_ms_p99_10", "", None),
    ("propagation_ms_p50_20", "<= 50 ms", _le("propagation_ms_p50_20", 50)),
    ("propagation_ms_p99_20", "<= 150 ms", _le("propagation_ms_p99_20", 150)),
    ("propagation_cpu_ms_per_fact_20", "<= 81 ms (163 / 2)", _le("propagation_cpu_ms_per_fact_20", 81)),
    ("tally_per_s", "", None),
    ("verify_per_s", "(floor)", None),
    ("tally_verify_ratio", ">= 0.8", _ge("tally_verify_ratio", 0.8)),
    ("blob_mb_s", ">= 300 MB/s", _ge("blob_mb_s", 300)),
    ("blob_cpu_bound_mb_s", ">= 300 MB/s", _ge("blob_cpu_bound_mb_s", 300)),
    ("tcp_mb_s", "(floor)", None),
    ("blob_tcp_ratio", "", None),
    ("idle_rss_mb", "<= bare + 10", _rss_added),
    ("bare_libp2p_rss_mb", "(floor)", None),
    ("idle_cpu_pct", "<= 1 %", _le("idle_cpu_pct", 1.0)),
    ("bare_libp2p_cpu_pct", "(floor)", None),
    ("startup_s", "<= 2 s", _le("startup_s", 2.0)),
    ("identity_mint_s_default", "~ 60 s", None),
    ("sybil_false_reproduced_s30_m3n2", "~ hypergeometric", None),
    ("sybil_expected_false_reproduced_s30_m3n2", "(expectation)", None),
    ("sybil_z_s30_m3n2", "|z| <= 3 (std. errors)", lambda r: None if r.get("sybil_z_s30_m3n2") is None else bool(abs(r["sybil_z_s30_m3n2"]) <= 3)),
    ("sybil_jobs_s30_m3n2", "10 000", None),
    ("sybil_ms_per_job", "", None),
    ("sim_nodes", "", None),
    ("sim_converged", "== 1.0", _ge("sim_converged", 1.0)),
    ("sim_msgs_per_job", "~ facts x nodes x (D-1)", None),
]


def required_keys() -> list[str]:
    return [k for _, keys in PARTS.values() for k in keys]


def write(results: Results, errors: dict[str, str]) -> None:
    out = dict(results)
    out["errors"] = dict(errors)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def table(results: Results, errors: dict[str, str]) -> str:
    lines = [f"{'key':<30} {'value':>14}  {'goal':<24} met", "-" * 74]
    for key, goal, check in ROWS:
        met = check(results) if check else None
        mark = "" if check is None else {True: "yes", False: "NO", None: "?"}[met]
        lines.append(f"{key:<30} {fmt(results.get(key)):>14}  {goal:<24} {mark}")
    if errors:
        lines.append("")
        lines.append("not measured:")
        for part, why in errors.items():
            lines.append(f"  {part}: {why.splitlines()[0][:200] if why else ''}")
    return "\n".join(lines)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The real exceptions inside (possibly nested) exception groups from trio nurseries."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def run_part(name: str, quick: bool, results: Results, errors: dict[str, str]) -> None:
    module, _ = PARTS[name]
    t = time.monotonic()
    log(f"part {name} ...")
    try:
        mod = importlib.import_module(module)
        out: dict[str, Any] = mod.run(quick)
    except ImportError as exc:
        errors[name] = f"cannot import {module}: {exc}"
        out = {}
    except Exception as exc:
        errors[name] = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(exc))[:2000]
        log(traceback.format_exc())
        out = {}
    if name in RENAME:
        keep, drop = RENAME[name]
        out = {
            (k if k.startswith(keep) or k == "errors" else f"{name}_{k}"): v
            for k, v in out.items()
            if k not in drop
        }
    part_errors = out.pop("errors", None) or {}
    for k, v in part_errors.items():
        errors[k] = v
    results.update(out)
    results[f"wall_s_{name}"] = round(time.monotonic() - t, 1)
    log(f"part {name} done in {results[f'wall_s_{name}']} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="reduced set, under 2 minutes")
    ap.add_argument("--only", default="", help="comma-separated parts: " + ",".join(PARTS))
    ns = ap.parse_args(argv)
    parts = [p for p in ns.only.split(",") if p] or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown parts {unknown}")
    results: Results = {k: None for k in required_keys()}
    results.update(machine())
    results["quick"] = ns.quick
    results["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    errors: dict[str, str] = {}
    t0 = time.monotonic()
    common.DEADLINE = t0 + (110 if ns.quick else 570)
    for name in parts:
        run_part(name, ns.quick, results, errors)
        write(results, errors)
    results["wall_s_total"] = round(time.monotonic() - t0, 1)
    results["machine_loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    write(results, errors)
    print(table(results, errors))
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)} in {results['wall_s_total']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
