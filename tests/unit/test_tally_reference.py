"""The rewritten tally (issue 17: cached rule-5 votes, no per-call sorts, builders) gives the verdict
the earlier tally gave (`tally_reference.reference_tally`), after every fact of a job, under any
observer policy, before and after the deadline; hostile facts included."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board
from p2pci.core.messages import Require
from p2pci.core.tally import ObserverPolicy, tally

from .tally_reference import reference_tally
from .test_convergence import CREATED, DEADLINE, jobs
from .test_trust_v2_props import honest_jobs, hostile_facts


def policies(data: st.DataObject, workers: list[bytes]) -> list[ObserverPolicy]:
    trust = data.draw(st.none() | st.sets(st.sampled_from(workers)))
    req = data.draw(st.none() | st.sets(st.sampled_from(workers), min_size=1))
    return [
        ObserverPolicy(),
        ObserverPolicy(
            trust=None if trust is None else frozenset(trust),
            require=None if req is None else Require(tuple(sorted(req)), data.draw(st.integers(1, len(req)))),
            quorum=data.draw(st.none() | st.integers(1, 4)),
        ),
    ]


def check_every_step(facts: list, job: bytes, pols: list[ObserverPolicy], now: int) -> set[str]:
    board = Board()
    states = set()
    for f in facts:
        board.add_fact(f)
        view = board.job(job)
        if view is None:
            continue
        for p in pols:
            got = tally(view, now, p)
            assert got == reference_tally(view, now, p)
            states.add(got.state)
    return states


@settings(max_examples=150, deadline=None)
@given(jobs(), st.randoms(use_true_random=False), st.sampled_from([CREATED + 1, DEADLINE]), st.data())
def test_the_tally_equals_the_reference_after_every_fact(
    job: tuple, rnd: random.Random, now: int, data: st.DataObject
) -> None:
    sim, workers = job
    facts = list(sim.facts)
    rnd.shuffle(facts)
    check_every_step(facts, sim.job, policies(data, [k.public for k in workers]), now)


@settings(max_examples=100, deadline=None)
@given(honest_jobs(), st.data())
def test_the_tally_equals_the_reference_with_hostile_facts(sim: object, data: st.DataObject) -> None:
    hostile = data.draw(hostile_facts(sim))  # type: ignore[arg-type]
    facts = data.draw(st.permutations(list(sim.facts) + hostile))  # type: ignore[attr-defined]
    keys: list[bytes] = sorted({f.signer for f in facts})
    now = data.draw(st.sampled_from([1_500_000, 10**12]))
    check_every_step(facts, sim.job, policies(data, keys), now)  # type: ignore[attr-defined]


def test_the_reference_is_not_the_tally_itself() -> None:
    # the oracle must be an independent copy: a mutant of p2pci.core.tally does not reach it
    import p2pci.core.tally as t

    from . import tally_reference

    assert tally_reference.reference_tally is not t._tally
    assert tally_reference.reference_tally.__module__ != t._tally.__module__
