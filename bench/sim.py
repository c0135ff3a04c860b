"""Part 6: the pure core at 1,000 and 10,000 nodes, by discrete-event simulation.

Model (say it plainly, it is a model):

* Topology: a ring plus ``(fanout - 2) / 2`` random links chosen by every
  node, so the mean degree is ``fanout`` (gossipsub D = 6) and the minimum
  is ``fanout - 2`` (gossipsub D_lo = 4). Each link has a fixed one-way
  latency drawn uniformly in [5, 80] ms; every message adds an exponential
  jitter (mean 5 ms) and 2 ms of processing at the sender.
* Gossip: a node that receives a fact for the first time forwards it to
  every neighbour except the one it came from (eager push over the mesh).
  Every transmission counts as a message, duplicates and lost ones included.
  Each transmission is lost with probability ``loss`` (5 %).
* Anti-entropy (``/p2pci/sync/1``): every node syncs with one random
  neighbour every ``sync_s`` (30 s, random phase) and receives the facts it
  lacks; those are counted as messages too, and are not forwarded again. The
  id exchange itself is background traffic (2 messages per node per
  ``sync_s``, whatever the number of jobs) and is reported separately.
  GossipSub's own control traffic (heartbeats, IHAVE/IWANT, IDONTWANT) is
  not modelled.
* Jobs: one publisher offers a job with M replicas, quorum N. ``2 M`` random
  nodes are eligible workers with a free slot (the rest are busy or
  observers). Each worker runs the daemon's own decisions, the real
  ``p2pci.core.node.NodeMachine`` on its own real board: fed every new
  fact, ticked at ``next_wakeup()``, its effects performed as the daemon
  performs them (publish, build, build finished): claim window, claim only
  if it would rank within M, settle, build while selected, commit, reveal
  once the selected workers committed.
  A build takes 1-3 s (uniform) and gives the same result on every worker.
* The real core: every fact is a real envelope sealed once with
  ``p2pci.core.signing.seal`` by its author; the bytes are delivered to a
  real ``p2pci.core.board.Board`` on each *verdict node*, which runs
  ``p2pci.core.tally.tally`` after each commit or reveal it receives. At
  1,000 nodes every node is a verdict node; at 10,000 the workers, the
  publisher and a random sample of 500 nodes are (real boards on all 10,000
  would take about 10 minutes per job on this machine). All other nodes
  keep only the arrival time of each fact; for them "converged" means they
  hold every fact of the job, which by the order-independence property of
  the tally gives the same verdict.

The result is per size: fraction of (job, verdict node) pairs whose final
verdict is REPRODUCED with the expected digest, the time until every node
holds every fact, and messages per job. Messages per job are about
``facts_per_job x nodes x (fanout - 1)`` and facts per job about
``1 + 2M (claims) + 2M (commits, reveals)``: linear in nodes, i.e. constant
per node, and growing with M x fanout, never with nodes squared.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.common import Results, log, pct, rnd

INF = math.inf
T0 = 1_800_000_000_000  # simulated wall clock origin, ms since the epoch


@dataclass
class SimParams:
    nodes: int
    jobs: int
    replicas: int = 3
    quorum: int = 2
    fanout: int = 6
    loss: float = 0.05
    claim_window_ms: int = 2000
    lease_ms: int = 60_000
    build_ms: tuple[float, float] = (1000.0, 3000.0)
    sync_s: float = 30.0
    sample: int = 500  # verdict nodes beyond workers and publisher, when nodes > full_below
    full_below: int = 2000  # every node is a verdict node below this size
    horizon_ms: float = 180_000.0  # give up on a job after this much simulated time
    seed: int = 1


@dataclass
class JobStats:
    facts: int
    claims: int
    builds: int
    msgs: int
    sync_msgs: int
    verdict_nodes: int
    reproduced: int
    all_hold: int
    verdict_ms: list[float]
    hold_all_ms: float
    reveal_ms: float


class Core:
    """The few p2pci.core entry points the simulator uses (imported lazily)."""

    def __init__(self) -> None:
        from p2pci.core import board, messages, node, results, selection, signing, tally, worker

        self.Board = board.Board
        self.next_select = selection.next_select
        self.n = node
        self.open_envelope = signing.open_envelope
        self.tally = tally.tally
        self.w = worker
        self.m = messages
        self.seal = signing.seal
        self.NodeKey = signing.NodeKey
        self.commit_hash = signing.commit_hash
        self.ManifestEntry = results.ManifestEntry
        self.result_digest = results.result_digest


@dataclass
class Worker:
    node: int
    machine: Any  # p2pci.core.node.NodeMachine
    log: Any
    wake: int | None = None  # the pending wake-up time (ms), if any

    @property
    def board(self) -> Any:
        return self.machine.board


class Topology:
    def __init__(self, n: int, fanout: int, rng: random.Random) -> None:
        links: list[dict[int, float]] = [{} for _ in range(n)]

        def link(a: int, b: int) -> None:
            if a != b and b not in links[a]:
                lat = rng.uniform(5.0, 80.0)
                links[a][b] = lat
                links[b][a] = lat

        for i in range(n):
            link(i, (i + 1) % n)
        extra = max(0, (fanout - 2) // 2)
        for i in range(n):
            picked = 0
            while picked < extra and n > 3:
                j = rng.randrange(n)
                if j != i and j not in links[i]:
                    link(i, j)
                    picked += 1
        self.adj: list[list[tuple[int, float]]] = [list(d.items()) for d in links]
        self.n = n

    def mean_degree(self) -> float:
        return sum(len(a) for a in self.adj) / self.n


class JobSim:
    """One job's life on the whole network: a Dijkstra-like event loop."""

    DELIVER, SYNC_DELIVER, TIMER, SYNC = 0, 1, 2, 3

    def __init__(self, core: Core, topo: Topology, p: SimParams, rng: random.Random) -> None:
        self.core, self.topo, self.p, self.rng = core, topo, p, rng
        n = topo.n
        self.heap: list[tuple[float, int, int, int, int, int]] = []
        self.seq = 0
        self.timers: dict[int, Callable[[float], None]] = {}
        self.pending = 0  # events other than periodic syncs
        self.best: list[list[float]] = []  # per fact: earliest scheduled arrival per node
        self.got: list[bytearray] = []  # per fact: delivered flag per node
        self.held: list[int] = []
        self.raw: list[bytes] = []
        self.kind: list[str] = []
        self.msgs = 0
        self.sync_msgs = 0
        # roles
        self.publisher = rng.randrange(n)
        others = [i for i in rng.sample(range(n), min(n, 2 * p.replicas + 1)) if i != self.publisher]
        self.worker_nodes = others[: 2 * p.replicas]
        self.workers: dict[int, Worker] = {}
        if n <= p.full_below:
            vnodes = set(range(n))
        else:
            vnodes = set(rng.sample(range(n), min(n, p.sample)))
        vnodes.add(self.publisher)
        vnodes.update(self.worker_nodes)
        self.boards: dict[int, Any] = {}
        for v in vnodes:
            if v not in self.worker_nodes:
                self.boards[v] = core.Board()
        self.worker_keys = [core.NodeKey.from_seed(rng.randbytes(32)) for _ in self.worker_nodes]
        self.verdict_at: dict[int, float] = {}
        self.final: dict[int, tuple[str, bytes | None]] = {}
        self.job_id = b""
        self.seed = rng.randbytes(32)
        self.select_rounds = 0
        self.offer_t = 0.0
        self.builds = 0
        self.claims = 0
        self.last_reveal_t = 0.0
        man = (core.ManifestEntry("hello.txt", 6, 0o644, hashlib.sha256(b"hello\n").digest()),)
        self.manifest = man
        self.digest = core.result_digest(0, man)

    # ------------------------------------------------------------- events

    def _push(self, t: float, kind: int, node: int, fidx: int, src: int) -> None:
        self.seq += 1
        if kind != self.SYNC:
            self.pending += 1
        heapq.heappush(self.heap, (t, self.seq, kind, node, fidx, src))

    def at(self, t: float, fn: Callable[[float], None]) -> None:
        self.seq += 1
        self.pending += 1
        self.timers[self.seq] = fn
        heapq.heappush(self.heap, (t, self.seq, self.TIMER, -1, -1, -1))

    def publish(self, t: float, node: int, raw: bytes, kind: str) -> None:
        """`node` authors a fact at time t: it holds it and starts the gossip."""
        fidx = len(self.raw)
        self.raw.append(raw)
        self.kind.append(kind)
        self.best.append([INF] * self.topo.n)
        self.got.append(bytearray(self.topo.n))
        self.held.append(0)
        self.best[fidx][node] = t
        self._push(t, self.DELIVER, node, fidx, -1)

    def run(self) -> JobStats:
        p, core = self.p, self.core
        pub_key = core.NodeKey.from_seed(self.rng.randbytes(32))
        m = core.m
        offer = m.Offer(
            project="sim",
            source=m.BlobRef(hashlib.sha256(b"src").digest(), 3),
            image=m.ImageRef("sha256:" + "ab" * 32, None),
            command=("sh", "-c", "echo hello > /out/hello.txt"),
            env=(),
            source_date_epoch=1,
            limits=m.Limits(timeout_s=60, memory_mb=256, cpus=1, pids=64, out_mb=16),
            replicas=p.replicas,
            quorum=p.quorum,
            workers="open",
            require=None,
            created=T0,
            deadline=T0 + 3_600_000,
            select_commit=hashlib.sha256(self.seed).digest(),
            claim_window=2 * p.claim_window_ms,
        )
        fact = core.seal(pub_key, offer)
        self.job_id = fact.id
        self.pub_key = pub_key
        w, nm = core.w, core.n
        for node, key in zip(self.worker_nodes, self.worker_keys, strict=True):
            cfg = w.WorkerConfig(
                me=key.public,
                lease_ms=p.lease_ms,
                claim_window_ms=p.claim_window_ms,
                salt_secret=self.rng.randbytes(32),
                settle_ms=w.settle_ms_for(p.claim_window_ms),
            )
            log_ref = m.BlobRef(self.rng.randbytes(32), 100)
            wk = Worker(node, nm.NodeMachine(nm.NodeConfig(key=key, worker=cfg)), log_ref)
            self.workers[node] = wk
            self.boards[node] = wk.board
        self.offer_t = 0.0
        self.publish(0.0, self.publisher, fact.raw, "offer")
        # protocol v2: the publisher selects once its claim window is over, then checks for
        # replacements every window (the publisher here is a board, not a NodeMachine)
        self.at(2.0 * p.claim_window_ms, self._select)
        for v in range(self.topo.n):  # periodic anti-entropy, random phase
            self._push(self.rng.uniform(0, p.sync_s * 1000), self.SYNC, v, -1, -1)
        self._loop()
        return self._stats()

    def _loop(self) -> None:
        heap, adj, rng, p = self.heap, self.topo.adj, self.rng, self.p
        loss = p.loss
        expo = rng.expovariate
        rand = rng.random
        sync_ms = p.sync_s * 1000
        while heap:
            t, seq, kind, u, f, src = heapq.heappop(heap)
            if t > p.horizon_ms:
                break
            if kind == self.SYNC:
                if self.pending == 0 and all(h == self.topo.n for h in self.held):
                    break
                self._sync(t, u)
                heapq.heappush(heap, (t + sync_ms, seq, kind, u, f, src))
                continue
            self.pending -= 1
            if kind == self.TIMER:
                self.timers.pop(seq)(t)
                continue
            got = self.got[f]
            if got[u]:
                continue
            got[u] = 1
            self.held[f] += 1
            if u in self.boards:
                self._on_fact(t, u, f)
            if kind == self.SYNC_DELIVER:
                continue
            best = self.best[f]
            for v, lat in adj[u]:
                if v == src:
                    continue
                self.msgs += 1
                if rand() < loss:
                    continue
                ta = t + lat + 2.0 + expo(0.2)
                if ta < best[v] and not got[v]:
                    best[v] = ta
                    self._push(ta, self.DELIVER, v, f, u)

    def _sync(self, t: float, u: int) -> None:
        adj = self.topo.adj[u]
        v, lat = adj[self.rng.randrange(len(adj))]
        for f, got in enumerate(self.got):
            if got[v] and not got[u] and self.best[f][u] > t + lat:
                self.sync_msgs += 1
                self.best[f][u] = t + lat
                self._push(t + 2 * lat, self.SYNC_DELIVER, u, f, v)

    # ------------------------------------------------------------- nodes

    def _on_fact(self, t: float, u: int, f: int) -> None:
        wk = self.workers.get(u)
        if wk is not None:
            fact = self.core.open_envelope(self.raw[f])
            if wk.machine.receive_facts([fact], T0 + int(t)) == 0:
                return
            if self.kind[f] != "claim":
                self._tally(t, u)
            self._run(t, wk)
            return
        res = self.boards[u].add(self.raw[f], T0 + int(t))
        if res.status == "new" and self.kind[f] != "claim":
            self._tally(t, u)

    def _tally(self, t: float, u: int) -> None:
        view = self.boards[u].job(self.job_id)
        if view is None:
            return
        v = self.core.tally(view, T0 + int(t))
        if v.state != "PENDING":
            self.final[u] = (v.state, v.digest)
            self.verdict_at.setdefault(u, t)

    def _run(self, t: float, wk: Worker) -> None:
        """Tick the worker's NodeMachine and perform its effects, like the daemon's clock loop."""
        n = self.core.n
        now = T0 + int(t)
        m = wk.machine
        for _ in range(64):
            nxt = m.next_wakeup()
            if nxt is None or nxt > now:
                break
            published = False
            for e in m.tick(now):
                if isinstance(e, n.Publish):
                    self.publish(t, wk.node, e.fact.raw, e.fact.kind)
                    published = True
                    if e.fact.kind == "claim":
                        self.claims += 1
                    elif e.fact.kind == "reveal":
                        self.last_reveal_t = max(self.last_reveal_t, t)
                elif isinstance(e, n.RunBuild):
                    self.builds += 1
                    done = self.core.w.BuildDone.of(exit_code=0, manifest=self.manifest, log=wk.log)
                    self.at(t + self.rng.uniform(*self.p.build_ms), partial(self._built, wk=wk, job=e.job, done=done))
            if published:
                self._tally(t, wk.node)
        wake = m.next_wakeup()
        if wake is not None and wake - T0 < self.p.horizon_ms and (wk.wake is None or wake < wk.wake):
            wk.wake = wake
            self.at(max(t, float(wake - T0)), partial(self._wake, wk=wk, at=wake))

    def _built(self, t: float, wk: Worker, job: bytes, done: Any) -> None:
        wk.machine.build_finished(job, done, T0 + int(t))
        self._run(t, wk)

    def _select(self, t: float) -> None:
        """The publisher's selection rounds (p2pci.core.selection.next_select)."""
        board = self.boards[self.publisher]
        view = board.job(self.job_id)
        now = T0 + int(t)
        if view is not None:
            body = self.core.next_select(view, self.seed, now, close=True)
            if body is not None:
                fact = self.core.seal(self.pub_key, body)
                if board.add(fact.raw, now).status == "new":
                    self.publish(t, self.publisher, fact.raw, fact.kind)
            if self.core.tally(view, now).final:
                return
        self.select_rounds += 1
        if self.select_rounds < 8:
            self.at(t + self.p.claim_window_ms, self._select)

    def _wake(self, t: float, wk: Worker, at: int) -> None:
        if wk.wake == at:
            wk.wake = None
            self._run(t, wk)

    # ------------------------------------------------------------- results

    def _stats(self) -> JobStats:
        n = self.topo.n
        ok = sum(1 for v in self.boards if self.final.get(v) == ("REPRODUCED", self.digest))
        all_hold = sum(1 for v in range(n) if all(g[v] for g in self.got))
        hold_all = max((max(b for b in best if b < INF) for best in self.best), default=0.0)
        return JobStats(
            facts=len(self.raw),
            claims=self.claims,
            builds=self.builds,
            msgs=self.msgs + self.sync_msgs,
            sync_msgs=self.sync_msgs,
            verdict_nodes=len(self.boards),
            reproduced=ok,
            all_hold=all_hold,
            verdict_ms=[self.verdict_at[v] for v in self.boards if v in self.verdict_at],
            hold_all_ms=hold_all if all_hold == n else INF,
            reveal_ms=self.last_reveal_t,
        )


