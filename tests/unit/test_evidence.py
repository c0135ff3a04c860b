"""Evidence bundles: export, offline re-tally, and tampering never gives a false REPRODUCED."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board, JobView
from p2pci.core.codec import canonical, decode
from p2pci.core.errors import ProtocolError
from p2pci.core.evidence import export_bundle, load_bundle, verify_bundle
from p2pci.core.messages import Require
from p2pci.core.signing import open_envelope
from p2pci.core.tally import ObserverPolicy, tally

from .jobgen import JobSim, key, make_offer

NOW = 1_500_000
A, B, C, L = key("a"), key("b"), key("c"), key("liar")


def job() -> tuple[JobSim, JobView]:
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"good", 0), (L, b"evil", 0)])
    board = Board()
    for f in sim.facts:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None
    return sim, view


SIM, VIEW = job()
BUNDLE = export_bundle(VIEW)
TRUE_DIGEST = SIM.built(A).digest


def test_round_trip_gives_the_same_verdict() -> None:
    view, verdict = verify_bundle(BUNDLE, NOW)
    assert verdict == tally(VIEW, NOW)
    assert verdict.state == "REPRODUCED" and verdict.digest == TRUE_DIGEST
    assert view.ids == VIEW.ids
    assert export_bundle(view) == BUNDLE  # canonical: one bundle per fact set


def test_observer_policy_applies_offline() -> None:
    _, verdict = verify_bundle(BUNDLE, NOW, ObserverPolicy(require=Require((key("nobody").public,), 1)))
    assert verdict.state == "PENDING"


def test_removing_any_fact_gives_exactly_the_verdict_of_the_remaining_facts() -> None:
    facts = decode(BUNDLE)["facts"]
    original = tally(VIEW, NOW)
    rejected, changed = [], 0
    for i in range(len(facts)):
        removed = open_envelope(facts[i])
        rest = facts[:i] + facts[i + 1 :]
        data = canonical({"v": 2, "job": SIM.job, "facts": rest})
        try:
            view, verdict = verify_bundle(data, NOW)
        except ProtocolError:
            rejected.append(removed.kind)
            continue
        # the bundle holds exactly the remaining facts, and tallies like a board fed with them
        assert view.ids == VIEW.ids - {removed.id}
        board = Board()
        for raw in rest:
            board.add(raw, NOW)
        direct = board.job(SIM.job)
        assert direct is not None
        assert verdict == tally(direct, NOW)
        # one liar of quorum 2: whatever is removed, a REPRODUCED can only be the honest digest
        assert verdict.state != "REPRODUCED" or verdict.digest == TRUE_DIGEST
        changed += verdict != original
    assert rejected == ["offer"]  # only the offer is indispensable
    assert changed > 0  # removing a reveal shows in the verdict


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 255))
def test_altering_any_byte_is_rejected(pos: int, delta: int) -> None:
    i = pos % len(BUNDLE)
    data = BUNDLE[:i] + bytes([(BUNDLE[i] + delta) % 256]) + BUNDLE[i + 1 :]
    try:
        _, verdict = verify_bundle(data, NOW)
    except ProtocolError:
        return
    pytest.fail(f"altered bundle accepted with verdict {verdict.state}")  # pragma: no cover


def test_facts_of_another_job_and_duplicates_are_rejected() -> None:
    other = JobSim(make_offer(key("publisher"), project="other"))
    facts = decode(BUNDLE)["facts"]
    with pytest.raises(ProtocolError, match="another job"):
        load_bundle(canonical({"v": 2, "job": SIM.job, "facts": [*facts, other.offer_fact.raw]}))
    with pytest.raises(ProtocolError, match="duplicate"):
        load_bundle(canonical({"v": 2, "job": SIM.job, "facts": [*facts, facts[0]]}))
    with pytest.raises(ProtocolError, match="offer"):
        load_bundle(canonical({"v": 2, "job": SIM.job, "facts": facts[1:]}))
    with pytest.raises(ProtocolError, match="unsupported version 3"):
        load_bundle(canonical({"v": 3, "job": SIM.job, "facts": facts}))
    with pytest.raises(ProtocolError, match="version 1 bundles are no longer accepted"):
        load_bundle(canonical({"v": 1, "job": SIM.job, "facts": facts}))
    with pytest.raises(ProtocolError):
        load_bundle(b"\x80")
