"""Selection behaviours that surviving mutants of core/selection.py showed untested
(`make mutate MUTATE=selection`, docs/testing.md "Mutation testing")."""

from __future__ import annotations

from dataclasses import replace

from p2pci.core.board import Board
from p2pci.core.messages import MAX_SELECT_CLAIMS, Claim, Decline, Require
from p2pci.core.selection import (
    NO_SELECTION,
    S_CREATED,
    S_GAP,
    S_NOT_PUBLISHER,
    S_SEED,
    S_TWO,
    eligible_claim_ids,
    eligible_keys,
    lease_end,
    list_order,
    live_claimants,
    next_select,
    round_pending,
    select_wakeup,
    selection,
)
from p2pci.core.signing import NodeKey, seal
from p2pci.core.tally import tally, verdict_json

from .jobgen import JobSim, key, make_offer


def test_a_key_with_many_claims_hides_no_other_key() -> None:
    # a worker renews its lease with new claims: every one is listed, and none may stop the
    # scan before the other claimants (mutant: `continue` -> `break` on a key already seen).
    # Claim ids are hashes, so the scan order differs per job: six jobs make a lucky order
    # (every key seen before the first repeat) vanishingly unlikely.
    for trial in range(6):
        sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1, project=f"p{trial}"))
        busy, other = key("busy"), key("other")
        for i in range(20):
            sim.claim(busy, lease_until=sim.offer.created + 10_000 + i)
        sim.claim(other)
        view = sim.view()
        assert eligible_keys(view, sim.offer, frozenset(view.claim_ids)) == {busy.public, other.public}
        listed = eligible_claim_ids(view)
        assert {view.claim_ids[c].signer for c in listed} == {busy.public, other.public}
        sim.select()
        assert set(selection(sim.view()).current) == {busy.public, other.public}


def test_before_any_round_the_selection_is_empty_and_shows_as_such() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    sim.claim(key("w1"))
    view = sim.view()
    sel = selection(view)
    assert sel.rounds == () and sel.ignored == () and sel.seed is None
    shown = verdict_json(view, tally(view, sim.offer.created + 1))
    assert shown["rounds"] == [] and shown["ignored_selects"] == [] and shown["verdict"] == "PENDING"
    sim.select()
    assert selection(sim.view()).seed == sim.seed  # the seed round 0 revealed


def _round(sim: JobSim, created: int) -> list[str]:
    """Sign the next honest round with `created` forced; the reasons of the ignored selects."""
    sim.facts.append(seal(sim.publisher, replace(sim.select_body(), created=created)))
    return [b.reason for b in selection(sim.view()).ignored]


def test_select_created_bounds_are_inclusive_at_the_offer_and_exclusive_at_the_deadline() -> None:
    def fresh() -> JobSim:
        sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
        sim.claim(key("w1"))
        return sim

    assert _round(fresh(), fresh().offer.created) == []  # at the offer's created: valid
    assert _round(fresh(), fresh().offer.created - 1) == [S_CREATED]  # before it (round 0)
    assert _round(fresh(), fresh().offer.deadline) == [S_CREATED]  # at the deadline
    assert _round(fresh(), fresh().offer.deadline - 1) == []
    sim = fresh()
    assert _round(sim, sim.offer.created + 500) == []
    sim.claim(key("w2"))
    assert _round(sim, sim.offer.created + 500) == []  # round 1 at round 0's created: valid
    sim.claim(key("w3"))
    assert _round(sim, sim.offer.created + 499) == [S_CREATED]  # before the previous round's
    assert len(selection(sim.view()).rounds) == 2


def test_a_round_of_require_keys_only_is_valid() -> None:
    # every worker named is a require key (nobody else claimed): (eligible & require) == workers
    a, b = key("req-a"), key("req-b")
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, require=Require((a.public, b.public), 1)))
    sim.claim(a)
    sim.claim(b)
    sim.select()
    sel = selection(sim.view())
    assert sel.ignored == () and set(sel.current) == {a.public, b.public}


# --------------------------------------------------------------------------
# the chain of rounds: it stops at the first bad round, but every later select is still reported


def _ignored(sim: JobSim) -> list[tuple[int, bytes, str]]:
    return [(b.round, b.signer, b.reason) for b in selection(sim.view()).ignored]


def _later(sim: JobSim, rnd: int, signer: NodeKey | None = None) -> None:
    """A select of round `rnd` (its content does not matter: the round number already fails)."""
    sim._add(seal(signer or sim.publisher, replace(sim.select_body(), round=rnd, created=sim.offer.created + 9)))


def _claimed(replicas: int = 1) -> JobSim:
    sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=1))
    for n in ("w1", "w2", "w3"):
        sim.claim(key(n))
    return sim


def test_a_bad_round_zero_reports_every_later_round_and_reveals_no_seed() -> None:
    sim = _claimed()
    sim._add(seal(sim.publisher, replace(sim.select_body(), seed=b"x" * 32)))
    _later(sim, 1)
    pub = sim.publisher.public
    assert _ignored(sim) == [(0, pub, S_SEED), (1, pub, S_GAP)]
    sel = selection(sim.view())
    assert sel.rounds == () and sel.seed is None  # no valid round: the seed is not taken as revealed


