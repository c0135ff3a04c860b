"""Propagation across a WAN: daemons in network namespaces with 100 ms RTT (root only).

    sudo .venv/bin/python -m bench.netns [--sizes 10,20] [--samples 10] [--rtt-ms 100]

Each daemon (``--no-build``) runs in a namespace of its own with a public
address on the harness's internet bridge (tests/netns/topo.py); every uplink
gets RTT/4 one-way delay from a user-space wire, so any two daemons are
RTT apart. Otherwise it measures like ``bench.propagation`` (the loopback
part): the mesh grows to each size (bootstrapping from two random earlier
daemons), a random daemon publishes an offer, and a sample is the time
until the last daemon reported it. ``rtt_floor_ms`` is what the same gossip
would take if Python cost nothing: the publisher's eccentricity in the
connection graph (hops) × one-way delay. Writes bench/results_netns.json.

Publish -> verdict (``--verdict-jobs``, default 3 per size, after one warm-up): the first
``--workers`` daemons (default 3) build, in Docker, the others do not; a random non-building
daemon publishes a job (replicas 3, quorum 2, ``true`` in busybox, the bench timing of
`p2pci.testing.mesh.FAST_TIMING` as in the loopback `verdict_s_p50`), timed from the control
op to its REPRODUCED event (``netns_verdict_s_p50_<n>``) and to the last daemon's
(``netns_verdict_all_s_p50_<n>``). ``netns_verdict_floor_s_<n>`` is what the same job would
take if Python, Docker and the claim window cost nothing: 5 sequential facts between the
publisher and a worker (offer, claim, select, commit, reveal: each the publisher's
eccentricity × one-way delay) plus the source fetch (2 round trips: stream negotiation, then
the range), then the reveal to the farthest daemon.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import trio

from bench.common import Results, cpu_seconds, log, machine, pct, rnd
from bench.daemons import Watch, busybox_image, follow_all, publish_args, put_source
from bench.propagation import grow, sample_fact

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "netns"
OUT = HERE / "results_netns.json"


def hops_from(start: str, edges: dict[str, set[str]]) -> int:
    """The largest BFS distance from `start` (unreachable nodes ignored)."""
    dist = {start: 0}
    q = deque([start])
    while q:
        u = q.popleft()
        for v in edges.get(u, ()):
            if v not in dist:
                dist[v] = dist[u] + 1
                q.append(v)
    return max(dist.values())


async def measure(
    sizes: list[int], samples: int, rtt_ms: float, out: Results, workers: int = 3, verdict_jobs: int = 3
) -> None:
    from tests.netns.mesh import NetnsMesh
    from tests.netns.topo import Topology

    one_way = rtt_ms / 2
    rng = random.Random(2)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    image = await trio.to_thread.run_sync(busybox_image)
    with Topology() as topo:
        mesh = NetnsMesh(WORK / "mesh")
        try:
            async with trio.open_nursery() as nursery:
                watch = Watch()
                nodes: list[Any] = []
                for size in sizes:
                    t0 = time.monotonic()

                    async def add(i: int, boots: list[Any]) -> Any:
                        host = topo.public(f"n{i:02d}", f"100.64.0.{10 + i}", delay_ms=rtt_ms / 4)
                        return await mesh.add_in(host, f"n{i:02d}", build=i < workers, bootstrap=boots)

                    new = await grow(nodes, size, rng, add)
                    await follow_all(nursery, watch, new)
                    with trio.fail_after(120):
                        await mesh.wait_connected(minimum=1)
                    log(f"netns: {size} daemons up in {time.monotonic() - t0:.1f} s")
                    names = [n.name for n in nodes]
                    by_id = {n.peer_id: n.name for n in nodes}
                    sources = {n.name: put_source(n.home, {"a.txt": "a\n"}) for n in nodes}
                    delays: list[float] = []
                    floors: list[float] = []
                    missing = 0
                    pids = [int(n.proc.pid) for n in nodes if n.proc is not None]
                    cpu0 = wall0 = 0.0
                    for k in range(samples + 1):  # the first is a warm-up
                        pub = rng.choice(nodes)
                        project = f"wan{size}-{k}"
                        origin, got, unseen = await sample_fact(watch, pub, names, sources[pub.name], image, project)
                        if k == 0:
                            cpu0, wall0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
                            continue
                        missing += unseen
                        delays.append(1000 * (max(got) - origin))
                        edges: dict[str, set[str]] = {}
                        for n in nodes:
                            peers = await n.call("peers")
                            edges[n.name] = {by_id[p["peer_id"]] for p in peers if p["peer_id"] in by_id}
                        floors.append(hops_from(pub.name, edges) * one_way)
                    out[f"netns_propagation_ms_p50_{size}"] = rnd(pct(delays, 50), 1)
                    out[f"netns_propagation_ms_p99_{size}"] = rnd(pct(delays, 99), 1)
                    out[f"netns_rtt_floor_ms_p50_{size}"] = rnd(pct(floors, 50), 1)
                    out[f"netns_propagation_missing_{size}"] = missing
                    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
                    out[f"netns_propagation_cpu_ms_per_fact_{size}"] = rnd(1000 * cpu / samples, 1)
                    out[f"netns_propagation_cpu_cores_busy_{size}"] = rnd(cpu / (time.monotonic() - wall0), 2)
                    log(
                        f"netns at {size}: p50 {out[f'netns_propagation_ms_p50_{size}']} ms, "
                        f"p99 {out[f'netns_propagation_ms_p99_{size}']} ms, "
                        f"floor {out[f'netns_rtt_floor_ms_p50_{size}']} ms"
                    )
                    if verdict_jobs and workers >= 3:
                        await _verdicts(out, size, nodes, workers, image, watch, rng, verdict_jobs, one_way)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await mesh.stop_all()


async def _verdicts(
    out: Results, size: int, everyone_nodes: list[Any], workers: int, image: str, watch: Watch,
    rng: random.Random, jobs: int, one_way: float,
) -> None:
    """Publish -> REPRODUCED at the publisher and at every daemon (see the module docstring)."""
    publishers = everyone_nodes[workers:]
    names = [n.name for n in everyone_nodes]
    by_id = {n.peer_id: n.name for n in everyone_nodes}
    mine: list[float] = []
    everyone: list[float] = []
    floors: list[float] = []
    for k in range(jobs + 1):  # the first is a warm-up (image checks, /out holder pools)
        pub = rng.choice(publishers)
        source = put_source(pub.home, {"a.txt": f"verdict {size} {k}\n"})
        args = publish_args(source, image, "true", project=f"wanv{size}-{k}", replicas=3, quorum=2)
        t_call = time.monotonic()
        job = (await pub.call("publish", **args))["job"]
        with trio.move_on_after(120):
            await watch.wait_verdict(job, pub.name)
            await watch.wait(lambda job=job: all(n in watch.job(job).verdict for n in names))  # type: ignore[misc]
        jt = watch.job(job)
        if pub.name not in jt.verdict:
            log(f"netns: job {k} at {size} daemons has no verdict at its publisher after 120 s")
            continue
        state, t_pub = jt.verdict[pub.name]
        if k == 0:
            continue
        if state != "REPRODUCED":
            log(f"netns: job {k} at {size} daemons ended {state}")
            continue
        mine.append(t_pub - t_call)
        ends = [t for _s, t in jt.verdict.values()]
        everyone.append(max(ends) - t_call)
        edges: dict[str, set[str]] = {}
        for n in everyone_nodes:
            peers = await n.call("peers")
            edges[n.name] = {by_id[p["peer_id"]] for p in peers if p["peer_id"] in by_id}
        hops = hops_from(pub.name, edges)
        floors.append((5 * hops * one_way + 2 * 2 * one_way) / 1000)
    if mine:
        out[f"netns_verdict_jobs_{size}"] = len(mine)
        out[f"netns_verdict_s_p50_{size}"] = rnd(pct(mine, 50), 2)
        out[f"netns_verdict_all_s_p50_{size}"] = rnd(pct(everyone, 50), 2)
        out[f"netns_verdict_floor_s_{size}"] = rnd(pct(floors, 50), 2)
        log(f"netns at {size}: publish -> verdict p50 {out[f'netns_verdict_s_p50_{size}']} s "
            f"(every daemon {out[f'netns_verdict_all_s_p50_{size}']} s, floor {out[f'netns_verdict_floor_s_{size}']} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.netns", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,20")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--rtt-ms", type=float, default=100.0)
    ap.add_argument("--workers", type=int, default=3, help="daemons that build (the first ones)")
    ap.add_argument("--verdict-jobs", type=int, default=3, help="publish -> verdict jobs per size (0: none)")
    ns = ap.parse_args(argv)
    from tests.netns.topo import available

    reason = available()
    if reason:
        print(f"bench.netns: {reason}", file=sys.stderr)
        return 2
    out: Results = {"netns_rtt_ms": ns.rtt_ms, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.update(machine())
    t0 = time.monotonic()
    try:
        trio.run(
            measure, [int(s) for s in ns.sizes.split(",")], ns.samples, ns.rtt_ms, out, ns.workers, ns.verdict_jobs
        )
    finally:
        out["wall_s"] = round(time.monotonic() - t0, 1)
        import os

        out["machine_loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
        OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
