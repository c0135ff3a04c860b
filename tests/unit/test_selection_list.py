"""Which claims the publisher lists in a `select` (selection.claims_to_list), and the attack it
stops: junk claims that fill the 1,024 places of a job's list before the honest workers claim
(docs/security.md "Who votes: selection", "Junk cannot fill the list")."""

from __future__ import annotations

from dataclasses import replace

from p2pci.core.board import JobView
from p2pci.core.identity import identity_bits
from p2pci.core.messages import MAX_SELECT_CLAIMS, Claim, Decline, Require, Select
from p2pci.core.node import Publish
from p2pci.core.selection import (
    MAX_LIST_PER_ROUND,
    claims_to_list,
    due_replacements,
    next_select,
    place_may_fill,
    round_pending,
    selection,
    selection_rank,
)
from p2pci.core.signing import Fact, NodeKey, seal

from .jobgen import JobSim, h, key, make_offer
from .test_node_machine import T0, machine, own_job, published_kinds

NOW = 1_000_000 + 3_000  # make_offer's created + 3 s: after the window, every claim below live


def nonce_of_tier(k: NodeKey, tier: int) -> bytes:
    """An identity nonce of exactly `tier` bits for `k` (cheap for small tiers)."""
    i = 0
    while identity_bits(k.public, nonce := i.to_bytes(8, "big")) != tier:
        i += 1
    return nonce


def keys_of_tier(prefix: str, n: int, tier: int) -> list[tuple[NodeKey, bytes]]:
    out = []
    for i in range(n):
        k = key(f"{prefix}{i}")
        out.append((k, nonce_of_tier(k, tier)))
    return out


def signers(view: JobView, claims: frozenset[bytes] | tuple[bytes, ...]) -> set[bytes]:
    return {view.claim_ids[c].signer for c in claims}


def by_rank(sim: JobSim, keys: list[bytes]) -> list[bytes]:
    return sorted(keys, key=lambda w: selection_rank(sim.seed, sim.job, w))


def test_a_round_lists_require_keys_then_stronger_proofs_then_by_seed_rank() -> None:
    req = key("required")
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, require=Require((req.public,), 1)))
    junk = keys_of_tier("junk", MAX_LIST_PER_ROUND + 40, 1)
    strong = keys_of_tier("strong", 2, 5)
    sim.claim(req, identity=nonce_of_tier(req, 0))  # weaker than every junk key: listed first all the same
    for k, n in junk + strong:
        sim.claim(k, identity=n)
    claims = claims_to_list(sim.view(), sim.seed, NOW, None)
    assert len(claims) == MAX_LIST_PER_ROUND
    room = MAX_LIST_PER_ROUND - 1 - len(strong)
    expected_junk = by_rank(sim, [k.public for k, _ in junk])[
        :room
    ]  # the tier's best ranks, not its lowest ids
    assert signers(sim.view(), claims) == {req.public} | {k.public for k, _ in strong} | set(expected_junk)
    body = next_select(sim.view(), sim.seed, NOW, close=True)
    assert body is not None and frozenset(body.claims) == claims and req.public in body.workers


def test_each_round_lists_at_most_256_new_keys_and_1024_claims_in_all() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    workers = {k.public: k for k in (key(f"c{i}") for i in range(MAX_SELECT_CLAIMS + 100))}
    for k in workers.values():
        sim.claim(k, lease_until=sim.offer.deadline - 1)
    sizes = []
    for r in range(6):
        view = sim.view()
        sel = selection(view)
        if sel.rounds:
            sim.decline(workers[sel.current[0]])  # the ranked worker declines: a round is due
            view = sim.view()
        body = next_select(view, sim.seed, NOW + r, close=True)
        assert body is not None and body.round == r
        sim._add(seal(sim.publisher, body))
        sizes.append(len(body.claims))
    assert selection(sim.view()).rounds[-1].round == 5  # every round valid
    assert sizes == [256, 512, 768, 1024, 1024, 1024]


