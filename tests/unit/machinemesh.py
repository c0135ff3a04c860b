"""A pure mesh of NodeMachines for fast tests: a discrete-event driver, no trio, no I/O.

Every effect is performed as a daemon would: `Publish` delivers the fact to every other
node after a delay (`delay(src, dst, n)` ms; each link is FIFO, like one stream per peer,
so only facts of different authors or links overtake each other), `RunBuild` reports `BuildDone` after
`build_ms(node)` (liars build other content), `StopBuild` reports `BuildFailed` at once.
A vanished node stops: it gets no more ticks, deliveries or build results. Extra ticks
(`extra_ticks`) hit nodes at arbitrary times: a machine must not care.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from p2pci.core.messages import BlobRef, Offer
from p2pci.core.node import NodeConfig, NodeMachine, Publish, RunBuild, StopBuild
from p2pci.core.signing import Fact, NodeKey
from p2pci.core.tally import Verdict
from p2pci.core.worker import BuildDone, BuildFailed, WorkerConfig, WorkerPolicy, settle_ms_for

from .jobgen import h, key, manifest_for


@dataclass
class MachineMesh:
    n: int
    now: int
    builders: frozenset[int] | None = None  # None: every node builds
    liars: frozenset[int] = frozenset()
    slots: int = 1
    lease_ms: int = 10_000
    claim_window_ms: int = 1_000
    delay: Callable[[int, int, int], int] = lambda src, dst, n: 10
    build_ms: Callable[[int, int], int] = lambda node, n: 500
    machines: list[NodeMachine] = field(init=False)
    keys: list[NodeKey] = field(init=False)
    vanished: set[int] = field(default_factory=set)
    vanish_when_building: set[int] = field(default_factory=set)
    builds: int = 0
    _q: list[tuple[int, int, int, str, object]] = field(default_factory=list)
    _seq: int = 0
    _sent: int = 0
    _link_free: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = [key(f"mesh-node-{i}") for i in range(self.n)]
        self.machines = []
        for i, k in enumerate(self.keys):
            wc = WorkerConfig(
                k.public,
                lease_ms=self.lease_ms,
                claim_window_ms=self.claim_window_ms,
                policy=WorkerPolicy(slots=self.slots),
                salt_secret=k.seed,
                settle_ms=settle_ms_for(self.claim_window_ms),
            )
            builds = self.builders is None or i in self.builders
            self.machines.append(NodeMachine(NodeConfig(key=k, worker=wc, builds=builds)))

    # ------------------------------------------------------------------ driving

    def _push(self, t: int, node: int, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, node, kind, payload))

    def publish(self, node: int, offer: Offer) -> bytes:
        """The node publishes `offer` as its own (protocol v2: with a seed, so it selects)."""
        self._seq += 1
        seed = h(b"mesh seed %d" % self._seq)
        offer = replace(offer, select_commit=hashlib.sha256(seed).digest())
        fact, effects = self.machines[node].publish_offer(offer, seed, self.now)
        self._perform(node, effects)
        return fact.id

    def extra_tick(self, node: int, at: int) -> None:
        self._push(at, node, "tick", None)

    def _perform(self, i: int, effects: list[object]) -> None:
        for e in effects:
            if isinstance(e, Publish):
                self.machines[i].receive_facts([e.fact], self.now)  # stored: back to its author
                for j in range(self.n):
                    if j != i:
                        self._sent += 1
                        t = max(self.now + max(0, self.delay(i, j, self._sent)), self._link_free.get((i, j), 0))
                        self._link_free[(i, j)] = t
                        self._push(t, j, "fact", e.fact)
            elif isinstance(e, RunBuild):
                self.builds += 1
                if i in self.vanish_when_building:
                    self.vanished.add(i)
                    continue
                content = b"good" if i not in self.liars else b"lie %d" % i
                done = BuildDone.of(0, manifest_for(content), BlobRef(h(b"log %d" % i), 1))
                self._push(self.now + self.build_ms(i, self.builds), i, "built", (e.job, done))
            elif isinstance(e, StopBuild):
                self._push(self.now, i, "built", (e.job, BuildFailed("cancelled", code="")))

    def step(self) -> bool:
        """Advance to the next event or wake-up; False when nothing is left to do."""
        live = [i for i in range(self.n) if i not in self.vanished]
        wakes = [(w, i) for i in live if (w := self.machines[i].next_wakeup()) is not None]
        t_q = self._q[0][0] if self._q else None
        t_w = min((max(w, self.now) for w, _ in wakes), default=None)
        cands = [t for t in (t_q, t_w) if t is not None]
        if not cands:
            return False
        self.now = max(self.now, min(cands))
        while self._q and self._q[0][0] <= self.now:
            _t, _s, node, kind, payload = heapq.heappop(self._q)
            if node in self.vanished:
                continue
            m = self.machines[node]
            if kind == "fact":
                assert isinstance(payload, Fact)
                m.receive_facts([payload], self.now)
            elif kind == "built":
                job, ev = payload  # type: ignore[misc]
                m.build_finished(job, ev, self.now)
            # "tick": just tick below
            self._perform(node, m.tick(self.now))
        for i in live:
            if i in self.vanished:
                continue
            m = self.machines[i]
            w = m.next_wakeup()
            spins = 0
            while w is not None and w <= self.now:
                self._perform(i, m.tick(self.now))
                w = m.next_wakeup()
                spins += 1
                # a machine that keeps asking for a tick at `now` without anything changing is a
                # hot loop: a daemon's clock loop would spin on it and starve its network tasks
                assert spins < 100, f"node {i}: next_wakeup() stays <= now ({self.now}) after {spins} ticks"
        return True

    def run_until(self, done: Callable[[], bool], horizon: int) -> None:
        while not done() and self.now < horizon:
            if not self.step():
                return

    # ------------------------------------------------------------------ views

    def verdicts(self, job: bytes) -> list[Verdict | None]:
        out: list[Verdict | None] = []
        for i, m in enumerate(self.machines):
            if i in self.vanished:
                continue
            v = m.board.job(job)
            out.append(None if v is None or v.offer is None else m.verdict(job, self.now))
        return out

    def all_final(self, job: bytes) -> bool:
        return all(v is not None and v.final for v in self.verdicts(job))

    def converged(self, job: bytes) -> bool:
        live = [m for i, m in enumerate(self.machines) if i not in self.vanished]
        ids = {frozenset(m.board.job_fact_ids(job)) for m in live}
        return self.all_final(job) and len(ids) == 1
