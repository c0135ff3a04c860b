"""Protocol v2 trust properties (P1, P3, P5, P7, P8 and the select checks), as hypothesis properties.

The attacker here holds any number of fresh keys and signs whatever it likes: claims with
huge leases, commits, reveals whose `seen` lists name anybody's commits, equivocations,
declines and `select` facts of its own. It never holds the publisher's key or seed.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board, JobView
from p2pci.core.codec import canonical, decode
from p2pci.core.evidence import completeness, export_bundle, load_bundle, verify_bundle
from p2pci.core.messages import BlobRef, Claim, Commit, Decline, Require, Reveal, Select
from p2pci.core.selection import S_NOT_PUBLISHER, S_SEED, S_WORKERS, selection, selection_rank
from p2pci.core.signing import Fact, commit_hash, seal
from p2pci.core.tally import Verdict, tally, verdict_json

from .jobgen import JobSim, h, key, make_offer

NOW = 1_500_000
HONEST = [key(f"honest-{i}") for i in range(6)]
STRANGERS = [key(f"stranger-{i}") for i in range(6)]


def core_of(v: Verdict) -> tuple[object, ...]:
    """Everything in a verdict except the lists of ignored votes and ignored selects."""
    return (v.state, v.digest, v.exit_code, v.groups, v.dissenters, v.equivocators, v.reason,
            v.selection.rounds, v.selection.seed, v.missing, v.declines)  # fmt: skip


def view_of(facts: list[Fact]) -> JobView:
    b = Board()
    for f in facts:
        b.add(f.raw, NOW)
    views = [v for v in b.jobs() if v.offer is not None]
    assert len(views) == 1
    return views[0]


@st.composite
def honest_jobs(draw: st.DrawFn) -> JobSim:
    """An offer, honest claims, the publisher's select, and commits/reveals by some of the selected."""
    replicas = draw(st.integers(1, 4))
    quorum = draw(st.integers(1, replicas))
    req = None
    if draw(st.booleans()):
        req = Require((HONEST[5].public,), 1)
    sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=quorum, require=req))
    n = draw(st.integers(1, 6))
    for k in HONEST[:n]:
        sim.claim(k)
    sim.select()
    chosen = set(selection(sim.view()).current)
    contents = {k.public: draw(st.sampled_from([b"good", b"good", b"bad"])) for k in HONEST}
    built = {}
    for k in HONEST[:n]:
        if k.public in chosen and draw(st.booleans() | st.just(True)):
            built[k.public] = (k, sim.built(k, contents[k.public]))
            sim.commit(k, built[k.public][1])
    view = sim.view()
    for k, b in built.values():
        if draw(st.booleans() | st.just(True)):
            sim.reveal(k, b, seen=view.seen_commits(1024, b.digest))
    return sim


@st.composite
def hostile_facts(draw: st.DrawFn, sim: JobSim) -> list[Fact]:
    """Facts signed by keys that no `select` names (strangers): anything they can sign."""
    honest_commits = [f.id for f in sim.facts if f.kind == "commit"]
    out: list[Fact] = []
    made_commits: list[bytes] = []
    for k in STRANGERS[: draw(st.integers(1, 6))]:
        content = draw(st.sampled_from([b"evil", b"good", b"bad"]))
        b = sim.built(k, content)
        ops = draw(st.lists(st.sampled_from(["claim", "commit", "reveal", "equivocate", "select", "decline"]),
                            max_size=6))  # fmt: skip
        for op in ops:
            if op == "claim":
                out.append(seal(k, Claim(sim.job, draw(st.sampled_from([2**62, NOW + 1, 0])), b"x")))
            elif op == "commit":
                c = seal(k, Commit(sim.job, commit_hash(b.salt, b.digest, k.public)))
                made_commits.append(c.id)
                out.append(c)
            elif op == "reveal":
                pool = honest_commits + made_commits
                seen = tuple(sorted(set(draw(st.lists(st.sampled_from(pool), max_size=8))))) if pool else ()
                out.append(seal(k, Reveal.of(sim.job, b.digest, b.salt, 0, b.manifest, sim_log(), seen)))
            elif op == "equivocate":
                b2 = sim.built(k, content + b"2")
                out.append(seal(k, Commit(sim.job, commit_hash(b2.salt, b2.digest, k.public))))
            elif op == "select":
                body = sim.select_body()
                out.append(seal(k, replace(body, workers=tuple(sorted([k.public, *body.workers])))))
            elif op == "decline":
                out.append(seal(k, Decline(sim.job, "policy", "no", None)))
    return out


