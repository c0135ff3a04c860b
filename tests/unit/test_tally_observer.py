"""An observer's policy can only tighten the offer's (docs/security.md), through the public API only.

Each case is built so that the loosening mutant gives a different verdict: an observer quorum
below the offer's must not lower N, and no observer (or offer) trusted key may vote from outside
the offer's allowlist.

In protocol v2 a vote counts only when a valid `select` round names its signer, and a round can
only name allowlisted claimants (core/selection.py): the allowlist is enforced there, before the
tally looks at trust. So the outsider below is refused as `not selected by the publisher`, with the
publisher's honest round and with a round that names the outsider (which is ignored). The tally's
own allowlist check (R_NOT_ALLOWED) is then unreachable: see docs/testing.md, mutation testing.
"""

from __future__ import annotations

import pytest

from p2pci.core.board import Board
from p2pci.core.codec import canonical
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import Require, Select
from p2pci.core.selection import S_NOT_ELIGIBLE, selection
from p2pci.core.signing import open_envelope, seal
from p2pci.core.tally import R_NOT_SELECTED, ObserverPolicy, Verdict, tally

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


def allowlisted_job(publisher_names_x: bool) -> JobSim:
    # traditional mode: only A and B may vote, N = 2; A and the outsider X claim, build and agree
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=(A.public, B.public)))
    claims = tuple(sorted(sim.claim(k).id for k in (A, X)))
    if publisher_names_x:  # a publisher that selects the outsider: the round is ignored
        body = Select(sim.job, 0, sim.seed, sim.offer.created + 2000, claims, tuple(sorted((A.public, X.public))))
        sim.facts.append(seal(sim.publisher, body))
    else:
        sim.select()
    built = [(k, sim.built(k)) for k in (A, X)]
    for k, b in built:
        sim.commit(k, b)
    for k, b in built:
        sim.reveal(k, b)
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
@pytest.mark.parametrize("publisher_names_x", [False, True])
def test_an_observer_trusted_key_outside_the_offers_allowlist_is_not_counted(
    policy: ObserverPolicy, publisher_names_x: bool
) -> None:
    sim = allowlisted_job(publisher_names_x)
    v = verdict_of(sim, policy)
    assert v.state == "PENDING"
    assert (X.public, R_NOT_SELECTED) in {(i.worker, i.reason) for i in v.ignored}
    assert all(X.public not in g.workers for g in v.groups)
    board = Board()
    for f in sim.facts:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None
    sel = selection(view)
    assert X.public not in sel.selected
    if publisher_names_x:
        assert [b.reason for b in sel.ignored] == [S_NOT_ELIGIBLE]
    else:  # control: the honest round selects A, whose vote is counted
        assert sel.selected == frozenset({A.public}) and [g.workers for g in v.groups] == [(A.public,)]


def test_an_offer_required_key_outside_its_own_allowlist_is_refused() -> None:
    # protocol v2: such an offer is not valid at all (docs/protocol.md section 4.1), neither to seal
    # nor from a peer: the required outsider can never be counted
    offer = make_offer(
        key("publisher"), replicas=2, quorum=2, workers=(A.public, B.public), require=Require((X.public,), 1)
    )
    with pytest.raises(LocalError, match="require.keys: 1 key.s. not in the allowlist"):
        seal(key("publisher"), offer)
    pub = key("publisher")
    body = offer.to_obj()
    sig = pub.sign(b"p2pci/v2/offer\x00" + canonical(body))
    raw = canonical({"body": body, "kind": "offer", "sig": sig, "signer": pub.public, "v": 2})
    with pytest.raises(ProtocolError, match="require.keys: 1 key.s. not in the allowlist"):
        open_envelope(raw)
    # control: the same envelope with X in the allowlist opens
    ok = make_offer(
        key("publisher"), replicas=2, quorum=2, workers=(A.public, X.public), require=Require((X.public,), 1)
    ).to_obj()
    sig = pub.sign(b"p2pci/v2/offer\x00" + canonical(ok))
    assert open_envelope(canonical({"body": ok, "kind": "offer", "sig": sig, "signer": pub.public, "v": 2})).kind == "offer"


def test_control_the_allowlisted_pair_reproduces() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=(A.public, B.public)))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert verdict_of(sim, ObserverPolicy(trust=frozenset({A.public, B.public, X.public}))).state == "REPRODUCED"
