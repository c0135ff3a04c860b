"""Selection in allowlist mode (protocol v2, docs/protocol.md section 5), through the public API
(`selection`, `selected`): only allowed workers are ever selected, however well an outsider ranks
or whether it has committed, an outsider's claim never takes an allowed claimant's place, and a
publisher's select that names an outsider is ignored (mutmut survivors in core/selection.py).

The expected workers are computed here from the documented rank sha256(seed || job || key), not
with `compute_workers`: the helper that signs the publisher's rounds uses the code under test, so
a mutant there would make its own (wrong) round agree with itself."""

from __future__ import annotations

import hashlib

from p2pci.core.board import Board, JobView
from p2pci.core.messages import Select
from p2pci.core.selection import S_NOT_ELIGIBLE, S_WORKERS, selected, selection
from p2pci.core.signing import NodeKey, seal
from p2pci.core.tally import R_NOT_SELECTED, tally

from .jobgen import JobSim, key, make_offer

NOW = 1_010_000
ALLOWED = [key(f"allowed{i}") for i in range(3)]
OUTSIDERS = [key(f"outsider{i}") for i in range(6)]


def rank(sim: JobSim, w: bytes) -> bytes:
    return hashlib.sha256(sim.seed + sim.job + w).digest()


def by_rank(sim: JobSim, keys: list[NodeKey]) -> list[bytes]:
    return sorted((k.public for k in keys), key=lambda w: rank(sim, w))


def view_of(sim: JobSim) -> JobView:
    board = Board()
    for f in sim.facts:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None
    return view


def hand_select(sim: JobSim, rnd: int, workers: list[bytes]) -> None:
    """A select by the offer's publisher listing every claim held and naming `workers`."""
    claims = tuple(sorted(view_of(sim).claim_ids))
    body = Select(sim.job, rnd, sim.seed, sim.offer.created + 2000 + rnd, claims, tuple(sorted(workers)))
    sim.facts.append(seal(sim.publisher, body))


def allowlisted(replicas: int) -> JobSim:
    return JobSim(make_offer(key("publisher"), replicas=replicas, quorum=1, workers=tuple(k.public for k in ALLOWED)))


def test_outsiders_claims_are_never_selected_and_hide_nobody() -> None:
    sim = allowlisted(replicas=2)
    for k in OUTSIDERS + ALLOWED:  # outsiders first: some of them rank better than every allowed worker
        sim.claim(k)
    assert min(by_rank(sim, OUTSIDERS)) < min(by_rank(sim, ALLOWED))
    sim.select()  # the publisher's honest round 0 over every claim, outsiders' included
    view = view_of(sim)
    sel = selection(view)
    assert not sel.ignored and len(sel.rounds) == 1
    # both ranked places go to the best-ranked allowed claimants: no outsider, and none hidden
    assert selected(view, NOW) == sorted(by_rank(sim, ALLOWED)[:2])
    assert sel.selected == frozenset(by_rank(sim, ALLOWED)[:2])


def test_a_select_naming_an_outsider_is_ignored() -> None:
    sim = allowlisted(replicas=2)
    for k in OUTSIDERS + ALLOWED:
        sim.claim(k)
    best_outsider = by_rank(sim, OUTSIDERS)[0]
    hand_select(sim, 0, [best_outsider, by_rank(sim, ALLOWED)[0]])
    sel = selection(view_of(sim))
    assert sel.rounds == () and sel.selected == frozenset()
    assert [(b.round, b.reason) for b in sel.ignored] == [(0, S_NOT_ELIGIBLE)]


def test_a_select_that_leaves_out_a_better_ranked_allowed_claimant_is_ignored() -> None:
    sim = allowlisted(replicas=1)
    for k in OUTSIDERS + ALLOWED:
        sim.claim(k)
    hand_select(sim, 0, [by_rank(sim, ALLOWED)[1]])  # allowed, but not the best-ranked allowed
    sel = selection(view_of(sim))
    assert sel.rounds == () and [b.reason for b in sel.ignored] == [S_WORKERS]


def test_a_committed_outsider_is_not_a_candidate() -> None:
    # the outsider ranks better than every allowed worker, claims, builds and commits; when the
    # publisher drops the allowed worker of round 0, the place goes to the next allowed claimant
    sim = allowlisted(replicas=1)
    outsider = next(k for k in OUTSIDERS if rank(sim, k.public) < min(by_rank(sim, ALLOWED)))
    sim.claim(outsider)
    sim.commit(outsider, sim.built(outsider))
    for k in ALLOWED:
        sim.claim(k)
    first, second = by_rank(sim, ALLOWED)[:2]
    sim.select()
    assert selected(view_of(sim), NOW) == [first]
    sim.select(drop=(first,))  # round 1: `first` squatted its place
    view = view_of(sim)
    sel = selection(view)
    assert not sel.ignored and [r.workers for r in sel.rounds] == [(first,), (second,)]
    assert outsider.public not in sel.selected
    sim.reveal(outsider, sim.built(outsider))
    v = tally(view_of(sim), NOW)
    assert [(i.worker, i.reason) for i in v.ignored] == [(outsider.public, R_NOT_SELECTED)] and v.groups == ()


def test_control_open_jobs_select_the_best_ranked_claimants() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    for k in OUTSIDERS:
        sim.claim(k)
    sim.select()
    assert selected(view_of(sim), NOW) == sorted(by_rank(sim, OUTSIDERS)[:2])
    # and a round that names a worse-ranked claimant instead is ignored
    sim2 = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    for k in OUTSIDERS:
        sim2.claim(k)
    hand_select(sim2, 0, by_rank(sim2, OUTSIDERS)[1:3])
    assert [b.reason for b in selection(view_of(sim2)).ignored] == [S_WORKERS]


def test_selection_results_are_immutable() -> None:
    # `selection` is memoised on the job view: a caller that could change a Round, a BadSelect or
    # the Selection would change what every later caller sees (mutmut survivors: frozen=False)
    import dataclasses

    import pytest

    sim = allowlisted(replicas=1)
    for k in ALLOWED:
        sim.claim(k)
    sim.select()
    hand_select(sim, 1, [k.public for k in OUTSIDERS[:1]])
    sel = selection(view_of(sim))
    assert sel.rounds and sel.ignored
    for obj, attr in ((sel, "rounds"), (sel.rounds[0], "workers"), (sel.ignored[0], "reason")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, ())
