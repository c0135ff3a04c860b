"""Selection in allowlist mode, through the public API (`selected`, `candidates`): only allowed
workers are ever selected, whether their lease is live or they have committed, and an outsider's
claim never hides an allowed claimant (mutmut survivors in core/selection.py)."""

from __future__ import annotations

from p2pci.core.board import Board, JobView
from p2pci.core.selection import candidates, rank, selected

from .jobgen import JobSim, key, make_offer

NOW = 1_010_000
ALLOWED = [key(f"allowed{i}") for i in range(3)]
OUTSIDERS = [key(f"outsider{i}") for i in range(6)]


def view_of(sim: JobSim) -> JobView:
    board = Board()
    for f in sim.facts:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None
    return view


def test_outsiders_claims_are_never_selected_and_hide_nobody() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=tuple(k.public for k in ALLOWED)))
    for k in OUTSIDERS + ALLOWED:  # outsiders first: some of them rank better than every allowed worker
        sim.claim(k)
    assert min(rank(sim.job, k.public) for k in OUTSIDERS) < min(rank(sim.job, k.public) for k in ALLOWED)
    view = view_of(sim)
    best_allowed = sorted((k.public for k in ALLOWED), key=lambda w: rank(sim.job, w))
    assert candidates(view, NOW) == best_allowed
    assert selected(view, NOW) == best_allowed[:2]


def test_a_committed_outsider_is_not_a_candidate() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=(ALLOWED[0].public,)))
    for k in (OUTSIDERS[0], ALLOWED[0]):
        sim.claim(k, lease_until=NOW - 1)  # leases over: only commits keep a place
        sim.commit(k, sim.built(k))
    assert candidates(view_of(sim), NOW) == [ALLOWED[0].public]


def test_control_open_jobs_select_the_best_ranked_claimants() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    for k in OUTSIDERS:
        sim.claim(k)
    best = sorted((k.public for k in OUTSIDERS), key=lambda w: rank(sim.job, w))
    assert selected(view_of(sim), NOW) == best[:2]