def simulate(p: SimParams, core: Core | None = None) -> dict[str, Any]:
    """Run `p.jobs` jobs on one topology; a flat summary for this size."""
    core = core or Core()
    rng = random.Random(p.seed)
    topo = Topology(p.nodes, p.fanout, rng)
    stats: list[JobStats] = []
    for _ in range(p.jobs):
        stats.append(JobSim(core, topo, p, rng).run())
    vn = sum(s.verdict_nodes for s in stats)
    verdict_ms = [x for s in stats for x in s.verdict_ms]
    facts = sum(s.facts for s in stats) / len(stats)
    msgs = sum(s.msgs for s in stats) / len(stats)
    hold = [s.hold_all_ms for s in stats]
    return {
        "nodes": p.nodes,
        "jobs": p.jobs,
        "mean_degree": topo.mean_degree(),
        "converged": sum(s.reproduced for s in stats) / vn,
        "all_hold_fraction": sum(s.all_hold for s in stats) / (p.nodes * len(stats)),
        "verdict_nodes_per_job": vn / len(stats),
        "msgs_per_job": msgs,
        "msgs_per_job_per_node": msgs / p.nodes,
        "sync_msgs_per_job": sum(s.sync_msgs for s in stats) / len(stats),
        "facts_per_job": facts,
        "claims_per_job": sum(s.claims for s in stats) / len(stats),
        "builds_per_job": sum(s.builds for s in stats) / len(stats),
        "verdict_s_p50": _s(pct(verdict_ms, 50)),
        "verdict_s_p99": _s(pct(verdict_ms, 99)),
        "converge_s_max": _s(max(hold)),
        "reveal_s_max": _s(max(s.reveal_ms for s in stats)),
    }


