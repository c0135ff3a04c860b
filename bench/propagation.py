"""Part 2: how long one fact takes to reach every daemon, at 5, 10 and 20 daemons.

Real daemon processes (``--no-build``, so the offers are only gossiped)
start one after the other, each bootstrapping from two random earlier
daemons (the first from none, the second from the first): nobody is told
about everyone. The mesh grows 5 -> 10 -> 20 and is measured at each size.

For each sample a random daemon publishes an offer through its control
socket. This process is subscribed to every daemon's event stream and
timestamps, on one clock, when each daemon first reports the job. The
sample is ``max(first report on every daemon) - first report on the
publisher``; ``propagation_ms_p50_N`` / ``_p99_N`` are percentiles over the
samples at size N (20 samples, so p99 is the worst one). The control-socket
notification adds the same small delay at both ends. A fact that does not
reach everyone within 30 s counts as 30 s (and in ``propagation_missing_N``).
``propagation_cpu_ms_per_fact_N`` is the CPU time all N daemons used while
the samples ran, per fact, and ``propagation_cpu_cores_busy_N`` the cores
they kept busy: on this 2-core machine the mesh is CPU-bound long before
the network matters. Because that CPU includes the daemons' idle work over
the samples' wall time (which the machine's load stretches), the idle CPU
of all daemons is also sampled for ``IDLE_S`` before the samples
(``propagation_idle_cpu_ms_per_s_N``) and subtracted:
``propagation_cpu_ms_per_fact_marginal_N`` is what one fact itself costs.
``propagation_synced_N`` counts the facts the daemons took in by
anti-entropy sync instead of gossip during the samples (0 when gossip
reached everyone first), and ``propagation_gossip_mesh_min_N`` is the
smallest gossipsub mesh of any daemon after them (0: a daemon that only
sync reaches); when either is off, the log names each daemon's mesh.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.common import Results, budget, cpu_seconds, log, pct, rnd
from bench.daemons import Watch, busybox_image, follow_all, publish_args, put_source

WORK = Path(__file__).resolve().parent / ".work" / "propagation"
GIVE_UP_S = 30.0
IDLE_S = 3.0  # idle CPU sampled this long before the measured facts


async def grow(nodes: list[Any], size: int, rng: random.Random, add: Callable[[int, list[Any]], Awaitable[Any]]) -> list[Any]:
    """Add daemons to `nodes` until there are `size`: `add(index, bootstrap)` starts the next one,
    bootstrapping from two random earlier daemons (the first from none). Returns the new ones."""
    new = []
    while len(nodes) < size:
        boots = rng.sample(nodes, min(2, len(nodes)))
        with trio.fail_after(180):
            node = await add(len(nodes), boots)
        nodes.append(node)
        new.append(node)
    return new


async def sample_fact(
    watch: Watch, pub: Any, names: list[str], source: dict[str, Any], image: str, project: str
) -> tuple[float, list[float], int]:
    """`pub` publishes an offer; waits up to GIVE_UP_S for every daemon of `names` to report it.

    Returns the publisher's first report, every other daemon's (GIVE_UP_S later for one that
    did not report it) and how many of `names` did not report it.
    """
    args = publish_args(source, image, "true", project=project)
    t_call = time.monotonic()
    job = (await pub.call("publish", **args))["job"]
    jt = watch.job(job)
    with trio.move_on_after(GIVE_UP_S):
        await watch.wait_seen(job, names)
    origin = jt.first_seen.get(pub.name, t_call)
    got = [jt.first_seen.get(n, origin + GIVE_UP_S) for n in names if n != pub.name]
    return origin, got, sum(1 for n in names if n not in jt.first_seen)


async def net_stats(nodes: list[Any]) -> list[dict[str, int]]:
    """Each daemon's network counters and gauges (`stats` → `net`)."""
    return [(await n.call("stats"))["net"] for n in nodes]


