"""The tally's incremental path (issue 17, fifth pass): while only first reveals arrive, a job's
votes are updated with the new signers' votes (`core.tally._Votes`) instead of recounted. After
every fact, or every batch of facts, in any order, the verdict must equal a full count of the
same facts on a fresh board (`_tally`) and the reference tally (`tally_reference`)."""

from __future__ import annotations

import random

from hypothesis import event, given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board, JobView
from p2pci.core.signing import Fact, NodeKey
from p2pci.core.tally import ObserverPolicy, Verdict, _tally, tally

from .jobgen import JobSim, key, make_offer
from .tally_reference import reference_tally
from .test_convergence import CREATED, DEADLINE, jobs
from .test_tally_reference import policies

POOL = [key(f"incr-{i}") for i in range(6)]


def full_count(facts: list[Fact], job: bytes, now: int, policy: ObserverPolicy) -> Verdict:
    """The verdict counted from scratch: a fresh board, no memo, no kept votes, the facts added
    in fact-id order (so the signers are added to the votes in another order than they came)."""
    board = Board()
    for f in sorted(facts, key=lambda f: f.id):
        board.add_fact(f)
    view = board.job(job)
    assert view is not None
    verdict, _ = _tally(view, now, policy)
    return verdict


def check_batches(
    facts: list[Fact], job: bytes, pols: list[ObserverPolicy], now: int, rnd: random.Random
) -> int:
    """Deliver `facts` in random batches of 1-3, tallying after each under every policy: the
    incremental verdict equals the full count and the reference. Returns how many tallies reused
    the job's kept votes (the incremental path)."""
    board = Board()
    held: list[Fact] = []
    reused = 0
    i = 0
    while i < len(facts):
        n = rnd.randint(1, 3)
        for f in facts[i : i + n]:
            if board.add_fact(f):
                held.append(f)
        i += n
        view = board.job(job)
        if view is None:
            continue
        for p in pols:
            before = kept_votes(view)
            got = tally(view, now, p)
            if before is not None and kept_votes(view) is before:
                reused += 1
            assert got == full_count(held, job, now, p)
            assert got == reference_tally(view, now, p)
    return reused


def kept_votes(view: JobView) -> object:
    memo = view.cache.get("verdict")
    return None if memo is None else memo.votes  # type: ignore[attr-defined]



