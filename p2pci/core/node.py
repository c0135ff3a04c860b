"""What one node does next: the pure `NodeMachine` (inputs in, effects out).

Shaped like wsproto's `Connection`: the machine does no I/O and reads no
clock; a driver (`p2pci.daemon.node.Node`, `bench/sim.py`, the tests) feeds it
inputs and performs the effects it returns, in order.

Inputs::

    m = NodeMachine(NodeConfig(key=key, builds=True, worker=WorkerConfig(...)))
    m.load(worker_jobs, trust)            # after a restart (board facts: m.board.add_fact)
    m.receive_facts(facts, now) -> int    # verified, stored facts: from the network, and our own
    m.publish(body, now) -> (fact, effs)  # a fact of our own (offer, cancel): signed, not yet indexed
    m.build_finished(job, event, now)     # a build reported BuildDone / BuildFailed
    m.set_trust(keys) -> effs             # the observer's trust set changed
    m.set_accepting(mode) -> effs         # donor controls: "open" | "paused" | "draining"
    m.tick(now) -> effs                   # decide: every changed job and every due wake-up

`receive_facts` and `build_finished` only mark jobs dirty; the decisions come
from the next `tick(now)`, so a batch of facts costs one decision per job.
`next_wakeup()` says when to tick at the latest (a time <= now: at once).
Our own facts enter the board only through `receive_facts`, after the driver
stored them: nothing on the board (served to peers, shown to clients) is
unsaved, and a Persist before a Publish is on disk before the fact exists
anywhere. Until then the machine does not emit the same fact again.

Effects (performed by the driver, in list order)::

    Publish(fact)           store our new fact, give it back with receive_facts, gossip it
    RunBuild(job, offer, publisher)   start a build; report it with build_finished
    StopBuild(job)          cancel a running build (it still reports BuildFailed)
    ServeOutputs(job, manifest)       put the build's manifest blob, outputs and log in the blob store
    Persist(key, value)     write a kv entry ("worker/<job hex>", "trust") before what follows
    Prefetch(ref, publisher, limits)  on a claim: fetch a small source (and inputs) early, warm the runner (best effort)
    JobChanged(obj)         a job's verdict object changed (tell subscribers)
    NodeChanged()           this node's own state changed (phase, building set)

Rules owned here (the per-job ones live in `p2pci.core.worker`):

* Slots: a build holds a slot from RunBuild until build_finished. For a new
  claim (SEEN/WAITING) a CLAIMED job where this node is selected holds one
  too (it will build soon), and so does a claim whose job has no selection
  round yet (it may be selected); a stand-by claim (a round does not name
  this node) holds none, or workers waiting in case someone vanishes would
  starve every other job.
* Action -> fact: PublishClaim(lease) -> Claim(job, lease) (+ Prefetch: the
  source and a warm runner while the publisher selects), PublishCommit/
  PublishReveal -> Persist(worker job) first, so a restarted worker can still
  reveal; a reveal serves its outputs first.
* A job leaving CLAIMED/BUILDING frees a slot: the waiting jobs get a tick.
* Verdicts: every processed job is tallied with the observer policy
  (trust set + require); a pending job wakes at its deadline.
* Queries: `live_ids(now)` (what anti-entropy offers: everything except
  facts of jobs decided more than `RECENT_WINDOW_MS` past their deadline),
  `prune_keep()` (jobs that are not final: kept on disk), `job_obj`,
  `resolve_job`, `observer_policy`.

Extending: a publisher-side hook per job belongs in `_process` (after the
tally, before the worker step) and returns `Publish` effects via
`self._publish(body, now, effects)`; secrets to keep go out as `Persist`.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from p2pci.core.board import REFUSALS, Board, JobView, admit
from p2pci.core.errors import LocalError
from p2pci.core.identity import identity_bits
from p2pci.core.messages import MAX_DETAIL, BlobRef, Claim, Commit, Decline, Limits, Message, Offer, Require
from p2pci.core.selection import eligible_claim_ids, next_select, select_wakeup, selected, selection
from p2pci.core.signing import Fact, NodeKey, peer_id_of, seal
from p2pci.core.tally import ObserverPolicy, Verdict, tally, verdict_json
from p2pci.core.worker import (
    Action,
    BuildDone,
    BuildFailed,
    CancelBuild,
    GiveUp,
    PublishClaim,
    PublishCommit,
    PublishDecline,
    PublishReveal,
    StartBuild,
    Tick,
    WorkerConfig,
    WorkerJob,
    next_wakeup,
    worker_step,
)

log = logging.getLogger("p2pci.node")

RECENT_WINDOW_MS = 24 * 3600 * 1000  # finished jobs still offered to anti-entropy
PREFETCH_MAX = 16 << 20  # sources up to this size are fetched as soon as we claim
WORKER_KEY = "worker/"  # kv prefix of persisted worker jobs
ACCEPTING = ("open", "paused", "draining")  # donor controls (NodeMachine.set_accepting)
TRUST_KEY = "trust"
TRUST_MODE_KEY = "trust_mode"  # "all" | "listed"
SEED_KEY = "seed/"  # kv prefix of the selection seeds of our own offers (hex), written before the offer


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class NodeConfig:
    """The node's identity and protocol settings. `worker.me` must be `key.public`."""

    key: NodeKey
    worker: WorkerConfig
    builds: bool = True  # False: an observer that never claims
    require: Require | None = None  # the observer's own [trust] require
    identity: bytes = b""  # this key's identity nonce (p2pci.core.identity), carried by every claim
    # publisher: round 0 this long after `replicas` eligible claims are in, if that is before the
    # offer's window ends (docs/protocol.md section 5); None waits for the whole window
    select_grace_ms: int | None = 150
    # quotas on the board (`enforce_limits`): at most this many jobs, and offers per publisher key
    max_jobs: int = 4096
    max_offers_per_key: int = 64

    def __post_init__(self) -> None:
        if self.worker.me != self.key.public:
            raise LocalError("NodeConfig: worker.me is not this node's key")
        if self.worker.identity_bits is None:  # the worker declines offers its proof cannot meet
            bits = identity_bits(self.key.public, self.identity)
            object.__setattr__(self, "worker", replace(self.worker, identity_bits=bits))


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Publish:
    fact: Fact