def sim_log() -> BlobRef:
    return BlobRef(h(b"log"), 3)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_p1_facts_of_unselected_keys_never_change_the_verdict(data: st.DataObject) -> None:
    sim = data.draw(honest_jobs())
    before = tally(view_of(sim.facts), NOW)
    hostile = data.draw(hostile_facts(sim))
    after = tally(view_of(sim.facts + hostile), NOW)
    assert core_of(after) == core_of(before)
    # and what changed is only reported: every stranger that revealed is ignored as unselected
    strangers = {f.signer for f in hostile}
    assert not strangers & {w for g in after.groups for w in g.workers}
    assert not strangers & set(after.equivocators)
    assert {i.worker for i in after.ignored} - {i.worker for i in before.ignored} <= strangers


@settings(max_examples=80, deadline=None)
@given(st.data(), st.randoms(use_true_random=False))
def test_any_two_boards_with_the_same_facts_agree(data: st.DataObject, rnd: random.Random) -> None:
    sim = data.draw(honest_jobs())
    facts = sim.facts + data.draw(hostile_facts(sim))
    other = list(facts)
    rnd.shuffle(other)
    for now in (NOW, sim.offer.deadline):
        a, b = view_of(facts), view_of(other)
        va, vb = tally(a, now), tally(b, now)
        assert va == vb
        assert verdict_json(a, va) == verdict_json(b, vb)
        # incremental: tallying after every arrival ends where a fresh board does
        board = Board()
        for f in other:
            board.add(f.raw, now)
            for v in board.jobs():
                tally(v, now)
        (inc,) = [v for v in board.jobs() if v.offer is not None]
        assert tally(inc, now) == va


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_a_select_that_breaks_its_commitment_or_the_ranking_is_ignored_and_reported(
    data: st.DataObject,
) -> None:
    replicas = data.draw(st.integers(1, 3))
    sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=1))
    n = data.draw(st.integers(replicas + 1, 6))
    for k in HONEST[:n]:
        sim.claim(k)
    good = sim.select_body()
    order = sorted((k.public for k in HONEST[:n]), key=lambda w: selection_rank(sim.seed, sim.job, w))
    how = data.draw(st.sampled_from(["seed", "swap", "stranger"]))
    if how == "seed":
        bad: Select = replace(
            good, seed=data.draw(st.binary(min_size=32, max_size=32).filter(lambda s: s != sim.seed))
        )
        signer, reason = sim.publisher, S_SEED
    elif how == "swap":  # a listed claimant ranked worse than a selected one takes its place
        out = data.draw(st.sampled_from(order[:replicas]))
        inn = data.draw(st.sampled_from(order[replicas:]))
        bad = replace(good, workers=tuple(sorted([w for w in good.workers if w != out] + [inn])))
        signer, reason = sim.publisher, S_WORKERS
    else:
        bad, signer, reason = good, data.draw(st.sampled_from(STRANGERS)), S_NOT_PUBLISHER
    f = seal(signer, bad)
    facts = [*sim.facts, f]
    # every selected-looking worker builds and reveals: none of it counts
    for k in HONEST[:n]:
        b = sim.built(k)
        facts.append(seal(k, Commit(sim.job, commit_hash(b.salt, b.digest, k.public))))
    view = view_of(facts)
    for k in HONEST[:n]:
        b = sim.built(k)
        facts.append(
            seal(
                k, Reveal.of(sim.job, b.digest, b.salt, 0, b.manifest, sim_log(), tuple(sorted(view.commit_ids)))
            )
        )
    view = view_of(facts)
    sel = selection(view)
    assert sel.rounds == () and [(x.fact_id, x.reason) for x in sel.ignored] == [(f.id, reason)]
    v = tally(view, NOW)
    assert v.state == "PENDING" and v.groups == ()
    assert any(s["reason"] == reason for s in verdict_json(view, v)["ignored_selects"])


