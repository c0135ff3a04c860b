"""The reveal rule's liveness limit (docs/protocol.md section 5, "When to reveal"): a worker
added by a later selection round must be witnessed, so the workers of earlier rounds wait for
that round, and for its worker's commit, before they reveal."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board
from p2pci.core.messages import BlobRef, Claim, Commit, Require
from p2pci.core.selection import next_select, place_may_fill, round_pending, selection
from p2pci.core.signing import NodeKey, seal
from p2pci.core.tally import R_NOT_SEEN, reveal_deadline, tally
from p2pci.core.worker import (
    BuildDone,
    PublishClaim,
    PublishCommit,
    PublishReveal,
    StartBuild,
    Tick,
    WorkerConfig,
    WorkerJob,
    worker_step,
)

from .jobgen import SEED, JobSim, h, key, make_offer, manifest_for

T0 = 1_000_000
LEASE = 10_000
WINDOW = 2_000


@dataclass
class Worker:
    """One honest worker on a shared board (a perfect network); the publisher is driven apart."""

    k: NodeKey
    board: Board
    job: bytes
    cfg: WorkerConfig = field(init=False)
    wj: WorkerJob = field(init=False)
    building: bool = False
    claimed_at: int | None = None
    revealed_at: int | None = None

    def __post_init__(self) -> None:
        self.cfg = WorkerConfig(self.k.public, lease_ms=LEASE, claim_window_ms=WINDOW, salt_secret=self.k.seed, claim_delay_ms=0)
        self.wj = WorkerJob.new(self.job, T0)

    def step(self, now: int, event: Tick | BuildDone | None = None) -> None:
        view = self.board.job(self.job)
        assert view is not None
        self.wj, actions = worker_step(self.wj, view, now, self.cfg, event or Tick())
        for a in actions:
            if isinstance(a, PublishClaim):
                self.claimed_at = self.claimed_at if self.claimed_at is not None else now
                self.board.add(seal(self.k, Claim(self.job, a.lease_until)).raw, now)
            elif isinstance(a, PublishCommit):
                self.board.add(seal(self.k, Commit(self.job, a.hash)).raw, now)
            elif isinstance(a, PublishReveal):
                self.revealed_at = now
                self.board.add(seal(self.k, a.reveal).raw, now)
            elif isinstance(a, StartBuild):
                self.building = True

    def finish(self, now: int, content: bytes = b"good") -> None:
        assert self.building
        self.building = False
        self.step(now, BuildDone.of(0, manifest_for(content), BlobRef(h(b"log"), 3)))


def publish_round(board: Board, job: bytes, now: int) -> bool:
    view = board.job(job)
    assert view is not None and view.offer_msg is not None
    body = next_select(view, SEED, now, close=now >= view.offer_msg.created + WINDOW)
    return body is not None and board.add(seal(key("publisher"), body).raw, now).status == "new"


def setup(n: int, replicas: int = 3, quorum: int = 2) -> tuple[JobSim, Board, list[Worker]]:
    sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=quorum, created=T0, deadline=T0 + 600_000))
    board = Board()
    board.add(sim.offer_fact.raw, T0)
    return sim, board, [Worker(key(f"late{i}"), board, sim.job) for i in range(n)]


def test_a_worker_added_in_a_later_round_is_waited_for_and_witnessed() -> None:
    sim, board, (a, b, c) = setup(3)
    a.step(T0)
    b.step(T0)
    now = T0 + WINDOW
    assert publish_round(board, sim.job, now)  # round 0: only a and b claimed
    a.step(now)
    b.step(now)
    assert a.building and b.building
    c.step(now + 1)  # c claims after round 0: the publisher's next round will add it
    view = board.job(sim.job)
    assert view is not None and round_pending(view, now + 1)
    a.finish(now + 2)
    b.finish(now + 2)
    a.step(now + 3)
    b.step(now + 3)
    assert a.wj.phase == b.wj.phase == "COMMITTED"  # not revealed: round 1 is pending
    assert publish_round(board, sim.job, now + 4)  # round 1 adds c
    assert not round_pending(view, now + 4)
    assert selection(view).current == tuple(sorted((a.k.public, b.k.public, c.k.public)))
    a.step(now + 4)
    assert a.wj.phase == "COMMITTED"  # c has not committed yet
    c.step(now + 4)
    c.finish(now + 5)
    for w in (a, b, c, a, b, c):
        w.step(now + 6)
    assert a.wj.phase == b.wj.phase == c.wj.phase == "REVEALED"
    v = tally(view, now + 6)
    assert v.state == "REPRODUCED"
    assert v.groups[0].workers == tuple(sorted((a.k.public, b.k.public, c.k.public)))  # c is witnessed
    assert not v.ignored


def test_without_the_wait_the_late_worker_is_never_witnessed() -> None:
    """Why the rule exists: reveals made before round 1 leave its worker's vote uncounted."""
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, created=T0, deadline=T0 + 600_000))
    a, b, c = key("a"), key("b"), key("c")
    sim.claim(a)
    sim.claim(b)
    sim.select()
    ba, bb, bc = sim.built(a), sim.built(b), sim.built(c)
    sim.commit(a, ba)
    sim.commit(b, bb)
    sim.reveal(a, ba)
    sim.reveal(b, bb)
    sim.claim(c)
    sim.select()
    sim.commit(c, bc)
    sim.reveal(c, bc)
    v = tally(sim.view(), T0 + 10_000)
    assert c.public not in v.groups[0].workers and any(i.worker == c.public for i in v.ignored)