async def propagation(quick: bool, out: Results) -> None:
    from p2pci.testing.mesh import open_mesh

    sizes = [5] if quick else [5, 10, 20]
    samples = 10 if quick else 20
    rng = random.Random(2)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    image = await trio.to_thread.run_sync(busybox_image)  # nobody builds, but the offer names a real image
    async with open_mesh(WORK / "mesh") as mesh, trio.open_nursery() as nursery:
        watch = Watch()
        nodes: list[Any] = []
        for size in sizes:
            t0 = time.monotonic()
            new = await grow(nodes, size, rng, lambda i, boots: mesh.add(f"n{i:02d}", build=False, bootstrap=boots))
            await follow_all(nursery, watch, new)
            with trio.fail_after(120):
                await mesh.wait_connected(minimum=1)
            log(f"propagation: {size} daemons up in {time.monotonic() - t0:.1f} s")
            names = [n.name for n in nodes]
            sources = {n.name: put_source(n.home, {"a.txt": "a\n"}) for n in nodes}
            # warm-up: one fact that is not counted (first streams, gossip mesh grafts)
            delays: list[float] = []
            per_node: list[float] = []
            missing = 0
            pids = [int(n.proc.pid) for n in nodes if n.proc is not None]
            cpu0, wall0 = 0.0, 0.0
            for i in range(samples + 1):
                pub = rng.choice(nodes)
                origin, got, unseen = await sample_fact(watch, pub, names, sources[pub.name], image, f"prop{size}-{i}")
                if i == 0:
                    # the daemons' idle CPU (heartbeats, anti-entropy, Yamux pings) over IDLE_S with
                    # no fact in flight: subtracted for the marginal cost of a fact
                    idle0, t_idle = sum(cpu_seconds(p) for p in pids), time.monotonic()
                    await trio.sleep(IDLE_S)
                    cpu0, wall0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
                    idle_rate = (cpu0 - idle0) / (wall0 - t_idle)
                    synced0 = sum(s.get("synced", 0) for s in await net_stats(nodes))
                    continue
                missing += unseen
                delays.append(1000 * (max(got) - origin))
                per_node += [1000 * (g - origin) for g in got]
            out[f"propagation_ms_p50_{size}"] = rnd(pct(delays, 50), 1)
            out[f"propagation_ms_p99_{size}"] = rnd(pct(delays, 99), 1)
            out[f"propagation_node_ms_p50_{size}"] = rnd(pct(per_node, 50), 1)
            out[f"propagation_missing_{size}"] = missing
            # CPU of all daemons while the samples ran (idle cost included), per fact
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            out[f"propagation_cpu_ms_per_fact_{size}"] = rnd(1000 * cpu / samples, 1)
            wall = time.monotonic() - wall0
            out[f"propagation_cpu_cores_busy_{size}"] = rnd(cpu / wall, 2)
            out[f"propagation_idle_cpu_ms_per_s_{size}"] = rnd(1000 * idle_rate, 1)
            out[f"propagation_cpu_ms_per_fact_marginal_{size}"] = rnd(1000 * (cpu - idle_rate * wall) / samples, 1)
            # how the facts got there: by anti-entropy sync instead of gossip, and the gossip mesh
            # (a daemon outside every mesh gets facts only by sync: seconds, not milliseconds)
            stats = await net_stats(nodes)
            out[f"propagation_synced_{size}"] = sum(s.get("synced", 0) for s in stats) - synced0
            meshes = {n.name: s.get("gossip_mesh", -1) for n, s in zip(nodes, stats, strict=True)}
            out[f"propagation_gossip_mesh_min_{size}"] = min(meshes.values())
            if out[f"propagation_synced_{size}"] or min(meshes.values()) < 1:
                log(f"propagation at {size}: gossip mesh per daemon {meshes}")
            peers = [len(await n.call("peers")) for n in nodes]
            out[f"propagation_peers_mean_{size}"] = rnd(sum(peers) / len(peers), 1)
            log(
                f"propagation at {size}: p50 {out[f'propagation_ms_p50_{size}']} ms, "
                f"p99 {out[f'propagation_ms_p99_{size}']} ms, mean peers {out[f'propagation_peers_mean_{size}']}"
            )
        nursery.cancel_scope.cancel()
    last = sizes[-1]
    if last == 20:
        out["propagation_ms_p50"] = out["propagation_ms_p50_20"]
        out["propagation_ms_p99"] = out["propagation_ms_p99_20"]


BUDGET_S = {True: 60, False: 300}  # quick / full: a stuck part must not stall `make bench`


def run(quick: bool) -> Results:
    out: Results = {}

    limit = budget(BUDGET_S[quick])

    async def bounded() -> None:
        with trio.fail_after(limit):
            await propagation(quick, out)

    try:
        trio.run(bounded)
    except trio.TooSlowError:
        out["errors"] = {"propagation": f"gave up after {limit:.0f} s (partial results kept)"}
    return out
