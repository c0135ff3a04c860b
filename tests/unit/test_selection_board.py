"""Selection by rank with leases, and the board's add/dedupe/reject bookkeeping."""

from __future__ import annotations

import hashlib

from p2pci.core.board import Board
from p2pci.core.selection import candidates, is_selected, live_claimants, rank, selected
from p2pci.core.tally import ObserverPolicy, tally

from .jobgen import JobSim, key, make_offer

T0 = 1_000_000
KEYS = [key(f"s{i}") for i in range(6)]


def board_of(sim: JobSim) -> Board:
    b = Board()
    for f in sim.facts:
        b.add(f.raw, T0)
    return b


def test_rank_is_sha256_of_job_and_worker() -> None:
    job, w = b"j" * 32, b"w" * 32
    assert rank(job, w) == hashlib.sha256(job + w).digest()


def test_selected_are_the_lowest_ranked_live_claimants() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, created=T0))
    for k in KEYS:
        sim.claim(k, lease_until=T0 + 10_000)
    view = board_of(sim).job(sim.job)
    assert view is not None
    by_rank = sorted((k.public for k in KEYS), key=lambda w: rank(sim.job, w))
    assert selected(view, T0) == by_rank[:3]
    assert candidates(view, T0) == by_rank
    assert is_selected(view, T0, by_rank[0]) and not is_selected(view, T0, by_rank[3])
    # every lease expired: nobody
    assert selected(view, T0 + 10_000) == []
    assert live_claimants(view, T0 + 9_999) == {k.public: T0 + 10_000 for k in KEYS}


def test_expired_lease_without_commit_lets_the_next_in_line_in() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0))
    by_rank = sorted(KEYS[:3], key=lambda k: rank(sim.job, k.public))
    best, second, third = by_rank
    sim.claim(best, lease_until=T0 + 5_000)
    sim.claim(second, lease_until=T0 + 50_000)
    sim.claim(third, lease_until=T0 + 50_000)
    view = board_of(sim).job(sim.job)
    assert view is not None
    assert selected(view, T0) == [best.public, second.public]
    assert selected(view, T0 + 5_000) == [second.public, third.public]


def test_a_committed_claimant_keeps_its_place_after_its_lease() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0))
    best, second, third = sorted(KEYS[:3], key=lambda k: rank(sim.job, k.public))
    sim.claim(best, lease_until=T0 + 5_000)
    sim.commit(best, sim.built(best))
    sim.claim(second, lease_until=T0 + 50_000)
    sim.claim(third, lease_until=T0 + 50_000)
    view = board_of(sim).job(sim.job)
    assert view is not None
    assert selected(view, T0 + 6_000) == [best.public, second.public]


def test_renewal_extends_the_lease_and_allowlist_filters_claims() -> None:
    allowed = KEYS[:2]
    sim = JobSim(
        make_offer(
            key("publisher"), replicas=3, quorum=1, created=T0, workers=tuple(k.public for k in allowed)
        )
    )
    for k in KEYS:
        sim.claim(k, lease_until=T0 + 1_000)
    sim.claim(allowed[0], lease_until=T0 + 9_000)
    view = board_of(sim).job(sim.job)
    assert view is not None
    assert set(selected(view, T0)) == {k.public for k in allowed}
    assert selected(view, T0 + 2_000) == [allowed[0].public]


def test_claims_before_offer_count_once_it_arrives_and_leases_are_capped_by_deadline() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, created=T0, deadline=T0 + 100_000))
    sim.claim(KEYS[0], lease_until=T0 + 10**9)
    b = Board()
    b.add(sim.facts[1].raw, T0)
    view = b.job(sim.job)
    assert view is not None and selected(view, T0) == []
    b.add(sim.facts[0].raw, T0)
    assert selected(view, T0) == [KEYS[0].public]
    assert live_claimants(view, T0) == {KEYS[0].public: T0 + 100_000}


def test_board_add_statuses_and_counters() -> None:
    sim = JobSim(make_offer(key("publisher")))
    f = sim.claim(KEYS[0])
    b = Board()
    r = b.add(f.raw, T0)
    assert r.status == "new" and r.fact == f and b.has(f.id)
    r2 = b.add(f.raw, T0)
    assert r2.status == "duplicate" and r2.fact == f and b.duplicates == 1
    r3 = b.add(f.raw[:-1] + b"\x00", T0)
    assert r3.status == "rejected" and r3.fact is None and r3.reason and b.rejected == 1
    r4 = b.add("not bytes", T0)  # type: ignore[arg-type]
    assert r4.status == "rejected" and b.rejected == 2
    assert b.add_fact(sim.offer_fact) and not b.add_fact(sim.offer_fact)
    assert b.job_fact_ids(sim.job) == {f.id, sim.offer_fact.id}
    assert len(b) == 2 and [v.job for v in b.jobs()] == [sim.job]
    assert b.job_fact_ids(b"x" * 32) == set() and b.job(b"x" * 32) is None


def test_tally_memo_never_goes_stale() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0, deadline=T0 + 60_000))
    b = board_of(sim)
    view = b.job(sim.job)
    assert view is not None
    assert tally(view, T0).state == "PENDING"
    assert tally(view, T0 + 60_000).state == "EXPIRED"
    assert tally(view, T0).state == "PENDING"
    sim.honest_round([(KEYS[0], b"good", 0), (KEYS[1], b"good", 0)])
    for f in sim.facts:
        b.add(f.raw, T0)
    assert tally(view, T0).state == "REPRODUCED"
    assert tally(view, T0 + 60_000).state == "REPRODUCED"


def test_tally_memo_respects_the_policy() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0, deadline=T0 + 60_000))
    sim.honest_round([(KEYS[0], b"good", 0), (KEYS[1], b"good", 0)])
    view = board_of(sim).job(sim.job)
    assert view is not None
    strict = ObserverPolicy(trust=frozenset({KEYS[0].public}))
    for _ in range(2):
        assert tally(view, T0).state == "REPRODUCED"
        assert tally(view, T0, strict).state == "PENDING"
        assert tally(view, T0, ObserverPolicy(trust=frozenset({KEYS[0].public}))).state == "PENDING"
        assert tally(view, T0, ObserverPolicy()).state == "REPRODUCED"