def _s(ms: float | None) -> float | None:
    if ms is None or ms == INF:
        return None
    return round(ms / 1000, 3)


def run(quick: bool) -> Results:
    """Part 6, as flat keys."""
    sizes = [(1000, 3)] if quick else [(1000, 5), (10_000, 2)]
    out: Results = {}
    try:
        core = Core()
    except ImportError as exc:
        return {"errors": {"sim": f"p2pci.core not ready: {exc}"}}
    per: list[dict[str, Any]] = []
    for nodes, jobs in sizes:
        t = time.monotonic()
        r = simulate(SimParams(nodes=nodes, jobs=jobs), core)
        log(f"sim {nodes} nodes x {jobs} jobs: {time.monotonic() - t:.1f} s wall")
        per.append(r)
        for k in (
            "converged",
            "all_hold_fraction",
            "msgs_per_job",
            "msgs_per_job_per_node",
            "facts_per_job",
            "claims_per_job",
            "builds_per_job",
            "verdict_s_p50",
            "verdict_s_p99",
            "converge_s_max",
            "verdict_nodes_per_job",
        ):
            v = r[k]
            out[f"sim_{k}_{nodes}"] = rnd(v, 4) if isinstance(v, float) else v
    out["sim_nodes"] = [r["nodes"] for r in per]
    out["sim_converged"] = min(r["converged"] for r in per)
    out["sim_msgs_per_job"] = round(per[-1]["msgs_per_job"])
    out["sim_fanout"] = 6
    out["sim_loss"] = 0.05
    out["sim_sync_msgs_per_node_per_min"] = 2 * 60 / 30  # one id exchange out, one in, per sync period
    if not quick:
        # scaling: messages per node per job against M and fanout, at 1,000 nodes
        for m_, d_ in ((5, 6), (3, 10)):
            t = time.monotonic()
            r = simulate(SimParams(nodes=1000, jobs=2, replicas=m_, quorum=2, fanout=d_, seed=7), core)
            log(f"sim scaling M={m_} fanout={d_}: {time.monotonic() - t:.1f} s wall")
            out[f"sim_msgs_per_job_per_node_m{m_}_d{d_}"] = rnd(r["msgs_per_job_per_node"], 2)
            out[f"sim_facts_per_job_m{m_}_d{d_}"] = rnd(r["facts_per_job"], 2)
    return out
