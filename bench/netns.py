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
Publish -> verdict (builds) is not measured here.
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

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "netns"
OUT = HERE / "results_netns.json"
GIVE_UP_S = 30.0


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


async def measure(sizes: list[int], samples: int, rtt_ms: float, out: Results) -> None:
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
                    new = []
                    while len(nodes) < size:
                        i = len(nodes)
                        host = topo.public(f"n{i:02d}", f"100.64.0.{10 + i}", delay_ms=rtt_ms / 4)
                        boots = rng.sample(nodes, min(2, len(nodes)))
                        with trio.fail_after(180):
                            node = await mesh.add_in(host, f"n{i:02d}", build=False, bootstrap=boots)
                        nodes.append(node)
                        new.append(node)
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
                        args = publish_args(sources[pub.name], image, "true", project=f"wan{size}-{k}")
                        t_call = time.monotonic()
                        job = (await pub.call("publish", **args))["job"]
                        jt = watch.job(job)
                        with trio.move_on_after(GIVE_UP_S):
                            await watch.wait_seen(job, names)
                        origin = jt.first_seen.get(pub.name, t_call)
                        got = [jt.first_seen.get(n, origin + GIVE_UP_S) for n in names if n != pub.name]
                        if k == 0:
                            cpu0, wall0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
                            continue
                        missing += sum(1 for n in names if n not in jt.first_seen)
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
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await mesh.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.netns", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,20")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--rtt-ms", type=float, default=100.0)
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
        trio.run(measure, [int(s) for s in ns.sizes.split(",")], ns.samples, ns.rtt_ms, out)
    finally:
        out["wall_s"] = round(time.monotonic() - t0, 1)
        import os

        out["machine_loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
        OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
