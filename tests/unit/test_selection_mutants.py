"""Selection behaviours that surviving mutants of core/selection.py showed untested
(`make mutate MUTATE=selection`, docs/testing.md "Mutation testing")."""

from __future__ import annotations

from p2pci.core.selection import eligible_claim_ids, eligible_keys, selection
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