@dataclass(frozen=True, slots=True)
class RunBuild:
    job: bytes
    offer: Offer
    publisher: bytes


@dataclass(frozen=True, slots=True)
class StopBuild:
    job: bytes


@dataclass(frozen=True, slots=True)
class ServeOutputs:
    job: bytes
    manifest: BlobRef  # the manifest blob (kept by the driver since BuildDone); served with the outputs


@dataclass(frozen=True, slots=True)
class Persist:
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class Prefetch:
    ref: BlobRef
    publisher: bytes
    limits: Limits | None = None  # the offer's: the driver may warm the runner for them (DockerRunner.warm)


@dataclass(frozen=True, slots=True)
class JobChanged:
    obj: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NodeChanged:
    pass


Effect = Publish | RunBuild | StopBuild | ServeOutputs | Persist | Prefetch | JobChanged | NodeChanged


# --------------------------------------------------------------------------- the machine


def _has_round(view: JobView) -> bool:
    """A valid selection round of the job's publisher is on the board (a real job in progress,
    or junk whose publisher selected its own claim)."""
    return view.offer is not None and bool(view.selects) and bool(selection(view).rounds)


@dataclass
class NodeMachine:
    """One node's decisions over every job it knows. Pure: no I/O, no clock, no randomness."""

    cfg: NodeConfig
    board: Board = field(default_factory=Board)
    jobs: dict[bytes, WorkerJob] = field(default_factory=dict)  # this node's worker state per job
    building: dict[bytes, int] = field(default_factory=dict)  # job -> when its build started (ms)
    trust: frozenset[bytes] = frozenset()
    trust_listed: bool = False  # count only `trust` (an empty listed set counts nobody)
    seeds: dict[bytes, bytes] = field(default_factory=dict)  # own offers: job -> selection seed
    regressions: int = 0  # verdicts that went from final back to PENDING (P7)
    errors: int = 0  # jobs whose processing raised (a bug on one job must not stop the node)
    accepting: str = "open"  # "open" | "paused" (donor: pause, or outside its schedule) | "draining"
    _events: dict[bytes, list[BuildDone | BuildFailed]] = field(default_factory=dict)
    _dirty: set[bytes] = field(default_factory=set)
    _wakeups: dict[bytes, int] = field(default_factory=dict)  # job -> when it is due (ms)
    # the same as a min-heap of (when, job), with stale entries (a later time, a job gone) skipped
    # when they come up: a tick and next_wakeup cost O(log jobs), not a scan of every job
    _wake_heap: list[tuple[int, bytes]] = field(default_factory=list)
    _verdicts: dict[bytes, Verdict] = field(default_factory=dict)
    _objs: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    _policy: ObserverPolicy | None = None
    _outbox: dict[bytes, bytes] = field(default_factory=dict)  # own facts handed out, not yet back: id -> job
    _selecting: dict[bytes, bytes] = field(default_factory=dict)  # job -> our select fact not yet back
    _enough_at: dict[bytes, int] = field(default_factory=dict)  # own offers: job -> when `replicas` claims were in
    evicted: dict[str, int] = field(default_factory=dict)  # quota evictions by reason (jobs)
    evicted_ids: list[bytes] = field(default_factory=list)  # fact ids evicted since the driver took them
    over_limit: int = 0  # times the board stayed over a bound because every job in it is protected
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))  # admission, by reason
    _offer_keys: set[bytes] = field(default_factory=set)  # publisher keys with a new offer since enforce

    @property
    def me(self) -> bytes:
        return self.cfg.key.public

    # ------------------------------------------------------------------ inputs

    def load(
        self,
        worker_jobs: Iterable[WorkerJob],
        trust: Iterable[bytes],
        *,
        trust_listed: bool | None = None,
        seeds: Mapping[bytes, bytes] | None = None,
    ) -> None:
        """State after a restart: the board's facts are already in `board`.

        `trust_listed` None: listed when `trust` is non-empty. `seeds`: the selection seeds
        of our own offers (SEED_KEY), so that selection goes on after a restart."""
        for wj in worker_jobs:
            self.jobs[wj.job] = wj.resume()
        self.trust = frozenset(trust)
        self.trust_listed = bool(self.trust) if trust_listed is None else trust_listed
        self.seeds.update(seeds or {})
        self._policy = None
        self._dirty.update(v.job for v in self.board.jobs())

    def admit_facts(self, facts: Sequence[Fact]) -> tuple[list[Fact], list[bytes]]:
        """Facts from the network, before the driver stores them (`p2pci.core.board.admit`): the
        ones to store and then give to `receive_facts` (in that order), and the ids refused
        (counted in `refused`; the driver forgets them as seen, so sync can bring them again)."""
        ok, refused = admit(self.board, facts)
        for _f, why in refused:
            self.refused[why] = self.refused.get(why, 0) + 1
        return ok, [f.id for f, _why in refused]

    def receive_facts(self, facts: Sequence[Fact], now: int) -> int:
        """Index verified facts (already stored by the driver); the number that were new."""
        new = 0
        selecting = self._selecting
        for fact in facts:
            self._outbox.pop(fact.id, None)
            if selecting and selecting.get(fact.job) == fact.id:  # (only a publisher selects)
                del selecting[fact.job]
            if self.board.add_fact(fact):
                new += 1
                self._dirty.add(fact.job)
                if fact.kind == "offer":
                    self._offer_keys.add(fact.signer)
        return new

    # ------------------------------------------------------------------ quotas

    def involved(self, view: JobView) -> bool:
        """A job the quotas never evict: our own, or one this node takes part in (claimed,
        building, committed, revealed)."""
        job, me = view.job, self.me
        if job in self.seeds or job in self.jobs or job in self.building or job in self._selecting:
            return True
        if view.offer is not None and view.offer.signer == me:
            return True
        return me in view.claims or me in view.commits or me in view.reveals

    def protected(self, view: JobView) -> bool:
        """`involved`, or a job with a valid selection round (a real job in progress, or one that
        looks like it): sync lists these first. Eviction shelters only some of the selected ones
        (`_sheltered`): a publisher can select its own claim in its own junk."""
        return self.involved(view) or _has_round(view)

    def _sheltered(self) -> set[bytes]:
        """Selected jobs this node has no part in that eviction passes over: the oldest
        `max_jobs // 2` of them. Any key can claim its own offer (identity_bits 0) and select
        that claim, so junk can look selected; it may fill this half, never the whole board."""
        out: set[bytes] = set()
        cap = self.cfg.max_jobs // 2
        for view in self.board.jobs():
            if len(out) >= cap:
                break
            if _has_round(view) and not self.involved(view):
                out.add(view.job)
        return out

    def _victims(self, jobs: Iterable[bytes], sheltered: set[bytes]) -> Iterable[bytes]:
        """Evictable jobs among `jobs`, oldest first: a job just received is the last to go, so
        a worker gets to claim a fresh offer however much junk fills the board. (Jobs somebody
        claimed went after unclaimed ones; a claim of one's own junk costs nothing, so with a
        board of such junk every fresh offer was evicted as it arrived.)"""
        for job in jobs:
            view = self.board.job(job)
            if view is None or job in sheltered or self.involved(view):
                continue
            yield job

    def _evict(self, job: bytes, reason: str) -> None:
        self.evicted_ids.extend(self.board.remove_job(job))
        for d in (self._wakeups, self._verdicts, self._objs, self._events):
            d.pop(job, None)
        self._dirty.discard(job)
        self.evicted[reason] = self.evicted.get(reason, 0) + 1

    def enforce_limits(self) -> list[bytes]:
        """Keep the board within `max_offers_per_key` and `max_jobs`, evicting the oldest jobs
        this node has no part in (`involved`) and that are not `_sheltered`. Returns the evicted
        job ids: the driver deletes their facts from its store. Call after `receive_facts`."""
        out: list[bytes] = []
        cap = self.cfg.max_offers_per_key
        keys, self._offer_keys = self._offer_keys, set()
        sheltered: set[bytes] | None = None
        for signer in sorted(keys):
            jobs = self.board.offers_by.get(signer, {})
            excess = len(jobs) - cap
            if excess <= 0:
                continue
            if sheltered is None:
                sheltered = self._sheltered()
            for job in self._victims(list(jobs), sheltered):
                self._evict(job, "offers_per_key")
                out.append(job)
                excess -= 1
                if excess <= 0:
                    break
            if excess > 0:
                self.over_limit += 1
        excess = self.board.job_count() - self.cfg.max_jobs
        if excess > 0:
            if sheltered is None:
                sheltered = self._sheltered()
            for job in self._victims([v.job for v in self.board.jobs()], sheltered):
                self._evict(job, "jobs_per_node")
                out.append(job)
                excess -= 1
                if excess <= 0:
                    break
            if excess > 0:
                self.over_limit += 1
        return out

    def publish(self, body: Message, now: int) -> tuple[Fact, list[Effect]]:
        """Sign a fact of our own; the effects publish it (and give it back to `receive_facts`)."""
        effects: list[Effect] = []
        fact = self._publish(body, effects)
        return fact, effects

    def publish_offer(self, offer: Offer, seed: bytes, now: int) -> tuple[Fact, list[Effect]]:
        """Sign our own offer. The seed (from the driver's randomness; `offer.select_commit` must be
        sha256(seed)) is persisted before the offer is published; this machine then signs the
        selection rounds (`next_select`) until the job is decided."""
        if hashlib.sha256(seed).digest() != offer.select_commit:
            raise LocalError("offer.select_commit is not sha256(seed)")
        fact = seal(self.cfg.key, offer)
        effects: list[Effect] = [Persist(SEED_KEY + fact.id.hex(), seed.hex())]
        self.seeds[fact.id] = seed
        self._publish(offer, effects)
        return fact, effects

    def build_finished(self, job: bytes, event: BuildDone | BuildFailed, now: int) -> None:
        """A build of ours ended (cancelled ones too): its slot is free, the event waits for `tick`."""
        self.building.pop(job, None)
        self._events.setdefault(job, []).append(event)
        self._dirty.add(job)
        self._slot_freed()

    def set_trust(self, keys: Iterable[bytes], *, listed: bool | None = None) -> list[Effect]:
        """The observer's trust set is now `keys`: every job is tallied again.

        `listed`: the mode ("listed" counts only `keys`, even none; "all" every vote the
        offer allows); None keeps the mode, except that adding keys switches to listed.
        Removing the last key never widens the set (fail closed)."""
        new = frozenset(keys)
        effects: list[Effect] = []
        mode = listed if listed is not None else (self.trust_listed or bool(new - self.trust))
        if mode != self.trust_listed or listed is not None:
            effects.append(Persist(TRUST_MODE_KEY, "listed" if mode else "all"))
        self.trust, self.trust_listed = new, mode
        self._policy = None
        self._dirty.update(v.job for v in self.board.jobs())
        self._objs.clear()  # `job_obj` recomputes with the new policy until the next tick
        effects.append(Persist(TRUST_KEY, sorted(peer_id_of(k) for k in self.trust)))
        return effects

    def set_accepting(self, mode: str) -> list[Effect]:
        """Donor controls: "open" (take work), "paused" (no new claims; claims not yet building
        are declined with reason `paused`; running builds finish, commit and reveal), "draining"
        (paused, and the driver stops once `drained()`)."""
        if mode not in ACCEPTING:
            raise LocalError(f"accepting must be one of {', '.join(ACCEPTING)}, not {mode!r:.40}")
        if mode == self.accepting:
            return []
        self.accepting = mode
        self._slot_freed()  # waiting and claimed jobs decide again
        return [NodeChanged()]

    def drained(self) -> bool:
        """Draining, no build of ours runs, every result is committed and nothing is left to
        decide now (a reveal that can go out has gone out; one that waits for others is persisted:
        a restarted worker reveals it)."""
        return (
            self.accepting == "draining"
            and not self.building
            and not self._dirty
            and not self._events
            and all(w.phase != "BUILT" for w in self.jobs.values())
        )

    def tick(self, now: int) -> list[Effect]:
        """Decide for every job that changed or whose wake-up time came."""
        todo = self._dirty | self._due(now)
        self._dirty = set()
        effects: list[Effect] = []
        for job in sorted(todo):
            mark = len(effects)
            try:
                self._process(job, now, effects)
            except Exception:  # a bug on one job must not take the node down
                del effects[mark:]
                self.errors += 1
                log.exception("processing job %s failed", job.hex()[:12])
        return effects

    def _due(self, now: int) -> set[bytes]:
        """The jobs whose wake-up time came (<= now), taken off the schedule."""
        due: set[bytes] = set()
        heap, wakeups = self._wake_heap, self._wakeups
        while heap and heap[0][0] <= now:
            t, j = heapq.heappop(heap)
            if wakeups.get(j) == t:
                del wakeups[j]
                due.add(j)
        return due

    def next_wakeup(self) -> int | None:
        """When to `tick` at the latest: None (only new inputs), or a time (<= now: at once)."""
        if self._dirty:
            return -1
        heap, wakeups = self._wake_heap, self._wakeups
        while heap and wakeups.get(heap[0][1]) != heap[0][0]:  # stale: a job gone or moved earlier
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # ------------------------------------------------------------------ decisions

    def _process(self, job: bytes, now: int, effects: list[Effect]) -> None:
        view = self.board.job(job)
        if view is None or view.offer is None:
            return
        verdict = tally(view, now, self.observer_policy())
        before = self._verdicts.get(job)
        if before is not None and before.final and not verdict.final:
            # P7: a verdict that lost votes (an equivocation found after the fact) is PENDING
            # again and selection goes on: reported, not hidden
            self.regressions += 1
            log.warning("job %s: %s went back to %s (votes lost)", job.hex()[:12], before.state, verdict.state)
        self._verdicts[job] = verdict
        obj = verdict_json(view, verdict)
        if self._objs.get(job) != obj:
            self._objs[job] = obj
            effects.append(JobChanged(obj))
        if verdict.state == "PENDING":
            offer = view.offer_msg
            assert offer is not None
            self._wake_at(job, offer.deadline)
        if job in self.seeds and not verdict.final:
            self._select(view, now, effects)
        if self.cfg.builds:
            self._work(view, verdict, now, effects)

    def _select(self, view: JobView, now: int, effects: list[Effect]) -> None:
        """Publisher side (protocol v2): round 0 once the offer's claim window is over, later
        rounds when a ranked worker declined or did not commit by its lease end."""
        offer = view.offer_msg
        assert offer is not None
        if view.job in self._selecting:
            return  # our last round is not back yet: another now would be a second, different one
        close_at = offer.created + offer.claim_window
        # round 0 at the window's end once `replicas` eligible claims are in, or earlier: a grace
        # period after they were in (late claims still compete); with fewer, one more window of
        # grace for late claims (a slow mesh), then with whoever claimed
        grace_at = close_at + offer.claim_window
        enough = len(eligible_claim_ids(view, now)) >= offer.replicas
        grace = self.cfg.select_grace_ms
        if selection(view).rounds:
            self._enough_at.pop(view.job, None)  # round 0 is out: the grace is over
        elif enough and grace is not None:
            close_at = min(close_at, self._enough_at.setdefault(view.job, now) + grace)
        close = now >= grace_at or (now >= close_at and enough)
        body = next_select(view, self.seeds[view.job], now, close=close)
        if body is not None:
            fact = self._publish(body, effects)
            self._selecting[view.job] = fact.id
        self._wake_at(view.job, select_wakeup(view, now, close_at if enough else grace_at))

    def _work(self, view: JobView, verdict: Verdict, now: int, effects: list[Effect]) -> None:
        job = view.job
        wj = self.jobs.get(job)
        if wj is None:
            if verdict.final:
                return  # decided before we saw it: nothing to do
            wj = WorkerJob.new(job, now)
        events: list[BuildDone | BuildFailed | Tick] = list(self._events.pop(job, []))
        if wj.terminal and not events:
            return
        before = wj.phase
        events.append(Tick())
        for ev in events:
            if isinstance(ev, Tick):
                paused = self.accepting != "open"
                ev = Tick(free_slot=not paused and self._free_slot(job, wj.phase, now), paused=paused)
            wj, actions = worker_step(wj, view, now, self.cfg.worker, ev)
            self.jobs[job] = wj
            for action in actions:
                self._act(view, wj, action, now, effects)
        if wj.phase != before:
            if wj.phase not in ("SEEN", "WAITING", "SKIPPED"):
                effects.append(self._persist(wj))
            effects.append(NodeChanged())
            if before in ("CLAIMED", "BUILDING"):
                self._slot_freed()
        self._wake_at(job, next_wakeup(wj, view, now))

    def _free_slot(self, job: bytes, phase: str, now: int) -> bool:
        """Builds running, plus (for a new claim) claims where we are selected and will build soon."""
        busy = sum(1 for j in self.building if j != job)
        if phase in ("SEEN", "WAITING"):
            unsent = set(self._outbox.values())  # a claim just made counts as selected until it is back
            for j, w in self.jobs.items():
                if j != job and w.phase == "CLAIMED":
                    v = self.board.job(j)
                    # v2: a claim whose job has no selection round yet may be selected: it holds
                    # a slot until the round says otherwise (else a worker claims every job at once
                    # and is then selected for more than it can build)
                    if j in unsent or (
                        v is not None and (self.me in selected(v, now) or not selection(v).rounds)
                    ):
                        busy += 1
        return busy < self.cfg.worker.policy.slots

    def _act(self, view: JobView, wj: WorkerJob, action: Action, now: int, effects: list[Effect]) -> None:
        offer, offer_fact = view.offer_msg, view.offer
        assert offer is not None and offer_fact is not None
        if isinstance(action, PublishClaim):
            self._publish(Claim(job=wj.job, lease_until=action.lease_until, identity=self.cfg.identity), effects)
            # the driver fetches a small source (<= PREFETCH_MAX) and warms the runner for the limits
            effects.append(Prefetch(offer.source, offer_fact.signer, offer.limits))
            if offer.inputs is not None and offer.inputs.size <= PREFETCH_MAX:  # pinned inputs travel like the source
                effects.append(Prefetch(offer.inputs, offer_fact.signer))
        elif isinstance(action, StartBuild):
            self.building[wj.job] = now
            effects.append(RunBuild(wj.job, offer, offer_fact.signer))
        elif isinstance(action, PublishCommit):
            effects.append(self._persist(wj))  # salt and result on disk before anyone sees the commit
            self._publish(Commit(job=wj.job, hash=action.hash), effects)
        elif isinstance(action, PublishReveal):
            effects.append(self._persist(wj))
            assert wj.manifest is not None
            effects.append(ServeOutputs(wj.job, wj.manifest))
            self._publish(action.reveal, effects)
        elif isinstance(action, PublishDecline):
            detail = "".join(c if c.isprintable() or c == "\n" else "?" for c in action.detail)
            self._publish(
                Decline(job=wj.job, reason=action.code, detail=detail[-MAX_DETAIL:], log=action.log), effects
            )
        elif isinstance(action, CancelBuild):
            if wj.job in self.building:
                effects.append(StopBuild(wj.job))
        elif isinstance(action, GiveUp):
            log.info("job %s: %s", wj.job.hex()[:12], action.reason)
            if wj.job in self.building and wj.phase == "GAVE_UP" and not any(
                isinstance(e, StopBuild) and e.job == wj.job for e in effects
            ):
                effects.append(StopBuild(wj.job))

    def _publish(self, body: Message, effects: list[Effect]) -> Fact:
        fact = seal(self.cfg.key, body)
        if fact.id not in self._outbox and not self.board.has(fact.id):
            self._outbox[fact.id] = fact.job
            effects.append(Publish(fact))
        return fact

    def _persist(self, wj: WorkerJob) -> Persist:
        return Persist(WORKER_KEY + wj.job.hex(), wj.to_obj())

    def _slot_freed(self) -> None:
        for j, w in self.jobs.items():
            if w.phase in ("SEEN", "WAITING", "CLAIMED"):
                self._dirty.add(j)

    def _wake_at(self, job: bytes, when: int | None) -> None:
        if when is None:
            return
        old = self._wakeups.get(job)
        if old is None or when < old:
            self._wakeups[job] = when
            heap = self._wake_heap
            if len(heap) > 2 * len(self._wakeups) + 64:  # mostly stale entries: rebuilt from the dict
                heap[:] = [(t, j) for j, t in self._wakeups.items()]
                heapq.heapify(heap)
            else:
                heapq.heappush(heap, (when, job))

    # ------------------------------------------------------------------ queries

    def observer_policy(self) -> ObserverPolicy:
        if self._policy is None:
            # fail closed: in listed mode an empty set counts nobody, it never means "everyone"
            trust = self.trust if self.trust_listed else None
            self._policy = ObserverPolicy(trust=trust, require=self.cfg.require)
        return self._policy

    def verdict(self, job: bytes, now: int) -> Verdict:
        view = self.board.job(job)
        if view is None or view.offer is None:
            raise LocalError(f"no job {job.hex()[:12]}")
        return tally(view, now, self.observer_policy())

    def tail_targets(self, now: int) -> set[tuple[bytes, str]]:
        """(job, worker peer id) of each other worker the current round of one of our undecided
        jobs selected that has neither revealed nor declined (phase `selected` or `committed` in
        `worker_rows`): whose live log the publisher's daemon asks for while a control client
        listens (docs/protocol.md §8.6). A key that claimed and committed unselected is not asked."""
        out: set[tuple[bytes, str]] = set()
        for view in self.board.jobs():
            if view.offer is None or view.offer.signer != self.me:
                continue
            verdict = self.verdict(view.job, now)
            if verdict.final:
                continue
            for k in verdict.selection.current:
                if k != self.me and k not in view.reveals and k not in view.declines:
                    out.add((view.job, peer_id_of(k)))
        return out

    def job_obj(self, job: bytes, now: int) -> dict[str, Any]:
        """The job object last announced (JobChanged), else computed now."""
        obj = self._objs.get(job)
        return obj if obj is not None else self.fresh_job_obj(job, now)

    def fresh_job_obj(self, job: bytes, now: int) -> dict[str, Any]:
        view = self.board.job(job)
        if view is None or view.offer is None:
            raise LocalError(f"no job {job.hex()[:12]}")
        return verdict_json(view, tally(view, now, self.observer_policy()))

    def job_list(self, now: int) -> list[dict[str, Any]]:
        """Every known job, newest first."""
        views = [v for v in self.board.jobs() if v.offer_msg is not None]
        views.sort(key=lambda v: (-v.offer_msg.created if v.offer_msg else 0, v.job))
        return [self.job_obj(v.job, now) for v in views]

    def resolve_job(self, prefix: Any) -> JobView:
        """The job whose id starts with the hex `prefix` (unique, like git)."""
        if not isinstance(prefix, str) or not prefix:
            raise LocalError("a job id (hex prefix) is required")
        p = prefix.lower()
        if any(c not in "0123456789abcdef" for c in p):
            raise LocalError(f"not a hex job id: {prefix!r:.80}")
        matches = [v for v in self.board.jobs() if v.offer is not None and v.job.hex().startswith(p)]
        if not matches:
            raise LocalError(f"no job {prefix}")
        if len(matches) > 1:
            raise LocalError(f"job prefix {prefix} is ambiguous ({len(matches)} jobs)")
        return matches[0]

    def live_ids(self, now: int) -> list[bytes]:
        """Fact ids offered to anti-entropy: all but those of jobs decided long ago, each job's
        offer and claims before its other facts.

        Protected jobs (`protected`: selected, ours, ours to build) come first, so that a
        window cut at its end (wire.MAX_IDS, the sync byte budget) loses junk, never them."""
        out: list[bytes] = []
        rest: list[bytes] = []
        for view in self.board.jobs():
            st = self._verdicts.get(view.job)
            offer = view.offer_msg
            if st is not None and st.final and offer is not None and now - offer.deadline > RECENT_WINDOW_MS:
                continue
            into = out if self.protected(view) else rest
            # a job's offer, then its claims, then the rest: a peer that takes them in this order
            # holds a commit's or reveal's claim before it (admission refuses them without one)
            head = view.offer.id if view.offer is not None else None
            if head is not None:
                into.append(head)
            claims = view.claim_ids
            into.extend(claims)
            into.extend(i for i in view.ids if i != head and i not in claims)
        return out + rest

    def prune_keep(self, now: int | None = None) -> list[bytes]:
        """Jobs whose facts stay on disk whatever their age: every job without a final verdict.

        `now`: a job whose verdict is not computed yet (loaded at start and not ticked since, or
        changed since the last tick) is tallied here, so that a prune right after a restart
        does not keep every job (the retention prune runs as the daemon starts)."""
        keep = []
        for v in self.board.jobs():
            st = self._verdicts.get(v.job)
            if now is not None and v.offer is not None and (st is None or v.job in self._dirty):
                st = tally(v, now, self.observer_policy())
            if st is None or not st.final:
                keep.append(v.job)
        return keep


__all__ = [
    "ACCEPTING",
    "NodeConfig",
    "NodeMachine",
    "Effect",
    "Publish",
    "RunBuild",
    "StopBuild",
    "ServeOutputs",
    "Persist",
    "Prefetch",
    "JobChanged",
    "NodeChanged",
    "RECENT_WINDOW_MS",
    "SEED_KEY",
    "TRUST_MODE_KEY",
    "PREFETCH_MAX",
]
