"""Per-job admission of facts from the network (`p2pci.core.board.admit`, docs/protocol.md §4.8).

Each rule has a test that fails without it (checked by disabling the rule), and the rules
together never change a verdict: an honest job delivered in any order, with refused facts
offered again as sync does, ends with every fact held and the same verdict.
"""

from __future__ import annotations

import random
from pathlib import Path

from p2pci.core.board import (
    MAX_CLAIMANTS,
    MAX_DECLINE_SIGNERS,
    MAX_ORPHAN_FACTS,
    MAX_VOTES_PER_SIGNER,
    MIN_RENEW_MS,
    Board,
    admit,
    claim_cap,
)
from p2pci.core.identity import identity_bits, mint
from p2pci.core.messages import Cancel, Claim, Commit, Decline, Select
from p2pci.core.node import NodeConfig, NodeMachine
from p2pci.core.signing import Fact, NodeKey, seal
from p2pci.core.tally import ObserverPolicy, tally
from p2pci.core.worker import WorkerConfig
from p2pci.store.facts import FactStore

from .jobgen import JobSim, key, make_offer


def board_of(*facts: Fact) -> Board:
    b = Board()
    for f in facts:
        b.add_fact(f)
    return b


def reasons(board: Board, facts: list[Fact]) -> list[str | None]:
    """Each fact's refusal reason (None: taken), in the order given."""
    _ok, refused = admit(board, facts)
    why = {f.id: r for f, r in refused}
    return [why.get(f.id) for f in facts]


def test_commit_and_reveal_need_a_claim_of_their_signer() -> None:
    sim = JobSim(make_offer(key("publisher")))
    w, stranger = key("w"), key("stranger")
    claim = sim.claim(w)
    b = sim.built(w)
    commit, reveal = sim.commit(w, b), sim.reveal(w, b)
    s_commit = seal(stranger, Commit(sim.job, commit.body.hash))  # type: ignore[union-attr]
    board = board_of(sim.offer_fact)
    assert reasons(board, [commit, reveal]) == ["unclaimed", "unclaimed"]
    # the claim in the same batch, even after them: claims are admitted first
    ok, refused = admit(board, [reveal, commit, claim])
    assert refused == [] and ok[0] == claim
    board.add_fact(claim)
    assert reasons(board, [commit, reveal, s_commit]) == [None, None, "unclaimed"]


def test_a_key_keeps_two_commits_and_two_reveals_per_job_enough_to_be_an_equivocator() -> None:
    sim = JobSim(make_offer(key("publisher")))
    w = key("w")
    claim = sim.claim(w)
    builds = [sim.built(w, f"r{i}".encode()) for i in range(MAX_VOTES_PER_SIGNER + 1)]
    commits = [sim.commit(w, b) for b in builds]
    reveals = [sim.reveal(w, b) for b in builds]
    board = board_of(sim.offer_fact, claim)
    ok = [None] * MAX_VOTES_PER_SIGNER
    assert reasons(board, commits + reveals) == ok + ["equivocation"] + ok + ["equivocation"]
    for f in commits[:2] + reveals[:2]:
        board.add_fact(f)
    assert reasons(board, [commits[-1], reveals[-1]]) == ["equivocation", "equivocation"]
    view = board.job(sim.job)
    assert view is not None and w.public in view.equivocators


def test_a_claim_weaker_than_the_offers_identity_bits_is_refused() -> None:
    sim = JobSim(make_offer(key("publisher"), identity_bits=6))
    w = key("w")
    assert identity_bits(w.public, b"") < 6  # the precondition of the refusal below
    weak = seal(w, Claim(sim.job, 2_000_000, b""))
    strong = seal(w, Claim(sim.job, 2_000_000, mint(w.public, 6)))
    assert reasons(board_of(sim.offer_fact), [weak, strong]) == ["weak_identity", None]
    # with the offer in the same batch too
    assert reasons(Board(), [weak, sim.offer_fact]) == ["weak_identity", None]


