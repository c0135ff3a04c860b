"""`p2pci.core.access.may_fetch`: who may fetch a job's blobs (docs/security.md, "Who can fetch what")."""

from __future__ import annotations

from p2pci.core.access import may_fetch
from p2pci.core.board import Board
from p2pci.core.tally import PENDING, Verdict
from tests.unit.jobgen import JobSim, key, make_offer

PUB, A, B, C, STRANGER = (key(n) for n in ("publisher", "a", "b", "c", "stranger"))
REPRODUCED = Verdict("REPRODUCED")


def test_traditional_mode_allowlist_and_publisher_only() -> None:
    sim = JobSim(make_offer(PUB, replicas=2, quorum=2, workers=tuple(sorted((A.public, B.public)))), publisher=PUB)
    sim.claim(A)
    view = sim.view()
    assert may_fetch(view, PENDING, PUB.public)
    assert may_fetch(view, PENDING, A.public) and may_fetch(view, PENDING, B.public)
    assert not may_fetch(view, PENDING, STRANGER.public)
    assert not may_fetch(view, REPRODUCED, STRANGER.public)  # a verdict never opens a traditional job
    sim.claim(STRANGER)  # a claim outside the allowlist changes nothing
    assert not may_fetch(sim.view(), PENDING, STRANGER.public)


def test_open_mode_claimants_until_the_first_select_then_selected_then_anyone() -> None:
    sim = JobSim(make_offer(PUB, replicas=2, quorum=2), publisher=PUB)
    assert not may_fetch(sim.view(), PENDING, A.public)  # no claim: nothing
    for k in (A, B, C):
        sim.claim(k)
    view = sim.view()
    assert all(may_fetch(view, PENDING, k.public) for k in (A, B, C))  # the prefetch window
    assert not may_fetch(view, PENDING, STRANGER.public)
    sim.select()
    view = sim.view()
    chosen = [k for k in (A, B, C) if may_fetch(view, PENDING, k.public)]
    assert len(chosen) == 2  # after the first select: the selected only
    assert not may_fetch(view, PENDING, STRANGER.public)
    assert not may_fetch(view, Verdict("DISPUTED"), STRANGER.public)
    assert may_fetch(view, REPRODUCED, STRANGER.public)  # open and REPRODUCED: anyone
    assert may_fetch(view, PENDING, PUB.public)


def test_no_offer_no_access() -> None:
    sim = JobSim(make_offer(PUB), publisher=PUB)
    board = Board()
    board.add_fact(sim.claim(A))
    view = board.job(sim.job)
    assert view is not None and view.offer is None
    assert not may_fetch(view, REPRODUCED, A.public)