def test_no_pending_round_no_wait_when_nobody_else_claims_or_the_set_is_full() -> None:
    sim, board, (a, b, c) = setup(3, replicas=2, quorum=2)
    for w in (a, b):
        w.step(T0)
    now = T0 + WINDOW
    assert publish_round(board, sim.job, now)
    for w in (a, b):
        w.step(now)
    c.step(now + 1)  # a stand-by: the set is full, no round would add it
    view = board.job(sim.job)
    assert view is not None and not round_pending(view, now + 1)
    a.finish(now + 2)
    b.finish(now + 2)
    for w in (a, b, a, b):
        w.step(now + 3)
    assert a.wj.phase == b.wj.phase == "REVEALED"
    assert tally(view, now + 3).state == "REPRODUCED"


def test_a_lapsed_claim_is_not_waited_for() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, created=T0, deadline=T0 + 600_000))
    a, b, c = key("a"), key("b"), key("c")
    sim.claim(a)
    sim.claim(b)
    sim.select()
    sim.claim(c, lease_until=T0 + 5_000)
    view = sim.view()
    assert round_pending(view, T0 + 4_999)
    assert not round_pending(view, T0 + 5_000)  # c left: the publisher would not add it


@settings(max_examples=80)
@given(
    early=st.integers(1, 2),
    late=st.integers(0, 3),
    liar=st.booleans(),
    order=st.lists(st.integers(0, 6), min_size=10, max_size=60),
)
def test_every_honest_worker_any_round_selected_counts(early: int, late: int, liar: bool, order: list[int]) -> None:
    """Claims arrive before and after round 0, the publisher acts late or early, builds end in
    any order, and a liar may claim in the window and reveal a wrong digest as soon as it is
    selected: every honest selected worker reveals before the reveal deadline, and each one that
    claimed before the honest digest was first revealed is counted. (One that claimed after it
    may be ignored as a possible copy: nothing tells it from a copier.)"""
    assume(early + late >= 2)  # fewer than quorum honest workers can only reveal at the deadline
    sim, board, ws = setup(early + late, replicas=3, quorum=2)
    bad_key = key("liar")
    now = T0
    for w in ws[:early]:
        w.step(now)
    if liar:
        board.add(seal(bad_key, Claim(sim.job, T0 + 600_000)).raw, now)
    now += WINDOW
    publish_round(board, sim.job, now)
    pending = list(ws[early:])
    lied = False

    def lie(now: int) -> None:  # the liar commits and reveals at once, once selected
        nonlocal lied
        view = board.job(sim.job)
        if liar and not lied and view is not None and bad_key.public in selection(view).current:
            lied = True
            bad = sim.built(bad_key, b"evil")
            board.add(sim.commit(bad_key, bad).raw, now)
            board.add(sim.reveal(bad_key, bad, seen=()).raw, now)

    for op in order:
        now += 7
        lie(now)
        if op == 0 and pending:
            pending.pop(0).step(now)  # a late claim
        elif op == 1:
            publish_round(board, sim.job, now)
        else:
            w = ws[op % len(ws)]
            if w.building:
                w.finish(now)
            else:
                w.step(now)
    # then everyone acts until quiet, well before the reveal deadline
    for w in pending:
        w.step(now)
    for _ in range(12):
        now += 7
        publish_round(board, sim.job, now)
        lie(now)
        for w in ws:
            if w.building:
                w.finish(now)
            w.step(now)
    view = board.job(sim.job)
    assert view is not None and now < reveal_deadline(sim.offer)
    v = tally(view, now)
    sel = selection(view).selected - {bad_key.public}
    revealed = {w.k.public for w in ws if w.wj.phase == "REVEALED"}
    assert revealed == sel  # every honest selected worker revealed
    assert v.state == "REPRODUCED" and v.digest == sim.built(ws[0].k).digest
    first_reveal = min(w.revealed_at for w in ws if w.revealed_at is not None)
    before = {w.k.public for w in ws if w.claimed_at is not None and w.claimed_at < first_reveal} & sel
    counted = set(v.groups[0].workers)
    assert before <= counted <= sel
    assert {i.worker for i in v.ignored} == sel - counted
    assert all(i.reason == R_NOT_SEEN for i in v.ignored)