def test_a_claim_outside_the_allowlist_is_refused() -> None:
    inside, outside = key("inside"), key("outside")
    sim = JobSim(make_offer(key("publisher"), workers=(inside.public,)))
    a, b = sim.claim(inside), sim.claim(outside)
    assert reasons(board_of(sim.offer_fact), [a, b]) == [None, "not_allowed"]


def test_claims_per_signer_are_capped_by_the_jobs_life_unless_a_select_lists_them() -> None:
    offer = make_offer(key("publisher"), created=1_000_000, deadline=1_001_000)  # a 1 s job
    sim = JobSim(offer)
    cap = claim_cap(offer)
    assert cap == 1_000 // MIN_RENEW_MS + 16
    w = key("w")
    claims = [sim.claim(w, lease_until=1_000_500 + i) for i in range(cap + 1)]
    board = board_of(sim.offer_fact)
    assert reasons(board, claims) == [None] * cap + ["claims_per_signer"]
    for f in claims[:cap]:
        board.add_fact(f)
    extra = claims[cap]
    assert reasons(board, [extra]) == ["claims_per_signer"]
    # a round of the publisher that lists it: taken (the round must verify on every board)
    sel = seal(sim.publisher, Select(sim.job, 0, sim.seed, 1_000_100, (extra.id,), ()))
    board.add_fact(sel)
    assert reasons(board, [extra]) == [None]
    # another signer's select listing it does not count
    b2 = board_of(*[sim.offer_fact, *claims[:cap]])
    b2.add_fact(seal(key("other"), Select(sim.job, 0, sim.seed, 1_000_100, (extra.id,), ())))
    assert reasons(b2, [extra]) == ["claims_per_signer"]


def test_the_claim_cap_is_above_what_an_honest_worker_renews() -> None:
    # the reference worker renews every lease_ms / 2; a lease of 500 ms (shorter than any
    # default or test) renewing over the whole life of the offer stays under the cap
    for life in (1_000, 60_000, 3_600_000):
        offer = make_offer(key("p"), created=0, deadline=life)
        assert life // (500 // 2) + 1 < claim_cap(offer)


def nonce_of_exactly(k: NodeKey, bits: int) -> bytes:
    """An identity nonce of strength exactly `bits` for `k` (cheap for small `bits`)."""
    i = 0
    while identity_bits(k.public, n := i.to_bytes(8, "big")) != bits:
        i += 1
    return n


def claims_at(sim: JobSim, prefix: str, n: int, bits: int) -> list[Fact]:
    """One claim of each of `n` fresh keys, each with an identity proof of exactly `bits`."""
    keys = [key(f"{prefix}{i}") for i in range(n)]
    return [seal(k, Claim(sim.job, 2_000_000, nonce_of_exactly(k, bits))) for k in keys]


def test_claimant_keys_per_job_are_capped_and_free_keys_crowd_out_only_each_other() -> None:
    sim = JobSim(make_offer(key("publisher")))  # identity_bits 0: keys are free
    junk = claims_at(sim, "junk", MAX_CLAIMANTS + 1, 0)
    board = board_of(sim.offer_fact)
    # in one batch: the first MAX_CLAIMANTS keys, then refused
    assert reasons(board, junk) == [None] * MAX_CLAIMANTS + ["claimants"]
    for f in junk[:MAX_CLAIMANTS]:
        board.add_fact(f)
    assert reasons(board, junk[-1:]) == ["claimants"]
    view = board.job(sim.job)
    assert view is not None and view.claimant_tiers[0] == MAX_CLAIMANTS
    # a key already claiming renews (its own cap is claim_cap)
    renew = seal(key("junk0"), Claim(sim.job, 2_000_001, nonce_of_exactly(key("junk0"), 0)))
    assert reasons(board, [renew]) == [None]
    # an honest worker with a stronger proof is still taken (the offer demands none)
    honest = key("honest")
    strong = seal(honest, Claim(sim.job, 2_000_000, nonce_of_exactly(honest, 3)))
    assert reasons(board, [strong]) == [None]
    # a select of the publisher that lists a refused claim: taken (the round verifies everywhere)
    board.add_fact(seal(sim.publisher, Select(sim.job, 0, sim.seed, 1_000_100, (junk[-1].id,), ())))
    assert reasons(board, junk[-1:]) == [None]