def test_two_selects_of_one_round_report_every_later_round() -> None:
    sim = _claimed()
    body = sim.select_body()
    sim._add(seal(sim.publisher, body))
    sim._add(seal(sim.publisher, replace(body, created=body.created + 1)))
    _later(sim, 1)
    pub = sim.publisher.public
    assert _ignored(sim) == [(0, pub, S_TWO), (0, pub, S_TWO), (1, pub, S_GAP)]


def test_rounds_without_round_zero_are_gaps_however_valid_their_content() -> None:
    # round 1 and 2 whose content would be a valid round 0: neither counts, both are reported
    sim = _claimed()
    body = sim.select_body()
    sim._add(seal(sim.publisher, replace(body, round=1)))
    sim._add(seal(sim.publisher, replace(body, round=2)))
    pub = sim.publisher.public
    assert _ignored(sim) == [(1, pub, S_GAP), (2, pub, S_GAP)]
    assert selection(sim.view()).rounds == ()


def test_a_round_signed_only_by_a_stranger_does_not_hide_the_later_rounds() -> None:
    sim = _claimed()
    sim.select()
    stranger = key("stranger")
    _later(sim, 1, stranger)  # round 1 exists only as a stranger's select
    _later(sim, 2)  # so the publisher's round 2 is a gap
    pub = sim.publisher.public
    assert _ignored(sim) == [(1, stranger.public, S_NOT_PUBLISHER), (2, pub, S_GAP)]
    assert len(selection(sim.view()).rounds) == 1


def test_selects_that_arrive_before_their_offer_select_nobody() -> None:
    sim = _claimed()
    sim.select()
    board = Board()
    for f in sim.facts:
        if f is not sim.offer_fact:
            board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None and view.offer is None and view.selects
    assert selection(view) == NO_SELECTION
    assert tally(view, sim.offer.created + 1).state == "PENDING"
    board.add_fact(sim.offer_fact)
    assert len(selection(view).rounds) == 1  # the same facts with the offer: one round


def test_lease_end_of_a_worker_no_round_selected_is_none() -> None:
    sim = _claimed(replicas=1)
    sim.select()
    view = sim.view()
    sel = selection(view)
    (chosen,) = sel.current
    others = [key(n).public for n in ("w1", "w2", "w3") if key(n).public != chosen]
    assert lease_end(view, sel, chosen) == sim.offer.created + 30_000  # its claim's lease
    assert [lease_end(view, sel, w) for w in others] == [None, None]


def test_a_claim_whose_lease_ends_now_is_not_listed() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    end = sim.offer.created + 5_000
    cid = sim.claim(key("w1"), lease_until=end).id
    view = sim.view()
    assert eligible_claim_ids(view, end - 1) == {cid}
    assert eligible_claim_ids(view, end) == frozenset()  # lease_until <= now: lapsed


def test_a_lapsed_claim_that_sorts_first_hides_no_live_one() -> None:
    # mutant: `continue` -> `break` when a lapsed claim comes first in fact-id order
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    end = sim.offer.created + 5_000
    live = sim.claim(key("live"), lease_until=end + 10_000).id
    lapsed = next(
        f.id
        for f in (seal(key(f"lapsed{i}"), Claim(sim.job, end, b"")) for i in range(64))
        if f.id < live and sim._add(f)
    )
    view = sim.view()
    assert sorted(view.claim_ids)[0] == lapsed
    assert eligible_claim_ids(view, end) == {live}


# --------------------------------------------------------------------------
# the publisher's side: eligible_claim_ids, next_select, round_pending, select_wakeup; and the
# v1 worker machine's live_claimants


def test_each_key_is_listed_by_its_lowest_claim_and_outsiders_not_at_all() -> None:
    a, b, outsider = key("a"), key("b"), key("outsider")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1, workers=(a.public, b.public)))
    ids_a = [sim.claim(a, lease_until=sim.offer.created + 10_000 + i).id for i in range(6)]
    id_b = sim.claim(b).id
    sim.claim(outsider)
    assert eligible_claim_ids(sim.view(), sim.offer.created) == {min(ids_a), id_b}


def test_next_select_makes_no_round_at_or_after_the_deadline() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    sim.claim(key("w1"), lease_until=sim.offer.deadline + 1_000)  # still live at the deadline
    view = sim.view()
    deadline = sim.offer.deadline
    assert next_select(view, sim.seed, deadline, close=True) is None
    body = next_select(view, sim.seed, deadline - 1, close=True)
    assert body is not None and body.round == 0


def _with_rounds_up_to(last: int) -> JobSim:
    """Rounds 0..`last` over one claimant (each the same valid round again)."""
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    sim.claim(key("w1"))
    body = sim.select_body()
    for r in range(last + 1):
        sim._add(seal(sim.publisher, replace(body, round=r)))
    assert len(selection(sim.view()).rounds) == last + 1
    return sim