def test_an_early_wrong_reveal_does_not_make_an_honest_worker_reveal_alone() -> None:
    """Round 0 names a liar that reveals at once and one honest worker; a second honest worker
    claims only after the first one's build is done. The first waits for it (the liar cannot
    agree with it: its reveal shows another digest), so both honest votes are witnessed."""
    sim, board, (a, b) = setup(2, replicas=3, quorum=2)
    liar = key("liar")
    a.step(T0)
    board.add(seal(liar, Claim(sim.job, T0 + LEASE)).raw, T0)
    now = T0 + WINDOW
    assert publish_round(board, sim.job, now)
    view = board.job(sim.job)
    assert view is not None and selection(view).current == tuple(sorted((a.k.public, liar.public)))
    bad = sim.built(liar, b"evil")
    board.add(sim.commit(liar, bad).raw, now)
    board.add(sim.reveal(liar, bad, seen=()).raw, now)
    a.step(now)
    a.finish(now + 1)
    a.step(now + 2)
    assert a.wj.phase == "COMMITTED"  # two selected, but the liar cannot agree: wait
    b.step(now + 3)  # a late claim, after a's build
    assert publish_round(board, sim.job, now + 4)
    b.step(now + 4)
    b.finish(now + 5)
    for w in (a, b, a, b):
        w.step(now + 6)
    assert a.wj.phase == b.wj.phase == "REVEALED"
    v = tally(view, now + 6)
    assert v.state == "REPRODUCED" and set(v.groups[0].workers) == {a.k.public, b.k.public}
    assert v.dissenters == (liar.public,) and not v.ignored


def test_a_different_reveal_before_our_own_commit_is_processed_does_not_hold_a_full_round() -> None:
    """Round 0 fills every place (a and b, M = N = 2) and the two builds differ. b's reveal is on
    the board before a processed its own commit (its commit reached b first): a can never agree
    with b, and no round can bring anyone else (every ranked place is held by a commit), so a
    reveals at once: DISPUTED now, not at the reveal deadline (it waited for that before)."""
    sim, board, (a, b) = setup(2, replicas=2, quorum=2)
    a.step(T0)
    b.step(T0)
    now = T0 + WINDOW
    assert publish_round(board, sim.job, now)
    a.step(now)
    b.step(now)
    a.finish(now + 1)  # a's commit is on the board; a has not ticked on it yet
    b.finish(now + 1, b"other")
    assert a.wj.phase == b.wj.phase == "BUILT"
    b.step(now + 2)
    assert b.wj.phase == "REVEALED"  # every selected worker committed: b reveals
    view = board.job(sim.job)
    assert view is not None and not place_may_fill(view, now + 2)
    a.step(now + 2)  # a's own commit, and b's reveal of another digest, both held now
    assert a.wj.phase == "REVEALED" and a.revealed_at == now + 2
    v = tally(view, now + 2)
    assert v.state == "DISPUTED" and now + 2 < reveal_deadline(sim.offer)
    assert sorted(w for g in v.groups for w in g.workers) == sorted((a.k.public, b.k.public))
    assert not v.ignored