def test_a_key_already_listed_is_not_listed_again_with_its_renewed_claim() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1))
    a, b, c = key("a"), key("b"), key("c")
    first_a = sim.claim(a, lease_until=NOW + 1_000).id
    sim.claim(b, lease_until=sim.offer.deadline - 1)
    sim.select()
    renewed = sim.claim(a, lease_until=sim.offer.deadline - 1).id  # a renews after its first lapsed
    late = sim.claim(c, lease_until=sim.offer.deadline - 1).id
    sim.decline(b)
    body = next_select(sim.view(), sim.seed, NOW + 2_000, close=True)
    assert body is not None and body.round == 1
    assert late in body.claims and first_a in body.claims and renewed not in body.claims


def test_observers_check_a_round_not_which_claims_the_publisher_preferred() -> None:
    # a round listing only the weakest keys (not what claims_to_list would list) is valid on every
    # node: the listing rule is the publisher's own, so no observer's verification changed
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    weak = sim.claim(key("weak"), identity=nonce_of_tier(key("weak"), 0)).id
    sim.claim(key("strong"), identity=nonce_of_tier(key("strong"), 6))
    sim.select(claims=(weak,))
    sel = selection(sim.view())
    assert not sel.ignored and sel.current == (key("weak").public,)


# --------------------------------------------------------------------------
# the attack, on the publisher's node machine (real admission, real selection)


def ground_claim(sim: JobSim, k: NodeKey, nonce: bytes, below: int) -> Fact:
    """A claim whose fact id is below `below` (ids are hashes the signer steers by its lease)."""
    lease = sim.offer.deadline - 1
    while True:
        f = seal(k, Claim(sim.job, lease, nonce))
        if int.from_bytes(f.id, "big") < below:
            return f
        lease -= 1


def test_junk_claims_before_round_0_neither_fill_the_list_nor_keep_later_claimants_out() -> None:
    """1,024 junk keys (256 in each identity tier 0-3, the most the claimant cap stores of each)
    claim before round 0 with fact ids ground to the lowest 1/64 of the range; then stronger honest
    workers claim, as many as a round lists. Under "lowest fact ids first" the junk took the whole
    list for good: no honest worker listed, none selected, and no room for a worker that claims
    after round 0. Now round 0 lists the honest workers only and selects among them, and a worker
    claiming after round 0 is listed in round 1."""
    pub = key("pub")
    m = machine(pub, builds=False)
    seed = h(b"a seed")
    offer = replace(
        make_offer(pub, replicas=3, quorum=2, created=T0, deadline=T0 + 600_000, identity_bits=0),
        select_commit=h(seed),
    )
    fact, _ = m.publish_offer(offer, seed, T0)
    m.receive_facts([fact], T0)
    sim = JobSim(offer, publisher=pub, seed=seed)
    below = 1 << 250

    def deliver(facts: list[Fact], now: int) -> None:
        ok, refused = m.admit_facts(facts)
        assert not refused
        m.receive_facts(ok, now)

    junk = [ground_claim(sim, k, n, below) for t in range(4) for k, n in keys_of_tier(f"junk{t}-", 256, t)]
    deliver(junk, T0 + 10)
    honest = {k.public: k for k, _ in keys_of_tier("honest", MAX_LIST_PER_ROUND, 8)}
    honest_claims = [
        seal(k, Claim(sim.job, offer.deadline - 1, nonce_of_tier(k, 8))) for k in honest.values()
    ]
    deliver(honest_claims, T0 + 20)

    def select_now(now: int) -> Select:
        effs = m.tick(now)
        (out,) = [e.fact for e in effs if isinstance(e, Publish)]
        m.receive_facts([out], now)
        assert isinstance(out.body, Select)
        return out.body

    r0 = select_now(T0 + offer.claim_window)
    view = m.board.job(sim.job)
    assert view is not None
    assert signers(view, r0.claims) == set(honest)  # every honest worker, no junk
    assert r0.workers and set(r0.workers) <= set(honest)
    # a worker that claims after round 0, and a place that frees: round 1 lists it (a stronger
    # proof than the honest ones: 256 keys of tier 8 or more hold claims, so the claimant cap of
    # admission refuses a new key of tier 8, docs/protocol.md 4.8)
    newcomer = key("newcomer")
    deliver([seal(newcomer, Claim(sim.job, offer.deadline - 1, nonce_of_tier(newcomer, 9)))], T0 + 1_500)
    deliver([seal(honest[r0.workers[0]], Decline(sim.job, "image", "", None))], T0 + 1_500)
    r1 = select_now(T0 + 1_500)
    assert r1.round == 1 and newcomer.public in signers(view, r1.claims)
    v = m.verdict(sim.job, T0 + 1_500)
    assert len(v.selection.rounds) == 2 and not v.selection.ignored