def test_round_255_is_the_last_one() -> None:
    # a new claimant would fill the free place: a round is due, but 255 is the highest round
    for last, due in ((254, True), (255, False)):
        sim = _with_rounds_up_to(last)
        sim.claim(key("w2"))
        view = sim.view()
        now = sim.offer.created + 3_000
        body = next_select(view, sim.seed, now, close=True)
        assert (body is not None and body.round == last + 1) is due
        assert round_pending(view, now) is due
        # before: w1's lease end (it has not committed); after 255 nothing is left to wait for
        assert select_wakeup(view, now, sim.offer.created + 2_000) == (sim.offer.created + 30_000 if due else None)


def test_a_later_round_lists_at_most_max_select_claims_keeping_every_earlier_claim() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    for i in range(MAX_SELECT_CLAIMS - 24):
        sim.claim(key(f"c{i}"))
    sim.select()
    prev = selection(sim.view()).rounds[-1]
    (first,) = prev.workers
    late = [sim.claim(key(f"late{i}")).id for i in range(100)]
    sim._add(seal(key_of(sim, first), Decline(sim.job, "image", "", None)))  # a round is due
    body = next_select(sim.view(), sim.seed, sim.offer.created + 3_000, close=True)
    assert body is not None and body.round == 1
    assert len(body.claims) == MAX_SELECT_CLAIMS
    view = sim.view()
    order = sorted(late, key=lambda c: list_order(view, sim.seed, view.claim_ids[c].signer, c))
    assert set(body.claims) == prev.claims | set(order[:24])  # the first new ones in the listing order
    assert set(order[:24]) != set(sorted(late)[:24])  # not the lowest fact ids (those the signers aim at)


def key_of(sim: JobSim, public: bytes) -> NodeKey:
    """The test key whose public key is `public` (the names _claimed and the tests above use)."""
    names = [f"c{i}" for i in range(MAX_SELECT_CLAIMS)] + ["w1", "w2", "w3"]
    return next(k for k in (key(n) for n in names) if k.public == public)


def test_round_pending_says_whether_the_next_round_adds_a_worker() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    sim.claim(key("w1"))
    now = sim.offer.created + 3_000
    assert round_pending(sim.view(), now) is False  # before round 0: no seed is public yet
    sim.select()
    assert round_pending(sim.view(), now) is False  # one claimant, one place taken, no one to add
    sim.claim(key("w2"))
    assert round_pending(sim.view(), now) is True  # a free place and a new eligible claimant


def test_select_wakeup_before_round_zero() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    close_at = sim.offer.created + 2_000
    t = sim.offer.created + 100
    assert select_wakeup(sim.view(), t, close_at) == close_at  # window open: its end, claims or not
    assert select_wakeup(sim.view(), close_at, close_at) is None  # over, nobody claimed: wait for a fact
    sim.claim(key("w1"), lease_until=sim.offer.deadline + 1_000)  # still live at the deadline
    assert select_wakeup(sim.view(), t, close_at) == close_at
    assert select_wakeup(sim.view(), close_at + 5, close_at) == close_at + 5  # round 0 is due now
    assert select_wakeup(sim.view(), sim.offer.deadline - 1, close_at) == sim.offer.deadline - 1
    assert select_wakeup(sim.view(), sim.offer.deadline, close_at) is None  # the job is over
    sim._add(seal(sim.publisher, replace(sim.select_body(), seed=b"x" * 32)))
    assert select_wakeup(sim.view(), t, close_at) is None  # a bad round 0: no round can follow


def test_select_wakeup_after_a_round_is_the_first_lease_end_of_a_worker_that_owes_a_commit() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    t0 = sim.offer.created
    w1, w2 = key("w1"), key("w2")
    sim.claim(w1, lease_until=t0 + 7_000)
    sim.claim(w2, lease_until=t0 + 9_000)
    sim.select()
    close_at = t0 + 2_000
    assert select_wakeup(sim.view(), t0 + 3_000, close_at) == t0 + 7_000
    assert select_wakeup(sim.view(), t0 + 8_000, close_at) == t0 + 8_000  # w1's lease is over: now
    sim.commit(w1, sim.built(w1))
    assert select_wakeup(sim.view(), t0 + 3_000, close_at) == t0 + 9_000  # w1 committed
    sim.decline(w2)
    assert select_wakeup(sim.view(), t0 + 3_000, close_at) is None  # w2 declined: nothing to wait for


def test_live_claimants_are_the_allowed_keys_with_a_live_lease() -> None:
    a, b, outsider = key("a"), key("b"), key("outsider")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1, workers=(a.public, b.public)))
    t0 = sim.offer.created
    sim.claim(outsider, lease_until=t0 + 9_000)  # first in the board's order of claimants
    sim.claim(a, lease_until=t0 + 5_000)
    sim.claim(a, lease_until=t0 + 8_000)  # a renewal: the latest lease counts
    sim.claim(b, lease_until=sim.offer.deadline + 1_000)  # capped at the deadline
    view = sim.view()
    assert list(view.claims)[0] == outsider.public
    assert live_claimants(view, t0) == {a.public: t0 + 8_000, b.public: sim.offer.deadline}
    assert live_claimants(view, t0 + 8_000) == {b.public: sim.offer.deadline}  # lease > now