def test_the_claimant_cap_counts_keys_at_least_as_strong() -> None:
    sim = JobSim(make_offer(key("publisher")))
    weak, strong = claims_at(sim, "w", MAX_CLAIMANTS, 1), claims_at(sim, "s", MAX_CLAIMANTS, 2)
    board = board_of(sim.offer_fact, *strong)
    # MAX_CLAIMANTS keys of strength 2 hold claims: one of strength 1 or 2 is refused, 3 taken
    assert reasons(board, [weak[0]]) == ["claimants"]
    assert reasons(board, claims_at(sim, "x", 1, 2)) == ["claimants"]
    assert reasons(board, claims_at(sim, "y", 1, 3)) == [None]
    # weaker keys first, then stronger ones: each tier fills up to the cap, no more
    board = board_of(sim.offer_fact, *weak)
    assert reasons(board, [*strong, *claims_at(sim, "z", 1, 2)]) == [None] * MAX_CLAIMANTS + ["claimants"]
    for f in strong:
        board.add_fact(f)
    assert reasons(board, claims_at(sim, "v", 1, 0)) == ["claimants"]


def test_declines_one_per_unclaimed_key_and_a_bounded_number_of_such_keys() -> None:
    sim = JobSim(make_offer(key("publisher")))
    board = board_of(sim.offer_fact)
    first = sim.decline(key("d0"), "policy")
    again = sim.decline(key("d0"), "image")
    assert reasons(board, [first, again]) == [None, "declines_per_signer"]
    many = [sim.decline(key(f"d{i}")) for i in range(MAX_DECLINE_SIGNERS + 1)]
    assert reasons(board, many) == [None] * MAX_DECLINE_SIGNERS + ["decline_signers"]
    for f in many[:MAX_DECLINE_SIGNERS]:
        board.add_fact(f)
    assert reasons(board, [many[-1]]) == ["decline_signers"]
    # a key that claimed the job is always heard (a selected worker's decline is never hidden),
    # up to one decline more than its claims
    w = key("worker")
    claim = sim.claim(w)
    d1, d2, d3 = (sim.decline(w, "timeout", str(i)) for i in range(3))
    board.add_fact(claim)
    assert reasons(board, [d1, d2, d3]) == [None, None, "declines_per_signer"]


def test_selects_and_cancels_only_from_the_publisher() -> None:
    sim = JobSim(make_offer(key("publisher")))
    other = key("other")
    board = board_of(sim.offer_fact)
    mine, theirs = sim.cancel(), seal(other, Cancel(sim.job))
    s_theirs = seal(other, Select(sim.job, 0, sim.seed, 1_000_100, (), ()))
    assert reasons(board, [mine, theirs, s_theirs]) == [None, "not_publisher", "not_publisher"]


def test_facts_of_a_job_whose_offer_is_not_held_are_bounded() -> None:
    sim = JobSim(make_offer(key("publisher")))
    facts = [seal(key(f"o{i}"), Decline(sim.job, "policy", "", None)) for i in range(MAX_DECLINE_SIGNERS)]
    facts += [seal(key(f"c{i}"), Claim(sim.job, 2_000_000, b"")) for i in range(MAX_ORPHAN_FACTS - len(facts) + 1)]
    ok, refused = admit(Board(), facts)
    assert len(ok) == MAX_ORPHAN_FACTS and [r for _f, r in refused] == ["orphan"]
    # once the offer is held the job's own rules apply instead
    assert reasons(board_of(sim.offer_fact), facts[-1:]) == [None]


