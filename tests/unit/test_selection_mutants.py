"""Selection behaviours that surviving mutants of core/selection.py showed untested
(`make mutate MUTATE=selection`, docs/testing.md "Mutation testing")."""

from __future__ import annotations

from dataclasses import replace

from p2pci.core.messages import Require
from p2pci.core.selection import S_CREATED, eligible_claim_ids, eligible_keys, selection
from p2pci.core.signing import seal
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
