"""Tally behaviours that surviving mutants of core/tally.py showed untested
(`make mutate MUTATE=tally`, docs/testing.md "Mutation testing")."""

from __future__ import annotations

from p2pci.core.board import Board, JobView
from p2pci.core.messages import Require
from p2pci.core.tally import ObserverPolicy, tally

from .jobgen import JobSim, key, make_offer

A, B, C = (key(n) for n in "abc")


def view_of(sim: JobSim) -> JobView:
    board = Board()
    for f in sim.facts:
        board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None
    return view


def test_two_of_two_that_disagree_is_disputed_at_once() -> None:
    # every build is in (counted == replicas == quorum) and no group has quorum: DISPUTED
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"evil", 0)])
    assert tally(view_of(sim), sim.offer.created + 1).state == "DISPUTED"


def test_with_a_require_a_split_waits_for_the_trusted_keys() -> None:
    # the "all builds are in" DISPUTED rule does not apply when the offer has a require
    sim = JobSim(
        make_offer(key("publisher"), replicas=2, quorum=2, require=Require((key("trusted").public,), 1))
    )
    sim.honest_round([(A, b"good", 0), (B, b"evil", 0)])
    assert tally(view_of(sim), sim.offer.created + 1).state == "PENDING"


def test_a_require_min_counts_each_key_once() -> None:
    # min 2 of {A, X}: A alone (with B, untrusted) is not enough
    x = key("x")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, require=Require((A.public, x.public), 2)))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert tally(view_of(sim), sim.offer.created + 1).state == "PENDING"


def test_the_memo_follows_the_deadline_and_the_policy() -> None:
    # one view, asked again: at the deadline it is EXPIRED, with another policy it is recomputed
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    view = view_of(sim)
    assert tally(view, sim.offer.created + 1).state == "REPRODUCED"
    distrust = ObserverPolicy(trust=frozenset({A.public}))
    assert tally(view, sim.offer.created + 1, distrust).state == "PENDING"
    assert tally(view, sim.offer.created + 1).state == "REPRODUCED"
    pending = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    pending.honest_round([(A, b"good", 0)])
    pview = view_of(pending)
    deadline = pending.offer.deadline
    assert tally(pview, deadline - 1).state == "PENDING"
    assert tally(pview, deadline).state == "EXPIRED"  # the same view: the memo must not answer
    assert tally(pview, deadline - 1).state == "PENDING"
