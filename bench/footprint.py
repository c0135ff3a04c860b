"""Part 5: startup time, idle RSS and idle CPU of a daemon with 10 peers, next to a bare libp2p host.

* ``startup_s``: a daemon alone (fresh home, nothing else running), from
  spawning ``p2pci daemon`` to its ``p2pci daemon ready:`` line; the median
  of a few starts. ``bare_libp2p_startup_s`` is the same for bench/bare_host.py.
* Footprint: 10 peer daemons (``--no-build``) start one after the other
  (staggered: each waits for the previous one's ready line). Then a worker
  daemon bootstraps from all 10 (it dials up to its mesh degree, 8; peer
  exchange may add the rest), and a bare py-libp2p host with gossipsub
  (bench/bare_host.py, no p2pci code) dials the same peers the daemon has. Once the daemon
  reports its peers and both have been up for a few seconds, both are
  sampled together over the window (30 s): RSS (VmRSS, MiB) every second
  and CPU time at both ends. ``idle_cpu_pct`` is 100 x CPU seconds / wall
  seconds (so 100 = one full core).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import Results, budget, cpu_seconds, log, rnd, rss_mb
from bench.procs import PY, ProcGroup

WORK = Path(__file__).resolve().parent / ".work" / "footprint"
BARE_READY = r"^bare ready: (\S+) (\S+)"


def _daemon_argv(home: Path, bootstrap: list[str], build: bool) -> list[str]:
    from p2pci.testing.mesh import LOOPBACK_ANY_PORT, p2pci_argv

    argv = [*p2pci_argv(), "--home", str(home), "daemon", "--listen", LOOPBACK_ANY_PORT]
    for b in bootstrap:
        argv += ["--bootstrap", b]
    if not build:
        argv.append("--no-build")
    return argv


async def measure_startup(mesh: Any, group: ProcGroup, name: str) -> float:
    """Seconds from spawning a daemon (its home already made) to its ready line."""
    node = await mesh.add(name, start=False, bootstrap=[])
    t0 = time.monotonic()
    with trio.fail_after(120):
        proc = await group.start(name, _daemon_argv(node.home, [], True), ready=r"p2pci daemon ready:")
    dt = (proc.ready_at or time.monotonic()) - t0
    await group.stop(proc)
    return dt


async def wait_peers(home: Path, n: int) -> None:
    """Wait (on the daemon's `peers` events) until it has at least `n` peers."""
    from p2pci.control.client import acontrol_call, subscribe

    async with subscribe(home) as events:
        if len(await acontrol_call(home, "peers")) >= n:
            return
        async for ev in events:
            if ev.get("event") == "peers" and len(ev.get("peers") or []) >= n:
                return


async def sample(pids: dict[str, int], window_s: float) -> dict[str, dict[str, float]]:
    """RSS every second and CPU time at both ends, for each pid, over `window_s`."""
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    rss: dict[str, list[float]] = {k: [] for k in pids}
    t0 = time.monotonic()
    while time.monotonic() - t0 < window_s:
        for k, p in pids.items():
            rss[k].append(rss_mb(p))
        await trio.sleep(1.0)
    wall = time.monotonic() - t0
    out: dict[str, dict[str, float]] = {}
    for k, p in pids.items():
        out[k] = {
            "rss_mb": statistics.mean(rss[k]),
            "rss_max_mb": max(rss[k]),
            "cpu_pct": 100 * (cpu_seconds(p) - cpu0[k]) / wall,
        }
    return out


async def footprint(quick: bool, out: Results) -> None:
    from p2pci.testing.mesh import open_mesh

    n_peers = 5 if quick else 10
    window = 10.0 if quick else 30.0
    starts = 1 if quick else 3
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    async with open_mesh(WORK / "mesh") as mesh, ProcGroup(WORK / "logs") as group:
        # 1. startup, alone
        times = [await measure_startup(mesh, group, f"alone{i}") for i in range(starts)]
        out["startup_s"] = rnd(statistics.median(times), 2)
        out["startup_s_all"] = [rnd(t, 2) for t in times]
        t0 = time.monotonic()
        with trio.fail_after(60):
            bare0 = await group.start("bare-alone", [PY, "-m", "bench.bare_host"], ready=BARE_READY)
        out["bare_libp2p_startup_s"] = rnd((bare0.ready_at or t0) - t0, 2)
        await group.stop(bare0)
        out["startup_added_s"] = rnd(out["startup_s"] - out["bare_libp2p_startup_s"], 2)
        log(f"startup: daemon {out['startup_s']} s, bare host {out['bare_libp2p_startup_s']} s")

        # 2. ten peers, staggered
        peers: list[Any] = []
        for i in range(n_peers):
            with trio.fail_after(120):
                peers.append(await mesh.add(f"peer{i}", build=False, bootstrap=peers[:1]))
        log(f"{n_peers} peer daemons up")
        with trio.fail_after(120):
            idle = await mesh.add("idle", build=True, bootstrap=peers)

        # The daemon dials up to its mesh degree (8) itself; the others may dial it
        # later via peer exchange. Take what it has after a while, at least 8.
        async def connected_peers() -> set[str]:
            return {p["peer_id"] for p in await idle.call("peers")}

        with trio.move_on_after(20):
            await wait_peers(idle.home, n_peers)
        with trio.fail_after(60):
            await wait_peers(idle.home, min(n_peers, 8))
        theirs = await connected_peers()
        same = [p.dial_addr() for p in peers if p.peer_id in theirs]
        out["idle_peers"] = len(theirs)
        out["bare_libp2p_peers"] = len(same)
        argv = [PY, "-m", "bench.bare_host"]
        for d in same:
            argv += ["--connect", d]
        with trio.fail_after(120):
            bare = await group.start("bare", argv, ready=BARE_READY)
        await trio.sleep(3.0)  # let start-up work (dials, identify, first heartbeats) pass
        assert idle.proc is not None
        res = await sample({"idle": int(idle.proc.pid), "bare": bare.pid}, window)
        out["idle_rss_mb"] = rnd(res["idle"]["rss_mb"], 1)
        out["idle_rss_max_mb"] = rnd(res["idle"]["rss_max_mb"], 1)
        out["idle_cpu_pct"] = rnd(res["idle"]["cpu_pct"], 2)
        out["bare_libp2p_rss_mb"] = rnd(res["bare"]["rss_mb"], 1)
        out["bare_libp2p_cpu_pct"] = rnd(res["bare"]["cpu_pct"], 2)
        out["idle_added_rss_mb"] = rnd(res["idle"]["rss_mb"] - res["bare"]["rss_mb"], 1)
        out["idle_window_s"] = window
        peer_rss = [rss_mb(int(p.proc.pid)) for p in peers if p.proc is not None]
        out["peer_daemon_rss_mb_p50"] = rnd(statistics.median(peer_rss), 1)


BUDGET_S = {True: 75, False: 240}  # quick / full: a stuck part must not stall `make bench`


def run(quick: bool) -> Results:
    out: Results = {}

    limit = budget(BUDGET_S[quick])

    async def bounded() -> None:
        with trio.fail_after(limit):
            await footprint(quick, out)

    try:
        trio.run(bounded)
    except trio.TooSlowError:
        out["errors"] = {"footprint": f"gave up after {limit:.0f} s (partial results kept)"}
    return out