@settings(max_examples=150, deadline=None)
@given(jobs(), st.randoms(use_true_random=False), st.sampled_from([CREATED + 1, DEADLINE]), st.data())
def test_incremental_equals_a_full_count_in_any_order(
    job: tuple[JobSim, list[NodeKey]], rnd: random.Random, now: int, data: st.DataObject
) -> None:
    sim, workers = job
    facts = list(sim.facts) + rnd.sample(sim.facts, k=len(sim.facts) // 3)  # duplicates too
    rnd.shuffle(facts)
    reused = check_batches(facts, sim.job, policies(data, [k.public for k in workers]), now, rnd)
    event(f"kept votes reused: {min(reused, 3)}+" if reused >= 3 else f"kept votes reused: {reused}")


@st.composite
def witness_jobs(draw: st.DrawFn) -> tuple[JobSim, list[Fact], list[bytes]]:
    """Selected workers that all committed, then reveal one of two digests with arbitrary `seen`
    lists (copiers and witnesses in every combination); the reveals come last, in random order,
    so that each one takes the incremental path."""
    n = draw(st.integers(2, 6))
    workers = POOL[:n]
    sim = JobSim(make_offer(key("publisher"), replicas=n, quorum=draw(st.integers(1, n)), created=CREATED,
                            deadline=DEADLINE))  # fmt: skip
    for k in workers:
        sim.claim(k)
    sim.select()
    built = {}
    for k in workers:
        b = sim.built(k, draw(st.sampled_from([b"good", b"good", b"evil"])))
        built[k.public] = (k, b, sim.commit(k, b))
    setup = list(sim.facts)
    commit_ids = [c.id for _, _, c in built.values()]
    for k, b, _ in built.values():
        seen = tuple(sorted(draw(st.sets(st.sampled_from(commit_ids)))))
        sim.reveal(k, b, seen=seen)
    reveals = draw(st.permutations(sim.facts[len(setup) :]))
    return sim, setup + list(reveals), [k.public for k in workers]


@settings(max_examples=200, deadline=None)
@given(witness_jobs(), st.randoms(use_true_random=False), st.data())
def test_incremental_witness_rule_equals_a_full_count(
    job: tuple[JobSim, list[Fact], list[bytes]], rnd: random.Random, data: st.DataObject
) -> None:
    sim, facts, workers = job
    board = Board()
    pols = policies(data, workers)
    for f in facts:
        board.add_fact(f)
        view = board.job(sim.job)
        assert view is not None
        for p in pols:
            got = tally(view, CREATED + 1, p)
            assert got == full_count(list(board.facts.values()), sim.job, CREATED + 1, p)
            assert got == reference_tally(view, CREATED + 1, p)


def test_first_reveals_keep_the_votes_and_other_facts_recount() -> None:
    a, b, c = POOL[:3]
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, created=CREATED, deadline=DEADLINE))
    for k in (a, b, c):
        sim.claim(k)
    sim.select()
    built = {k.public: sim.built(k, b"good") for k in (a, b, c)}
    for k in (a, b, c):
        sim.commit(k, built[k.public])
    board = Board()
    for f in sim.facts:
        board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None
    assert tally(view, CREATED + 1).state == "PENDING"
    votes = kept_votes(view)
    assert votes is not None
    # a first reveal: the same votes, updated
    board.add_fact(sim.reveal(a, built[a.public]))
    assert tally(view, CREATED + 1).state == "PENDING"
    assert kept_votes(view) is votes
    board.add_fact(sim.reveal(b, built[b.public]))
    v = tally(view, CREATED + 1)
    assert (v.state, v.missing) == ("REPRODUCED", (c.public,))
    assert kept_votes(view) is votes
    # a second reveal by the same signer (equivocation) is not a first reveal: counted afresh,
    # and its signer's vote is dropped
    board.add_fact(sim.reveal(b, sim.built(b, b"other")))
    v = tally(view, CREATED + 1)
    assert kept_votes(view) is not votes
    assert v.state == "PENDING" and v.equivocators == (b.public,)
    assert v == reference_tally(view, CREATED + 1, ObserverPolicy())
    # any other fact recounts too
    votes = kept_votes(view)
    board.add_fact(sim.cancel())
    assert tally(view, CREATED + 1).state == "CANCELLED"
    assert kept_votes(view) is not votes


def test_a_late_witness_brings_back_a_dropped_vote() -> None:
    # three votes of one digest: the third's commit is in nobody's `seen` list (dropped by the
    # fast path; its own `seen` list naming it does not count), until a fourth vote (witnessed
    # by the first) lists it
    ws = POOL[:4]
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=2, created=CREATED, deadline=DEADLINE))
    for k in ws:
        sim.claim(k)
    sim.select()
    built = [sim.built(k, b"good") for k in ws]
    commits = [sim.commit(k, bt).id for k, bt in zip(ws, built, strict=True)]
    board = Board()
    for f in sim.facts:
        board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None
    tally(view, CREATED + 1)
    seen_of = [
        tuple(sorted((commits[1], commits[3]))),
        (commits[0],),
        tuple(sorted(commits[:3])),
        tuple(sorted(commits)),
    ]
    counted = []
    for k, bt, seen in zip(ws, built, seen_of, strict=True):
        board.add_fact(sim.reveal(k, bt, seen=seen))
        v = tally(view, CREATED + 1)
        assert v == reference_tally(view, CREATED + 1, ObserverPolicy())
        counted.append(sum(len(g.workers) for g in v.groups))
        if k is ws[2]:
            assert [i.worker for i in v.ignored] == [ws[2].public]
    assert counted == [1, 2, 2, 4]
