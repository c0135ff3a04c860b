"""An observer's policy can only tighten the offer's (docs/security.md), through the public API only.

Each case is built so that the loosening mutant gives a different verdict: an observer quorum
below the offer's must not lower N, and no observer (or offer) trusted key may vote from outside
the offer's allowlist.
"""

from __future__ import annotations

import pytest

from p2pci.core.board import Board
from p2pci.core.messages import Require
from p2pci.core.tally import R_NOT_ALLOWED, ObserverPolicy, Verdict, tally

from .jobgen import JobSim, key, make_offer

A, B, X = key("a"), key("b"), key("outsider")
NOW = 1_500_000


def verdict_of(sim: JobSim, policy: ObserverPolicy | None = None) -> Verdict:
    board = Board()
    for f in sim.facts:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None
    return tally(view, NOW, policy or ObserverPolicy())


@pytest.mark.parametrize("observer_quorum", [1, 2])
def test_an_observer_quorum_below_the_offers_does_not_lower_it(observer_quorum: int) -> None:
    # offer N = 3 of 4; two agreeing votes are in: pending for everyone
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=3))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert verdict_of(sim).state == "PENDING"
    assert verdict_of(sim, ObserverPolicy(quorum=observer_quorum)).state == "PENDING"
    # control: the same two votes do reproduce under an offer N of 2
    sim2 = JobSim(make_offer(key("publisher"), replicas=4, quorum=2))
    sim2.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert verdict_of(sim2, ObserverPolicy(quorum=observer_quorum)).state == "REPRODUCED"


def test_an_observer_quorum_above_the_offers_raises_it() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert verdict_of(sim, ObserverPolicy(quorum=3)).state == "PENDING"


def allowlisted_job() -> JobSim:
    # traditional mode: only A and B may vote, N = 2; A and the outsider X agree
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=(A.public, B.public)))
    sim.honest_round([(A, b"good", 0), (X, b"good", 0)])
    return sim


@pytest.mark.parametrize(
    "policy",
    [
        ObserverPolicy(),
        ObserverPolicy(trust=frozenset({A.public, X.public})),  # the observer trusts the outsider
        ObserverPolicy(require=Require((X.public,), 1)),  # the observer requires the outsider
        ObserverPolicy(trust=frozenset({A.public, X.public}), require=Require((X.public,), 1), quorum=2),
    ],
)
def test_an_observer_trusted_key_outside_the_offers_allowlist_is_not_counted(policy: ObserverPolicy) -> None:
    v = verdict_of(allowlisted_job(), policy)
    assert v.state == "PENDING"
    assert (X.public, R_NOT_ALLOWED) in {(i.worker, i.reason) for i in v.ignored}
    assert all(X.public not in g.workers for g in v.groups)


def test_an_offer_required_key_outside_its_own_allowlist_is_not_counted() -> None:
    sim = JobSim(
        make_offer(
            key("publisher"), replicas=2, quorum=2, workers=(A.public, B.public), require=Require((X.public,), 1)
        )
    )
    sim.honest_round([(A, b"good", 0), (X, b"good", 0)])
    v = verdict_of(sim)
    assert v.state == "PENDING"
    assert (X.public, R_NOT_ALLOWED) in {(i.worker, i.reason) for i in v.ignored}


def test_control_the_allowlisted_pair_reproduces() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=(A.public, B.public)))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert verdict_of(sim, ObserverPolicy(trust=frozenset({A.public, B.public, X.public}))).state == "REPRODUCED"
