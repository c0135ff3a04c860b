"""Protocol v2 selection (seed, rounds, eligibility, leases), and the board's bookkeeping."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from p2pci.core.board import Board
from p2pci.core.identity import IDENTITY_DOMAIN, identity_bits, identity_hash, mint
from p2pci.core.messages import Require
from p2pci.core.selection import (
    S_NOT_ELIGIBLE,
    S_NOT_PUBLISHER,
    S_REQUIRE,
    S_SEED,
    S_TWO,
    S_UNKNOWN_CLAIM,
    S_WORKERS,
    candidates,
    due_replacements,
    is_selected,
    lease_cap,
    lease_end,
    live_claimants,
    next_select,
    selected,
    selection,
    selection_rank,
)
from p2pci.core.signing import Fact, NodeKey, seal
from p2pci.core.tally import X_NO_SELECTION, ObserverPolicy, tally

from .jobgen import JobSim, key, make_offer

T0 = 1_000_000
KEYS = [key(f"s{i}") for i in range(6)]


def board_of(sim: JobSim) -> Board:
    b = Board()
    for f in sim.facts:
        b.add(f.raw, T0)
    return b


def test_rank_is_sha256_of_seed_job_and_worker() -> None:
    seed, job, w = b"s" * 32, b"j" * 32, b"w" * 32
    assert selection_rank(seed, job, w) == hashlib.sha256(seed + job + w).digest()


def by_rank(sim: JobSim, keys: list[NodeKey]) -> list[NodeKey]:
    return sorted(keys, key=lambda k: selection_rank(sim.seed, sim.job, k.public))


def test_round_zero_selects_the_lowest_ranked_listed_claimants() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, created=T0))
    for k in KEYS:
        sim.claim(k, lease_until=T0 + 10_000)
    view = board_of(sim).job(sim.job)
    assert view is not None
    assert selected(view, T0) == [] and candidates(view, T0) == []  # nobody before the select
    sim.select()
    view = board_of(sim).job(sim.job)
    assert view is not None
    best = [k.public for k in by_rank(sim, KEYS)]
    assert set(selected(view, T0)) == set(best[:3])
    assert is_selected(view, T0, best[0]) and not is_selected(view, T0, best[3])
    sel = selection(view)
    assert len(sel.rounds) == 1 and sel.seed == sim.seed and not sel.ignored
    # the v1 rank (no seed) would have chosen differently for some job: it is not what counts
    assert live_claimants(view, T0 + 9_999) == {k.public: T0 + 10_000 for k in KEYS}


def _ignored_reason(sim: JobSim, f: Fact) -> str:
    view = sim.view()
    reasons = [b.reason for b in selection(view).ignored if b.fact_id == f.id]
    assert len(reasons) == 1, reasons
    return reasons[0]


def test_a_select_with_a_wrong_seed_stranger_or_wrong_workers_is_ignored_and_reported() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0))
    for k in KEYS[:4]:
        sim.claim(k)
    good = sim.select_body()
    bad_seed = seal(sim.publisher, replace(good, seed=b"x" * 32))
    stranger = seal(KEYS[5], good)
    order = [k.public for k in by_rank(sim, KEYS[:4])]
    wrong = seal(sim.publisher, replace(good, workers=tuple(sorted(order[1:3]))))
    for f, reason in ((bad_seed, S_SEED), (stranger, S_NOT_PUBLISHER), (wrong, S_WORKERS)):
        trial = JobSim(sim.offer, facts=list(sim.facts[1:]))
        trial._add(f)
        assert _ignored_reason(trial, f) == reason
        view = trial.view()
        assert selected(view, T0) == []
        assert tally(view, T0 + 10**6).reason == X_NO_SELECTION


def test_a_select_listing_an_unknown_claim_waits_for_it() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0))
    claims = [sim.claim(k) for k in KEYS[:3]]
    sim.select()
    without = [f for f in sim.facts if f.id != claims[0].id]
    b = Board()
    for f in without:
        b.add_fact(f)
    view = b.job(sim.job)
    assert view is not None
    assert [x.reason for x in selection(view).ignored] == [S_UNKNOWN_CLAIM] and selected(view, T0) == []
    b.add_fact(claims[0])
    assert len(selected(view, T0)) == 2 and not selection(view).ignored


def test_later_rounds_replace_dropped_workers_by_the_next_in_line_and_keep_the_others() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0))
    order = by_rank(sim, KEYS[:4])
    for k in order[:3]:
        sim.claim(k)
    sim.select()
    assert set(selected(sim.view(), T0)) == {order[0].public, order[1].public}
    sim.claim(order[3])  # a late claim: listed in round 1
    sim.select(drop=(order[0].public,))
    view = sim.view()
    assert set(selected(view, T0)) == {order[1].public, order[2].public}
    assert selection(view).selected == {order[0].public, order[1].public, order[2].public}
    sim.select(drop=(order[2].public,))
    view = sim.view()
    assert set(selected(view, T0)) == {order[1].public, order[3].public}  # a dropped key never returns
    # a round that brings a dropped key back, or skips the next in line, is ignored
    bad = seal(
        sim.publisher,
        replace(
            sim.select_body(drop=(order[3].public,)),
            workers=tuple(sorted([order[0].public, order[1].public])),
        ),
    )
    trial = JobSim(sim.offer, facts=list(sim.facts[1:]))
    trial._add(bad)
    assert _ignored_reason(trial, bad) in (S_WORKERS, S_NOT_ELIGIBLE)


def test_two_selects_for_one_round_stop_the_chain() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, created=T0))
    for k in KEYS[:3]:
        sim.claim(k)
    sim.select()
    body = sim.select_body(drop=tuple(selected(sim.view(), T0)))
    sim._add(seal(sim.publisher, body))
    sim._add(seal(sim.publisher, replace(body, created=body.created + 1)))
    sel = selection(sim.view())
    assert len(sel.rounds) == 1 and [b.reason for b in sel.ignored] == [S_TWO, S_TWO]


def test_require_keys_are_always_selected_on_top_of_the_ranked_places() -> None:
    trusted = KEYS[5]
    sim = JobSim(
        make_offer(key("publisher"), replicas=2, quorum=2, created=T0, require=Require((trusted.public,), 1))
    )
    for k in KEYS:
        sim.claim(k)
    sim.select()
    cur = selected(sim.view(), T0)
    assert trusted.public in cur and len(cur) == 3
    # leaving it out is not a valid select
    body = sim.select_body()
    trial = JobSim(sim.offer, facts=[f for f in sim.facts[1:] if f.kind != "select"])
    bad = trial._add(
        seal(
            sim.publisher,
            replace(body, round=0, workers=tuple(w for w in body.workers if w != trusted.public)),
        )
    )
    assert _ignored_reason(trial, bad) == S_REQUIRE


def test_identity_work_and_allowlist_decide_eligibility() -> None:
    bits = 6
    allowed = KEYS[:3]
    sim = JobSim(
        make_offer(
            key("publisher"),
            replicas=3,
            quorum=1,
            created=T0,
            workers=tuple(k.public for k in allowed),
            identity_bits=bits,
        )
    )
    sim.claim(KEYS[0], identity=mint(KEYS[0].public, bits))
    sim.claim(KEYS[1], identity=b"")  # no work
    weak = next(n for n in (bytes([i]) for i in range(256)) if identity_bits(KEYS[2].public, n) < bits)
    sim.claim(KEYS[2], identity=weak)
    sim.claim(KEYS[3], identity=mint(KEYS[3].public, bits))  # not allowed
    sim.select()
    assert selected(sim.view(), T0) == [KEYS[0].public]
    n = mint(KEYS[0].public, bits)
    assert identity_bits(KEYS[0].public, n) >= bits
    assert identity_hash(KEYS[0].public, n) == hashlib.sha256(IDENTITY_DOMAIN + KEYS[0].public + n).digest()


def test_a_squatter_loses_its_place_at_the_capped_lease_end() -> None:
    sim = JobSim(
        make_offer(key("publisher"), replicas=2, quorum=2, created=T0, deadline=T0 + 10**7, timeout_s=60)
    )
    order = by_rank(sim, KEYS[:3])
    sim.claim(order[0], lease_until=2**62)  # a squatter with a huge lease
    sim.claim(order[1])
    sim.claim(order[2])
    sim.select()
    view = sim.view()
    sel = selection(view)
    cap = sel.rounds[0].created + lease_cap(sim.offer)
    assert lease_end(view, sel, order[0].public) == cap == sel.rounds[0].created + 2 * 2000 + 60_000
    sim.commit(order[1], sim.built(order[1]))
    view = sim.view()
    assert due_replacements(view, cap - 1) == frozenset()
    assert order[0].public in due_replacements(view, cap)
    nxt = next_select(view, sim.seed, cap, close=True)
    assert nxt is not None and nxt.round == 1 and set(nxt.workers) == {order[1].public, order[2].public}
    assert next_select(view, b"wrong" * 6 + b"xx", cap, close=True) is None


def test_the_publisher_selects_round_zero_only_once_the_window_is_closed() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, created=T0))
    for k in KEYS[:3]:
        sim.claim(k)
    view = sim.view()
    assert next_select(view, sim.seed, T0 + 10, close=False) is None
    body = next_select(view, sim.seed, T0 + 2000, close=True)
    assert body is not None and body.round == 0
    sim._add(seal(sim.publisher, body))
    view = sim.view()
    assert len(selection(view).rounds) == 1 and not selection(view).ignored
    assert next_select(view, sim.seed, T0 + 2001, close=True) is None  # nothing to replace


def test_a_decliner_is_replaced() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, created=T0))
    order = by_rank(sim, KEYS[:2])
    for k in order:
        sim.claim(k)
    sim.select()
    sim.decline(order[0], "image", "image not available")
    view = sim.view()
    assert due_replacements(view, T0 + 2001) == {order[0].public}
    v = tally(view, T0 + 2001)
    assert v.declines == ((order[0].public, "image", "image not available"),)


def test_live_claimants_are_capped_by_the_deadline() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, created=T0, deadline=T0 + 100_000))
    sim.claim(KEYS[0], lease_until=T0 + 10**9)
    b = Board()
    b.add(sim.facts[1].raw, T0)
    view = b.job(sim.job)
    assert view is not None and live_claimants(view, T0) == {}
    b.add(sim.facts[0].raw, T0)
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