# --------------------------------------------------------------------------
# an equivocator's place (docs/protocol.md section 5 step 7, section 6)


def test_a_ranked_equivocator_is_replaced_like_a_decliner() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    a, b, c = key("a"), key("b"), key("c")
    for k in (a, b, c):
        sim.claim(k, lease_until=sim.offer.deadline - 1)
    sim.select(claims=tuple(sorted(f.id for f in sim.facts if f.kind == "claim" and f.signer != c.public)))
    assert set(selection(sim.view()).current) == {a.public, b.public}
    sim.commit(a, sim.built(a))
    sim.commit(b, sim.built(b))
    view = sim.view()
    assert due_replacements(view, NOW) == frozenset() and not place_may_fill(view, NOW)
    assert next_select(view, sim.seed, NOW, close=True) is None  # every place held: no round
    sim.commit(b, sim.built(b, b"other"))  # b equivocates: its votes are dropped (section 6)
    view = sim.view()
    assert due_replacements(view, NOW) == {b.public}
    assert place_may_fill(view, NOW) and round_pending(view, NOW)  # the reveals wait for c
    body = next_select(view, sim.seed, NOW, close=True)
    assert body is not None and body.round == 1 and set(body.workers) == {a.public, c.public}


def test_a_verdict_that_loses_an_equivocators_vote_gets_a_replacement_round() -> None:
    """protocol section 6: the verdict goes back to PENDING and the publisher's next round
    replaces the lost worker (the publisher's node machine)."""
    _pub, m, sim = own_job(replicas=2, quorum=2)
    ks = {k.public: k for k in (key("a"), key("b"), key("c"))}
    for k in ks.values():
        m.receive_facts([sim.claim(k, lease_until=sim.offer.deadline - 1)], T0 + 10)
    t = sim.offer.created + sim.offer.claim_window
    effs = m.tick(t)
    (r0,) = [e.fact for e in effs if isinstance(e, Publish)]
    m.receive_facts([r0], t)
    assert isinstance(r0.body, Select)
    chosen = [ks[w] for w in r0.body.workers]
    (spare,) = set(ks) - set(r0.body.workers)
    built = [(k, sim.built(k)) for k in chosen]
    m.receive_facts([sim.commit(k, b) for k, b in built], t + 100)
    m.receive_facts([sim.reveal(k, b) for k, b in built], t + 200)
    assert published_kinds(m.tick(t + 200)) == [] and m.verdict(sim.job, t + 200).state == "REPRODUCED"
    liar = chosen[0]
    m.receive_facts([sim.commit(liar, sim.built(liar, b"other"))], t + 300)
    effs = m.tick(t + 300)
    (r1,) = [e.fact for e in effs if isinstance(e, Publish)]
    assert isinstance(r1.body, Select) and r1.body.round == 1
    assert liar.public not in r1.body.workers and spare in r1.body.workers
    m.receive_facts([r1], t + 300)
    v = m.verdict(sim.job, t + 300)
    assert v.state == "PENDING" and v.equivocators == (liar.public,) and len(v.selection.rounds) == 2
