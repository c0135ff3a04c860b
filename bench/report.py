"""`python -m bench.report [results.json]`: the results as Markdown tables (for docs/benchmarks.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import RESULTS, ROWS
from bench.common import fmt

EXTRA = [
    ("runner_run_s", "the daemon's hardened runner alone, same build"),
    ("verdict_cli_s_p50", "`p2pci publish --wait --json` end to end (CLI start-up, packing)"),
    ("overhead_to_first_claim_s_p50", "offer created -> first claim"),
    ("overhead_to_first_build_start_s_p50", "publish -> first build starts"),
    ("overhead_build_s_p50", "one build inside the daemon (fetch source, run, outputs)"),
    ("overhead_to_last_build_end_s_p50", "publish -> last of the 3 builds ends"),
    ("overhead_to_first_reveal_s_p50", "publish -> first reveal on the publisher"),
    ("overhead_s_p50_default_timing", "overhead with the shipped timing (claim window 2000 ms)"),
    ("overhead_to_first_claim_s_p50_default_timing", "same: offer created -> first claim"),
    ("overhead_build_s_p50_default_timing", "same: one build inside the daemon"),
    ("propagation_node_ms_p50_20", "per daemon (not the slowest), 20 daemons"),
    ("propagation_peers_mean_20", "mean peers per daemon, 20 daemons"),
    ("propagation_cpu_ms_per_fact_20", "CPU of all 20 daemons per fact"),
    ("propagation_cpu_cores_busy_20", "cores the 20 daemons kept busy while sampling"),
    ("propagation_cpu_ms_per_fact_marginal_20", "same, minus the daemons' idle CPU over the same time"),
    ("propagation_idle_cpu_ms_per_s_20", "CPU of all 20 daemons per second with no fact in flight"),
    ("propagation_synced_20", "facts taken in by sync instead of gossip while sampling, 20 daemons"),
    ("propagation_gossip_mesh_min_20", "smallest gossipsub mesh of the 20 daemons (0: reached only by sync)"),
    ("tally_reveals_per_s_batched", "reveals/s with one tally per burst"),
    ("tally_reveals_per_s_add_only", "reveals/s through Board.add with no tally"),
    ("tally_add_only_ratio", "that over verify_per_s: the ceiling were the tally free"),
    ("blob_size_mb", "blob size"),
    ("idle_peers", "peers of the idle daemon"),
    ("idle_added_rss_mb", "daemon RSS minus bare host RSS"),
    ("bare_libp2p_startup_s", "bare host start to ready"),
    ("peer_daemon_rss_mb_p50", "RSS of a --no-build daemon with a few peers"),
    ("sim_msgs_per_job_per_node_1000", "messages per job per node, 1,000 nodes"),
    ("sim_msgs_per_job_per_node_10000", "messages per job per node, 10,000 nodes"),
    ("sim_msgs_per_job_per_node_m5_d6", "same, M=5, fan-out 6 (1,000 nodes)"),
    ("sim_msgs_per_job_per_node_m3_d10", "same, M=3, fan-out 10 (1,000 nodes)"),
    ("sim_facts_per_job_10000", "facts per job (M=3)"),
    ("sim_builds_per_job_10000", "builds per job (M=3)"),
    ("sim_verdict_s_p50_10000", "simulated offer -> verdict, p50"),
    ("sim_converge_s_max_10000", "simulated offer -> every node holds every fact"),
    ("sim_converge_s_max_1000", "same at 1,000 nodes (a lost fact waits for anti-entropy)"),
    ("wall_s_total", "wall time of the run"),
    ("machine_loadavg_1m_at_start", "load average at start (2 cores, shared)"),
    ("machine_loadavg_1m_at_end", "load average at the end"),
]


def render(r: dict[str, Any]) -> str:
    lines = ["| key | value | goal | met |", "|---|---:|---|---|"]
    for key, goal, check in ROWS:
        met = check(r) if check else None
        mark = "" if check is None else {True: "yes", False: "**no**", None: "?"}[met]
        lines.append(f"| `{key}` | {fmt(r.get(key))} | {goal} | {mark} |")
    lines += ["", "| detail | value | meaning |", "|---|---:|---|"]
    for key, meaning in EXTRA:
        if key in r:
            lines.append(f"| `{key}` | {fmt(r[key])} | {meaning} |")
    errors = r.get("errors") or {}
    if errors:
        lines += ["", "Not measured:", ""]
        lines += [f"* {part}: {why.splitlines()[0]}" for part, why in errors.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else RESULTS
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
