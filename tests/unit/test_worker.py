"""The worker state machine: table-driven, pure, driven here by a tiny simulated daemon."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from p2pci.core.board import Board
from p2pci.core.errors import LocalError
from p2pci.core.messages import BlobRef, Claim, Commit
from p2pci.core.selection import next_select, selection
from p2pci.core.signing import NodeKey, seal
from p2pci.core.tally import tally
from p2pci.core.worker import (
    TRANSITIONS,
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
    WorkerPolicy,
    eligible,
    next_wakeup,
    reveal_deadline,
    salt_for,
    worker_step,
)

from .jobgen import SEED, JobSim, h, key, make_offer, manifest_for

T0 = 1_000_000
LEASE = 10_000
WINDOW = 2_000


@dataclass
class Daemon:
    """Acts on a worker's actions against one shared board (a perfect network)."""

    k: NodeKey
    board: Board
    job: bytes
    content: bytes = b"good"
    cfg: WorkerConfig = field(init=False)
    wj: WorkerJob = field(init=False)
    building: bool = False
    log: list[Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cfg = WorkerConfig(
            self.k.public, lease_ms=LEASE, claim_window_ms=WINDOW, salt_secret=self.k.seed
        )
        self.wj = WorkerJob.new(self.job, T0)

    def step(self, now: int, event: Tick | BuildDone | BuildFailed | None = None) -> list[Action]:
        view = self.board.job(self.job)
        assert view is not None
        self.wj, actions = worker_step(self.wj, view, now, self.cfg, event or Tick())
        self.log.extend(actions)
        for a in actions:
            if isinstance(a, PublishClaim):
                self.board.add(seal(self.k, Claim(self.job, a.lease_until)).raw, now)
            elif isinstance(a, PublishCommit):
                self.board.add(seal(self.k, Commit(self.job, a.hash)).raw, now)
            elif isinstance(a, PublishReveal):
                self.board.add(seal(self.k, a.reveal).raw, now)
            elif isinstance(a, StartBuild):
                self.building = True
            elif isinstance(a, (CancelBuild, GiveUp)):
                self.building = False
        publisher_step(self.board, self.job, now)
        return actions

    def finish_build(self, now: int, exit_code: int = 0) -> list[Action]:
        assert self.building
        self.building = False
        return self.step(now, BuildDone.of(exit_code, manifest_for(self.content), BlobRef(h(b"log"), 3)))


def setup(n: int, replicas: int = 3, quorum: int = 2, **kw: object) -> tuple[JobSim, Board, list[Daemon]]:
    sim = JobSim(
        make_offer(
            key("publisher"), replicas=replicas, quorum=quorum, created=T0, deadline=T0 + 600_000, **kw
        )
    )  # type: ignore[arg-type]
    board = Board()
    board.add(sim.offer_fact.raw, T0)
    daemons = [Daemon(key(f"w{i}"), board, sim.job) for i in range(n)]
    return sim, board, daemons


def publisher_step(board: Board, job: bytes, now: int) -> bool:
    """The publisher's side (protocol v2): a `select` round once the claim window is over.
    (Until the NodeMachine drives the publisher, the test harness does.)"""
    view = board.job(job)
    assert view is not None and view.offer_msg is not None
    body = next_select(view, SEED, now, close=now >= view.offer_msg.created + WINDOW)
    if body is None:
        return False
    return board.add(seal(key("publisher"), body).raw, now).status == "new"


def run_until_quiet(daemons: list[Daemon], now: int) -> None:
    for _ in range(10):
        acted = any([d.step(now) for d in daemons])  # every daemon steps each round
        selected = publisher_step(daemons[0].board, daemons[0].job, now) if daemons else False
        if not acted and not selected:
            return


def test_three_workers_reach_reproduced() -> None:
    sim, board, ds = setup(3)
    for d in ds:
        assert d.step(T0) == []  # claim window
        assert d.wj.phase == "WAITING"
    now = T0 + WINDOW
    run_until_quiet(ds, now)
    assert all(d.wj.phase == "BUILDING" for d in ds)
    for d in ds:
        d.finish_build(now + 100)
    run_until_quiet(ds, now + 100)
    assert all(d.wj.phase == "REVEALED" for d in ds), [d.wj.phase for d in ds]
    view = board.job(sim.job)
    assert view is not None
    v = tally(view, now + 100)
    assert v.state == "REPRODUCED" and len(v.groups[0].workers) == 3


def test_only_replicas_claim_and_next_in_line_takes_over_an_expired_lease() -> None:
    sim, board, ds = setup(4, replicas=2, quorum=2)
    now = T0 + WINDOW
    for d in ds:
        d.step(T0)
    run_until_quiet(ds, now)
    view = board.job(sim.job)
    assert view is not None
    claimed = [d for d in ds if d.wj.phase == "BUILDING"]
    waiting = [d for d in ds if d.wj.phase != "BUILDING"]
    assert len(claimed) == 2 and {d.wj.phase for d in waiting} <= {"WAITING", "CLAIMED"}
    # The best-ranked builder vanishes (no renewals, no commit): its lease runs out.
    vanished, stayer = claimed
    ds2 = [d for d in ds if d is not vanished]
    t = now
    while not any(d.wj.phase == "BUILDING" for d in waiting):
        nxt = min(x for d in ds2 if (x := next_wakeup(d.wj, view, t)) is not None)
        assert nxt > t
        t = nxt
        run_until_quiet(ds2, t)
        assert t < now + 5 * LEASE
    assert t >= now + LEASE  # not before the lease expired
    assert stayer.wj.phase == "BUILDING"  # its lease was renewed on the way
    assert any(isinstance(a, PublishClaim) and a.lease_until > now + LEASE for a in stayer.log)


def test_renews_lease_at_half() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    d.step(T0)
    d.step(T0 + WINDOW)
    d.step(T0 + WINDOW)
    assert d.wj.phase == "BUILDING"
    assert d.step(T0 + WINDOW + LEASE // 2 - 1) == []
    acts = d.step(T0 + WINDOW + LEASE // 2)
    assert acts == [PublishClaim(T0 + WINDOW + LEASE // 2 + LEASE)]


def test_reveal_waits_for_selected_commits_or_deadline() -> None:
    sim, board, ds = setup(2, replicas=2, quorum=2)
    a, b = ds
    now = T0 + WINDOW
    for d in ds:
        d.step(T0)
    run_until_quiet(ds, now)
    a.finish_build(now)
    a.step(now)
    assert a.wj.phase == "COMMITTED"  # b has not committed: wait
    assert not any(isinstance(x, PublishReveal) for x in a.log)
    view = board.job(sim.job)
    assert view is not None
    # wake up when b's lease runs out (if b vanished), at the latest at the reveal deadline
    assert b.wj.lease_until is not None and b.wj.lease_until < reveal_deadline(sim.offer)
    assert next_wakeup(a.wj, view, now) == b.wj.lease_until
    b.finish_build(now + 1)
    a.step(now + 1)
    assert a.wj.phase == "REVEALED"
    # A lone committed worker reveals at the reveal deadline.
    sim2, board2, (c, _) = setup(2, replicas=2, quorum=2)
    c.step(T0)
    c.step(now)
    c.step(now)
    c.finish_build(now)
    dl = reveal_deadline(sim2.offer)
    assert dl == T0 + 60_000 + 30_000
    c.step(now)
    assert c.wj.phase == "COMMITTED"
    c.step(dl - 1)
    assert c.wj.phase == "COMMITTED"
    c.step(dl)
    assert c.wj.phase == "REVEALED"


def test_reveal_seen_lists_commits_held_before_first_reveal() -> None:
    sim, board, ds = setup(3)
    now = T0 + WINDOW
    for d in ds:
        d.step(T0)
    run_until_quiet(ds, now)
    for d in ds:
        d.finish_build(now)
    run_until_quiet(ds, now)
    view = board.job(sim.job)
    assert view is not None
    commit_ids = set(view.commit_ids)
    for d in ds:
        rev = next(a.reveal for a in d.log if isinstance(a, PublishReveal))
        assert set(rev.seen) == commit_ids
    # a commit arriving after the first reveal is not in a later revealer's seen
    assert view.seen_ids_at_first_reveal() == frozenset(commit_ids)
    assert view.seen_at_first_reveal == len(commit_ids)


def test_cancel_while_building_cancels_the_build() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    d.step(T0)
    d.step(T0 + WINDOW)
    d.step(T0 + WINDOW)
    assert d.wj.phase == "BUILDING"
    board.add(sim.cancel().raw, T0 + WINDOW)
    acts = d.step(T0 + WINDOW + 1)
    assert acts == [CancelBuild(), GiveUp("job cancelled")]
    assert d.wj.phase == "GAVE_UP"


def test_build_failed_gives_up() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    for t in (T0, T0 + WINDOW, T0 + WINDOW):
        d.step(t)
    acts = d.step(T0 + WINDOW, BuildFailed("timed out after 5s", code="timeout", detail="tail"))
    assert acts == [GiveUp("build failed: timed out after 5s"), PublishDecline("timeout", "tail")]
    assert d.wj.phase == "GAVE_UP"


@pytest.mark.parametrize(("files", "size"), [(1_000_001, 100 << 20), (10, (256 << 20) + 1), (3, 10)])
def test_a_result_beyond_the_manifest_limits_declines_outputs_and_never_commits(files: int, size: int) -> None:
    """The old failure (issue 20): a result that cannot be revealed (once: an inline manifest over
    64 KiB) left the worker REVEALED with nothing published until the job EXPIRED. Now such a
    result is declined once, with reason `outputs`, before any commit."""
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    for t in (T0, T0 + WINDOW, T0 + WINDOW):
        d.step(t)
    assert d.building
    log = BlobRef(h(b"log"), 3)
    acts = d.step(T0 + WINDOW, BuildDone(0, BlobRef(h(b"m"), size), files, h(b"digest"), log))
    assert d.wj.phase == "GAVE_UP" and not any(isinstance(a, PublishCommit) for a in acts)
    (decline,) = [a for a in acts if isinstance(a, PublishDecline)]
    assert decline.code == "outputs" and "outputs cannot be reported" in decline.detail and decline.log == log
    assert d.step(T0 + WINDOW + 1) == [] and d.step(T0 + 500_000) == []  # once: no loop, no commit


def test_cancelled_build_publishes_no_decline() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    for t in (T0, T0 + WINDOW, T0 + WINDOW):
        d.step(t)
    acts = d.step(T0 + WINDOW, BuildFailed("cancelled", code=""))
    assert acts == [GiveUp("build failed: cancelled")]


def test_final_verdict_before_building_gives_up_but_a_running_build_continues() -> None:
    sim, board, ds = setup(4, replicas=3, quorum=2)
    late = ds[3]
    # three others already reached a verdict through the sim
    sim.honest_round([(key("x"), b"good", 0), (key("y"), b"good", 0)])
    for f in sim.facts[1:]:
        board.add(f.raw, T0)
    late.step(T0)
    assert late.wj.phase == "SKIPPED" and "REPRODUCED" in late.wj.reason
    # the same verdict reaching a worker that is already building does not stop its build
    sim2, board2, ds2 = setup(1, replicas=3, quorum=2)
    busy = ds2[0]
    for t in (T0, T0 + WINDOW, T0 + WINDOW):
        busy.step(t)
    assert busy.wj.phase == "BUILDING" and busy.building
    # x and y claim late; the publisher's round 1 fills the two free places with them (busy keeps
    # its place); they build, commit and reveal the same result: REPRODUCED without busy
    x, y = key("x"), key("y")
    for k in (x, y):
        board2.add(sim2.claim(k, lease_until=T0 + WINDOW + LEASE).raw, T0 + WINDOW)
    assert publisher_step(board2, sim2.job, T0 + WINDOW)
    view = board2.job(sim2.job)
    assert view is not None and selection(view).current == tuple(sorted((busy.k.public, x.public, y.public)))
    built = [(k, sim2.built(k)) for k in (x, y)]
    for k, b in built:
        board2.add(sim2.commit(k, b).raw, T0 + WINDOW)
    for k, b in built:
        board2.add(sim2.reveal(k, b).raw, T0 + WINDOW)
    view = board2.job(sim2.job)
    assert view is not None and tally(view, T0 + WINDOW).state == "REPRODUCED"
    acts = busy.step(T0 + WINDOW + 1)
    assert not any(isinstance(a, (CancelBuild, GiveUp)) for a in acts)
    assert busy.wj.phase == "BUILDING" and busy.building
    done = busy.finish_build(T0 + WINDOW + 2)
    assert any(isinstance(a, PublishCommit) for a in done)  # and its result still counts


def test_expired_job_is_skipped_and_stops_a_build() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    d.step(T0)
    d.step(T0 + WINDOW)
    d.step(T0 + WINDOW)
    assert d.wj.phase == "BUILDING"
    acts = d.step(sim.offer.deadline)
    assert acts == [CancelBuild(), GiveUp("job expired")]
    sim2, board2, ds2 = setup(1)
    ds2[0].step(sim2.offer.deadline)
    assert ds2[0].wj.phase == "SKIPPED" and ds2[0].wj.reason == "job expired"


def test_no_free_slot_waits() -> None:
    sim, board, ds = setup(1)
    d = ds[0]
    d.step(T0)
    assert d.step(T0 + WINDOW, Tick(free_slot=False)) == []
    assert d.wj.phase == "WAITING"
    assert isinstance(d.step(T0 + WINDOW)[0], PublishClaim)


def test_eligibility() -> None:
    me = key("me").public
    offer = make_offer(key("publisher"))
    assert eligible(offer, WorkerPolicy(), me) is None
    assert eligible(offer, WorkerPolicy(open_jobs=False), me) == "open jobs are disabled"
    assert eligible(offer, WorkerPolicy(max_timeout_s=10), me) is not None
    assert eligible(offer, WorkerPolicy(max_memory_mb=10), me) is not None
    assert eligible(offer, WorkerPolicy(images=frozenset({"sha256:" + "0" * 64})), me) is not None
    allow = make_offer(key("publisher"), workers=(key("other").public,))
    assert eligible(allow, WorkerPolicy(), me) == "not in the offer's allowlist"
    assert eligible(allow, WorkerPolicy(open_jobs=False), key("other").public) is None


def test_ineligible_worker_skips() -> None:
    sim, board, ds = setup(1, workers=(key("someone-else").public,))
    assert ds[0].step(T0) == []
    assert ds[0].wj.phase == "SKIPPED"


def test_irrelevant_events_are_ignored_and_table_is_the_only_dispatch() -> None:
    sim, board, ds = setup(1)
    d = ds[0]
    before = d.wj
    assert d.step(T0, BuildDone.of(0, (), BlobRef(h(b""), 0))) == []
    assert d.wj == before
    assert set(TRANSITIONS) >= {("SEEN", Tick), ("BUILDING", BuildDone), ("COMMITTED", Tick)}
    for phase in ("REVEALED", "SKIPPED", "GAVE_UP"):
        assert not any(p == phase for p, _ in TRANSITIONS)


def test_salt_is_deterministic_per_secret_and_job() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    for t in (T0, T0 + WINDOW, T0 + WINDOW):
        d.step(t)
    d.finish_build(T0 + WINDOW)
    assert d.wj.salt is not None and len(d.wj.salt) == 16
    assert d.wj.salt == salt_for(d.k.seed, sim.job)  # the same after a restart
    assert salt_for(b"\x07" * 32, sim.job) != d.wj.salt  # another node's secret: another salt
    assert salt_for(d.k.seed, b"\x00" * 32) != d.wj.salt  # another job: another salt


def test_missing_salt_secret_is_a_local_error() -> None:
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    d.cfg = WorkerConfig(d.k.public, lease_ms=LEASE, claim_window_ms=WINDOW)
    for t in (T0, T0 + WINDOW, T0 + WINDOW):
        d.step(t)
    with pytest.raises(LocalError, match="salt_secret"):
        d.finish_build(T0 + WINDOW)


def test_a_claimed_worker_with_no_free_slot_lets_its_lease_lapse() -> None:
    """Selected here but busy with other builds: it must not hold the place until the lease cap.
    It does not renew, so the publisher replaces it when the lease ends; with a slot free again
    (before that) it builds and renews as usual."""
    sim, board, ds = setup(1, replicas=1, quorum=1)
    d = ds[0]
    d.step(T0)
    d.step(T0 + WINDOW)  # claims (a slot was free then); the publisher selects it
    d.step(T0 + WINDOW, Tick(free_slot=False))  # meanwhile another job took the slot
    assert d.wj.phase == "CLAIMED" and not d.building  # selected, no slot
    claims = [a for a in d.log if isinstance(a, PublishClaim)]
    assert len(claims) == 1
    half = claims[0].lease_until - LEASE // 2
    assert d.step(half, Tick(free_slot=False)) == []  # no renewal while every slot is busy
    acts = d.step(half + 1, Tick(free_slot=True))  # a slot freed: renew and build
    assert PublishClaim(half + 1 + LEASE) in acts and StartBuild() in acts


def sybil_pair(sim: JobSim, board: Board, now: int, content: bytes = b"evil") -> list[NodeKey]:
    """Two keys that never claimed commit and reveal, each reveal listing the other's commit."""
    pair = [key("sybil-a"), key("sybil-b")]
    built = [sim.built(k, content) for k in pair]
    commits = [sim.commit(k, b) for k, b in zip(pair, built, strict=True)]
    seen = tuple(sorted(c.id for c in commits))
    for f in [*commits, *(sim.reveal(k, b, seen) for k, b in zip(pair, built, strict=True))]:
        board.add(f.raw, now)
    return pair


def test_unselected_reveals_do_not_make_workers_stand_down() -> None:
    """issue 13: a Sybil pair revealing to each other during the claim window used to make every
    honest worker wait forever (`_revealed_by_others`), leaving the job with no build at all."""
    sim, board, ds = setup(3)
    for d in ds:
        d.step(T0)
    sybils = sybil_pair(sim, board, T0 + 1)
    now = T0 + WINDOW
    run_until_quiet(ds, now)
    assert all(d.wj.phase == "BUILDING" for d in ds), [d.wj.phase for d in ds]
    for d in ds:
        d.finish_build(now + 100)
    run_until_quiet(ds, now + 100)
    view = board.job(sim.job)
    assert view is not None
    v = tally(view, now + 100)
    assert v.state == "REPRODUCED" and len(v.groups[0].workers) == 3
    assert {i.worker for i in v.ignored} == {k.public for k in sybils}


def test_only_selected_reveals_and_witnesses_make_a_worker_stand_down() -> None:
    """`_revealed_by_others` still holds for votes: two selected workers revealing, each the
    other's witness, make a stand-by stand down; the same by unselected keys does not."""
    from p2pci.core.worker import _revealed_by_others

    sim, board, ds = setup(3, replicas=2, quorum=2)
    for d in ds:
        d.step(T0)
    now = T0 + WINDOW
    run_until_quiet(ds, now)
    view = board.job(sim.job)
    assert view is not None
    sybil_pair(sim, board, now)
    assert not _revealed_by_others(view, key("late").public)
    builders = [d for d in ds if d.wj.phase == "BUILDING"]
    assert len(builders) == 2
    for d in builders:
        d.finish_build(now + 100)
    run_until_quiet(builders, now + 100)
    assert all(d.wj.phase == "REVEALED" for d in builders)
    assert _revealed_by_others(view, key("late").public)


def test_commits_of_unselected_keys_do_not_staff_a_job() -> None:
    """`replicas` commits by keys that never claimed, gossiped during the claim window, used to
    look like a fully staffed job: no honest worker claimed."""
    sim, board, ds = setup(3)
    for d in ds:
        d.step(T0)
    for i in range(3):
        k = key(f"stranger{i}")
        board.add(sim.commit(k, sim.built(k, b"evil")).raw, T0 + 1)
    run_until_quiet(ds, T0 + WINDOW)
    assert all(d.wj.phase == "BUILDING" for d in ds), [d.wj.phase for d in ds]


def test_a_worker_whose_own_decline_is_held_never_claims_the_job() -> None:
    """A worker that declined a job (before a restart, or under a policy since relaxed) does not
    claim it again: a selected key's decline voids its votes (docs/protocol.md §6), so its build
    would count for nothing and take a place from a worker whose vote would count. Another
    worker's decline changes nothing for it. Mutant: without the check the worker claims."""
    from p2pci.core.messages import Decline
    from p2pci.core.worker import DECLINED_EARLIER

    sim, board, ds = setup(2)
    board.add(seal(ds[0].k, Decline(sim.job, "slots", "no slots configured", None)).raw, T0)
    for d in ds:
        d.step(T0)
    assert (ds[0].wj.phase, ds[0].wj.reason) == ("SKIPPED", DECLINED_EARLIER)
    assert ds[1].wj.phase == "WAITING"
    run_until_quiet(ds, T0 + WINDOW)
    assert not any(isinstance(a, PublishClaim) for a in ds[0].log)
    assert any(isinstance(a, PublishClaim) for a in ds[1].log) and ds[1].wj.phase == "BUILDING"