def test_a_different_reveal_before_our_own_commit_still_holds_while_a_place_is_open() -> None:
    """The same race, but round 0 named two of M = 3: a third worker may still be added, so a
    holds its reveal until it is, and both votes of the digest they agree on count."""
    sim, board, (a, b, c) = setup(3, replicas=3, quorum=2)
    a.step(T0)
    b.step(T0)
    now = T0 + WINDOW
    assert publish_round(board, sim.job, now)
    a.step(now)
    b.step(now)
    a.finish(now + 1)
    b.finish(now + 1, b"other")
    b.step(now + 2)
    a.step(now + 2)
    assert b.wj.phase == "REVEALED" and a.wj.phase == "COMMITTED"  # a place is open: a waits
    view = board.job(sim.job)
    assert view is not None and place_may_fill(view, now + 2) and not round_pending(view, now + 2)
    a.step(now + 1_000)
    assert a.wj.phase == "COMMITTED"  # nothing new: still waiting (until the reveal deadline)
    c.step(now + 1_001)  # a late claimant: round 1 adds it
    assert publish_round(board, sim.job, now + 1_002)
    c.step(now + 1_002)
    c.finish(now + 1_003)
    for w in (a, c, a, c):
        w.step(now + 1_004)
    assert a.wj.phase == c.wj.phase == "REVEALED"
    v = tally(view, now + 1_004)
    assert v.state == "REPRODUCED" and set(v.groups[0].workers) == {a.k.public, c.k.public}
    assert v.dissenters == (b.k.public,) and not v.ignored


def _full_round(replicas: int = 2, **kw: object) -> tuple[JobSim, list[NodeKey]]:
    """Round 0 names `replicas` claimants, who all commit."""
    sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=2, created=T0, deadline=T0 + 600_000, **kw))  # type: ignore[arg-type]
    ks = [key(f"w{i}") for i in range(replicas)]
    for k in ks:
        sim.claim(k)
    sim.select()
    for k in ks:
        sim.commit(k, sim.built(k))
    return sim, ks


def test_place_may_fill_only_while_a_ranked_place_is_open_and_someone_may_take_it() -> None:
    sim, (a, b) = _full_round()
    assert not place_may_fill(sim.view(), T0 + 3_000)  # every place held by a commit
    sim.decline(b)  # a committed worker that declines is dropped by the next round
    assert place_may_fill(sim.view(), T0 + 3_000)
    assert not place_may_fill(sim.view(), T0 + 600_000)  # no select at or after the deadline

    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0, deadline=T0 + 600_000))
    assert place_may_fill(sim.view(), T0)  # round 0 is still to come
    sim.claim(a)
    sim.claim(b)
    sim.select()
    sim.commit(a, sim.built(a))
    assert place_may_fill(sim.view(), T0 + 3_000)  # b has not committed: it may be replaced

    # with an allowlist, only its keys that were never ranked nor dropped can fill a place
    sim, (a, b) = _full_round(workers=tuple(sorted((key("w0").public, key("w1").public, key("spare").public))))
    sim.decline(b)
    assert place_may_fill(sim.view(), T0 + 3_000)  # `spare` may still claim
    sim, (a, b) = _full_round(workers=tuple(sorted((key("w0").public, key("w1").public))))
    sim.decline(b)
    view = sim.view()
    assert not place_may_fill(view, T0 + 3_000)  # b's place is open, but nobody is left
    assert not round_pending(view, T0 + 3_000)


def test_place_may_fill_ignores_require_keys_and_stops_after_round_255() -> None:
    # a require key is added on top of the ranked places: it never fills one, so an open place
    # that only the (allowlisted) trusted key could take stays open
    trusted = key("trusted").public
    allow = tuple(sorted((key("w0").public, key("w1").public, trusted)))
    sim, (a, b) = _full_round(workers=allow, require=Require((trusted,), 1))
    assert not place_may_fill(sim.view(), T0 + 3_000)
    sim.decline(b)
    assert not place_may_fill(sim.view(), T0 + 3_000)
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, created=T0, deadline=T0 + 600_000))
    a = key("a")
    sim.claim(a)
    for _ in range(256):  # rounds 0..255, each naming a alone
        sim.select()
    view = sim.view()
    assert selection(view).rounds[-1].round == 255
    assert not place_may_fill(view, T0 + 3_000)
    sim.facts.pop()
    assert place_may_fill(sim.view(), T0 + 3_000)  # round 254: one more may come
