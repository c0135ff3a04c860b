"""Any two boards holding the same facts compute the same verdict, whatever the order (design 3.5)."""

from __future__ import annotations

import random

from hypothesis import event, given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board
from p2pci.core.messages import Require
from p2pci.core.signing import NodeKey
from p2pci.core.tally import ObserverPolicy, tally, verdict_json

from .jobgen import JobSim, key, make_offer

POOL = [key(f"worker-{i}") for i in range(10)]
# decliner: declines, then builds and reveals anyway; late_decliner: declines after its reveal
ROLES = ["honest", "liar", "equivocator", "copier", "expired", "failer", "silent", "decliner", "late_decliner"]
CREATED = 1_000_000
DEADLINE = 1_600_000


@st.composite
def jobs(draw: st.DrawFn) -> tuple[JobSim, list[NodeKey]]:
    m = draw(st.integers(1, 8))
    roles = draw(st.lists(st.sampled_from(ROLES), min_size=m, max_size=m))
    replicas = draw(st.integers(1, 6))
    quorum = draw(st.integers(1, replicas))
    workers = POOL[:m]
    allow = draw(st.none() | st.sets(st.sampled_from(workers), min_size=1))
    eligible = workers if allow is None else [w for w in workers if w in allow]  # require keys ⊆ allowlist
    req = draw(st.none() | st.sets(st.sampled_from(eligible), min_size=1))
    sim = JobSim(
        make_offer(
            key("publisher"),
            replicas=replicas,
            quorum=quorum,
            workers="open" if allow is None else tuple(sorted(k.public for k in allow)),
            require=None
            if req is None
            else Require(tuple(sorted(k.public for k in req)), draw(st.integers(1, len(req)))),
            created=CREATED,
            deadline=DEADLINE,
        )
    )
    rng = random.Random(draw(st.integers(0, 2**32)))
    pending = []
    for k, role in zip(workers, roles, strict=True):
        sim.claim(k, lease_until=CREATED - 1 if role == "expired" else None)
    if draw(st.integers(0, 7)):  # mostly with a round 0 (over every claim): else nobody votes
        sim.select()
    for k, role in zip(workers, roles, strict=True):
        if role == "expired":
            continue
        if role in ("copier", "silent"):
            pending.append((k, role))
            continue
        content = b"evil" if role == "liar" else b"good"
        b = sim.built(k, content, 2 if role == "failer" else 0)
        sim.commit(k, b)
        pending.append((k, role))
    rng.shuffle(pending)
    for k, role in pending:
        if role == "silent":
            continue
        if role == "copier":  # commits only now, after others may have revealed
            b = sim.built(k)
            sim.commit(k, b)
            sim.reveal(k, b)
            continue
        content = b"evil" if role == "liar" else b"good"
        b = sim.built(k, content, 2 if role == "failer" else 0)
        if role == "decliner":
            sim.decline(k, "other")
        sim.reveal(k, b)
        if role == "equivocator":
            sim.reveal(k, sim.built(k, b"other"))
        if role == "late_decliner":
            sim.decline(k, "timeout")
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        sim.cancel()
    return sim, workers


@settings(max_examples=100, deadline=None)
@given(
    jobs(),
    st.randoms(use_true_random=False),
    st.integers(0, 2**32),
    st.sampled_from([CREATED + 1, DEADLINE]),
    st.data(),
)
def test_two_boards_in_different_orders_with_duplicates_agree(
    job: tuple[JobSim, list[NodeKey]], rnd: random.Random, seed: int, now: int, data: st.DataObject
) -> None:
    sim, workers = job
    raws = [f.raw for f in sim.facts]
    order_a = raws + rnd.sample(raws, k=len(raws) // 2)
    rnd.shuffle(order_a)
    order_b = list(reversed(raws)) + raws[: len(raws) // 3]
    random.Random(seed).shuffle(order_b)
    boards = []
    for order in (order_a, order_b):
        board = Board()
        for raw in order:
            assert board.add(raw, now).status in ("new", "duplicate")
        boards.append(board)
    trust = data.draw(st.none() | st.sets(st.sampled_from(workers)))
    req = data.draw(st.none() | st.sets(st.sampled_from(workers), min_size=1))
    policy = ObserverPolicy(
        trust=None if trust is None else frozenset(k.public for k in trust),
        require=None if req is None else Require(tuple(sorted(k.public for k in req)), 1),
        quorum=data.draw(st.none() | st.integers(1, 4)),
    )
    va, vb = (board.job(sim.job) for board in boards)
    assert va is not None and vb is not None
    verdict_a, verdict_b = tally(va, now, policy), tally(vb, now, policy)
    event(verdict_a.state)
    assert verdict_a == verdict_b
    assert verdict_json(va, verdict_a) == verdict_json(vb, verdict_b)
    assert boards[0].facts.keys() == boards[1].facts.keys()
    # a board that never saw the liars' facts cannot be tricked into their digest
    if verdict_a.state == "REPRODUCED":
        good = sim.built(workers[0]).digest
        evil = sim.built(workers[0], b"evil").digest
        assert verdict_a.digest in (good, evil)


@settings(max_examples=60, deadline=None)
@given(jobs(), st.randoms(use_true_random=False), st.sampled_from([CREATED + 1, DEADLINE]), st.data())
def test_tally_after_every_fact_equals_a_fresh_tally(
    job: tuple[JobSim, list[NodeKey]], rnd: random.Random, now: int, data: st.DataObject
) -> None:
    """The tally is memoised and caches commit checks on the view: after every
    arrival (duplicates included) it must equal the tally of a fresh board holding the same facts."""
    sim, workers = job
    facts = list(sim.facts) + rnd.sample(sim.facts, k=len(sim.facts) // 3)
    rnd.shuffle(facts)
    trust = data.draw(st.none() | st.sets(st.sampled_from(workers)))
    req = data.draw(st.none() | st.sets(st.sampled_from(workers), min_size=1))
    policies = [
        ObserverPolicy(),
        ObserverPolicy(
            trust=None if trust is None else frozenset(k.public for k in trust),
            require=None if req is None else Require(tuple(sorted(k.public for k in req)), 1),
            quorum=data.draw(st.none() | st.integers(1, 4)),
        ),
    ]
    board = Board()  # tallied under both policies in turn
    own = [Board() for _ in policies]  # each tallied under one policy only
    held = []
    for fact in facts:
        for b in (board, *own):
            b.add_fact(fact)
        if fact not in held:
            held.append(fact)
        fresh = Board()
        for f in held:
            fresh.add_fact(f)
        fresh_view = fresh.job(sim.job)
        assert fresh_view is not None
        expected = [tally(fresh_view, now, policy) for policy in policies]
        for i in data.draw(st.permutations(range(len(policies)))):
            view = board.job(sim.job)
            assert view is not None
            assert tally(view, now, policies[i]) == expected[i]
        for b, policy, want in zip(own, policies, expected, strict=True):
            view = b.job(sim.job)
            assert view is not None
            assert tally(view, now, policy) == want