def verdict_of(facts: list[Fact], job: bytes, now: int) -> tuple[str, bytes | None, frozenset[bytes]]:
    view = board_of(*facts).job(job)
    assert view is not None
    v = tally(view, now, ObserverPolicy())
    return v.state, v.digest, frozenset(view.ids)


def test_an_honest_job_in_any_order_is_taken_whole_when_refused_facts_come_again() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    ws = [key(f"w{i}") for i in range(4)]
    sim.honest_round([(w, b"good", 0) for w in ws[:3]])
    sim.decline(ws[3], "image")
    expect = verdict_of(sim.facts, sim.job, 1_500_000)
    assert expect[0] == "REPRODUCED"
    rng = random.Random(7)
    for _trial in range(50):
        todo = list(sim.facts)
        rng.shuffle(todo)
        board = Board()
        for _round in range(20):  # gossip in a random order, then sync rounds offer the rest again
            batch_size = rng.randint(1, 4)
            left = []
            for i in range(0, len(todo), batch_size):
                ok, refused = admit(board, todo[i : i + batch_size])
                for f in ok:
                    board.add_fact(f)
                left += [f for f, _ in refused]
            todo = left
            if not todo:
                break
        assert todo == []
        view = board.job(sim.job)
        assert view is not None
        v = tally(view, 1_500_000, ObserverPolicy())
        assert (v.state, v.digest, frozenset(view.ids)) == expect


def machine() -> NodeMachine:
    me = key("me")
    return NodeMachine(NodeConfig(key=me, worker=WorkerConfig(me.public), builds=False))


def test_the_machine_counts_refusals_and_lists_a_jobs_offer_and_claims_first_for_sync() -> None:
    sim = JobSim(make_offer(key("publisher")))
    w = key("w")
    claim = sim.claim(w)
    b = sim.built(w)
    commit = sim.commit(w, b)
    junk = [seal(key(f"j{i}"), Commit(sim.job, commit.body.hash)) for i in range(5)]  # type: ignore[union-attr]
    m = machine()
    ok, refused = m.admit_facts([commit, *junk, claim, sim.offer_fact])
    assert ok[:2] == [sim.offer_fact, claim] and commit in ok
    assert sorted(refused) == sorted(f.id for f in junk)
    assert m.refused["unclaimed"] == 5
    m.receive_facts(ok, 1_000_000)
    ids = m.live_ids(1_000_000)
    assert ids == [sim.offer_fact.id, claim.id, commit.id]


def test_the_machine_counts_refused_claimants() -> None:
    sim = JobSim(make_offer(key("publisher")))
    junk = claims_at(sim, "junk", MAX_CLAIMANTS + 5, 0)
    m = machine()
    ok, refused = m.admit_facts([sim.offer_fact, *junk])
    assert len(ok) == 1 + MAX_CLAIMANTS and len(refused) == 5
    assert m.refused["claimants"] == 5


def test_a_restart_reloads_every_stored_fact_whatever_admission_would_say(tmp_path: Path) -> None:
    # a store written before these rules (a commit with no claim, an orphan): reload keeps it all
    sim = JobSim(make_offer(key("publisher")))
    w = key("w")
    stray = seal(w, Commit(sim.job, bytes(32)))
    weak = seal(key("weak"), Claim(sim.job, 2_000_000, b""))
    facts = [stray, weak, sim.offer_fact, sim.claim(w), sim.cancel(key("x"))]
    with FactStore(tmp_path / "state.sqlite") as db:
        for i, f in enumerate(facts):
            db.put(f, i)
    board = Board()
    with FactStore(tmp_path / "state.sqlite") as db:
        assert db.load_into(board) == len(facts)
    assert all(board.has(f.id) for f in facts)
    _ok, refused = admit(Board(), [stray])
    assert refused  # the same commit from the network, on an empty board, is refused