def _bundle(sim: JobSim, facts: list[Fact]) -> bytes:
    raws = list(dict.fromkeys(f.raw for f in facts))  # a bundle holds each fact once
    return canonical({"v": 2, "job": sim.job, "facts": raws})


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_p8_cutting_a_selected_workers_reveal_makes_the_bundle_incomplete(data: st.DataObject) -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(k, b"good", 0) for k in HONEST[:3]])
    view, verdict = verify_bundle(export_bundle(sim.view()), NOW)
    assert verdict.state == "REPRODUCED" and completeness(view, verdict).complete
    reveals = [f for f in sim.facts if f.kind == "reveal"]
    cut = data.draw(st.lists(st.sampled_from(reveals), min_size=1, unique_by=lambda f: f.id))
    kept = [f for f in sim.facts if f not in cut]
    view2, verdict2 = verify_bundle(_bundle(sim, kept), NOW)
    c = completeness(view2, verdict2)
    assert not c.complete and set(c.missing) == {f.signer for f in cut}
    assert all("no reveal of selected worker" in p for p in c.problems())


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_p8_a_real_offer_plus_fresh_keys_never_gives_reproduced(data: st.DataObject) -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=data.draw(st.integers(1, 3)), quorum=1))
    hostile = data.draw(hostile_facts(sim))
    # also a copy of a select body re-signed by a stranger, naming only strangers
    view, verdict = verify_bundle(_bundle(sim, [sim.offer_fact, *hostile]), NOW)
    assert verdict.state in ("PENDING",)
    assert not completeness(view, verdict).complete
    assert load_bundle(_bundle(sim, [sim.offer_fact, *hostile])).offer is not None
    assert decode(_bundle(sim, [sim.offer_fact]))["v"] == 2


def test_p7_a_verdict_that_loses_votes_goes_back_to_pending_before_the_deadline() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    a, b = HONEST[:2]
    sim.honest_round([(a, b"good", 0), (b, b"good", 0)])
    assert tally(sim.view(), NOW).state == "REPRODUCED"
    sim.commit(b, sim.built(b, b"other"))  # b equivocates after the fact
    v = tally(sim.view(), NOW)
    assert v.state == "PENDING" and v.equivocators == (b.public,)
    # the publisher can then replace the equivocator in a later round
    c = HONEST[2]
    sim.claim(c)
    sim.select(drop=(b.public,))
    assert c.public in selection(sim.view()).current


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_p5_strangers_and_unlisted_keys_cannot_end_a_require_job(data: st.DataObject) -> None:
    trusted = HONEST[5]
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, require=Require((trusted.public,), 1)))
    # three selected non-trusted workers reveal three different digests, early
    for k in HONEST[:3]:
        sim.claim(k)
    sim.select()
    for i, k in enumerate(HONEST[:3]):
        b = sim.built(k, bytes([i]))
        c = sim.commit(k, b)
        sim.reveal(k, b, seen=(c.id,))
    facts = sim.facts + data.draw(hostile_facts(sim))
    v = tally(view_of(facts), NOW)
    assert v.state == "PENDING"  # not DISPUTED: only the trusted key can end it
    assert tally(view_of(facts), sim.offer.deadline).state == "EXPIRED"
