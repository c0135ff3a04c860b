"""Concrete tally cases (docs/protocol.md section 6, protocol v2)."""

from __future__ import annotations

from p2pci.core.board import Board
from p2pci.core.messages import Require
from p2pci.core.selection import due_replacements, next_select, selection_rank
from p2pci.core.tally import (
    R_DECLINED,
    R_NOT_SEEN,
    R_NOT_SELECTED,
    R_NOT_TRUSTED,
    X_NO_SELECTION,
    ObserverPolicy,
    Verdict,
    provenance_json,
    tally,
    verdict_json,
)

from .jobgen import JobSim, key, make_offer

A, B, C, D, E = (key(n) for n in "abcde")
T = key("trusted")
NOW = 1_500_000


def verdict_of(sim: JobSim, now: int = NOW, policy: ObserverPolicy | None = None) -> Verdict:
    board = Board()
    for f in sim.facts:
        assert board.add(f.raw, now).status in ("new", "duplicate")
    view = board.job(sim.job)
    assert view is not None
    return tally(view, now, policy or ObserverPolicy())


def test_three_honest_reproduced() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"good", 0)])
    v = verdict_of(sim)
    assert v.state == "REPRODUCED"
    assert v.digest == sim.built(A).digest
    assert v.exit_code == 0
    assert len(v.groups) == 1 and set(v.groups[0].workers) == {A.public, B.public, C.public}
    assert v.dissenters == () and v.equivocators == () and v.ignored == ()


def test_two_honest_one_liar_reproduced_with_dissenter() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"evil", 0)])
    v = verdict_of(sim)
    assert v.state == "REPRODUCED"
    assert v.digest == sim.built(A).digest
    assert v.dissenters == (C.public,)
    assert [len(g.workers) for g in v.groups] == [2, 1]


def test_collusion_limit_liars_win_only_if_each_commit_is_in_the_others_seen() -> None:
    # Liars B and C reveal the same wrong digest. If each lists the other's commit
    # in `seen` (they committed before any reveal, as colluders can), they count:
    # commit-reveal cannot stop a coalition. This is the documented collusion limit.
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"evil", 0), (C, b"evil", 0)])
    v = verdict_of(sim)
    assert v.state == "REPRODUCED" and v.digest == sim.built(B, b"evil").digest
    assert v.dissenters == (A.public,)

    # Without each other's commits in their seen lists (only the honest worker's),
    # a colluder is counted only if someone else saw its commit: the honest worker
    # saw neither (it revealed first, seeing only its own commit).
    sim2 = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    ba, bb, bc = sim2.built(A), sim2.built(B, b"evil"), sim2.built(C, b"evil")
    for k in (A, B, C):
        sim2.claim(k)
    sim2.select()
    ca = sim2.commit(A, ba)
    sim2.reveal(A, ba, seen=(ca.id,))
    sim2.commit(B, bb)
    sim2.commit(C, bc)
    sim2.reveal(B, bb, seen=(ca.id,))
    sim2.reveal(C, bc, seen=(ca.id,))
    v2 = verdict_of(sim2)
    assert v2.state != "REPRODUCED" or v2.digest == ba.digest
    assert {i.worker for i in v2.ignored if i.reason == R_NOT_SEEN} == {B.public, C.public}

    # Only one direction (B lists C's commit, C does not list B's): B is not witnessed, and
    # C's only witness is B, which is not counted: witnesses must be counted votes (v2), so
    # neither counts.
    sim3 = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    ba, bb, bc = sim3.built(A), sim3.built(B, b"evil"), sim3.built(C, b"evil")
    for k in (A, B, C):
        sim3.claim(k)
    sim3.select()
    ca = sim3.commit(A, ba)
    sim3.reveal(A, ba, seen=(ca.id,))
    cb = sim3.commit(B, bb)
    cc = sim3.commit(C, bc)
    sim3.reveal(B, bb, seen=(ca.id, cc.id))
    sim3.reveal(C, bc, seen=(ca.id, cc.id))
    v3 = verdict_of(sim3)
    assert v3.state == "PENDING"
    assert {i.worker for i in v3.ignored} == {B.public, C.public}
    assert cb.id not in {c for f in sim3.facts if f.kind == "reveal" for c in f.body.seen}  # type: ignore[union-attr]


def test_copier_not_in_anyones_seen_is_not_counted() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    # D (selected in a later round) copies the revealed digest: it commits after the reveals,
    # nobody saw its commit.
    bd = sim.built(D, b"good")
    sim.claim(D)
    sim.select()
    sim.commit(D, bd)
    sim.reveal(D, bd)
    v = verdict_of(sim)
    assert v.state == "REPRODUCED"
    assert set(v.groups[0].workers) == {A.public, B.public}
    assert [(i.worker, i.reason) for i in v.ignored] == [(D.public, R_NOT_SEEN)]

    # Alone with one honest worker, the copier cannot make quorum 2.
    sim2 = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim2.honest_round([(A, b"good", 0)])
    bd = sim2.built(D, b"good")
    sim2.claim(D)
    sim2.select()
    sim2.commit(D, bd)
    sim2.reveal(D, bd)
    v2 = verdict_of(sim2)
    assert v2.state == "PENDING"


def test_equivocator_reported_and_votes_dropped() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"good", 0)])
    # C also reveals a second, different result for the same job.
    bc2 = sim.built(C, b"other")
    sim.reveal(C, bc2)
    v = verdict_of(sim)
    assert v.equivocators == (C.public,)
    assert v.state == "REPRODUCED"
    assert set(v.groups[0].workers) == {A.public, B.public}
    assert all(C.public not in g.workers for g in v.groups)


def test_equivocating_commits_are_reported_too() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    sim.commit(B, sim.built(B, b"other"))
    v = verdict_of(sim)
    assert v.equivocators == (B.public,)
    assert v.state == "PENDING"


def test_allowlist_quorum_one_traditional_mode() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1, workers=(A.public,)))
    # A reveals alone, seeing only its own commit: trusted not to copy.
    ba = sim.built(A)
    sim.claim(A)
    ca = sim.commit(A, ba)
    sim.reveal(A, ba, seen=(ca.id,))
    # B and C (not allowed, so never selected) agree on another digest: ignored.
    sim.honest_round([(B, b"evil", 0), (C, b"evil", 0)])
    v = verdict_of(sim)
    assert v.state == "REPRODUCED" and v.digest == ba.digest
    assert v.groups[0].workers == (A.public,)
    assert {(i.worker, i.reason) for i in v.ignored} == {
        (B.public, R_NOT_SELECTED),
        (C.public, R_NOT_SELECTED),
    }


def test_require_trusted_key_pending_until_it_agrees() -> None:
    req = Require((T.public,), 1)
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=3, require=req))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"good", 0)])
    assert verdict_of(sim).state == "PENDING"
    bt = sim.built(T)
    sim.claim(T)
    sim.select()  # a require key that claims is always selected
    sim.commit(T, bt)
    sim.reveal(T, bt, seen=(sim.commit_of[T.public].id,))  # trusted: no seen rule
    v = verdict_of(sim)
    assert v.state == "REPRODUCED"
    assert T.public in v.groups[0].workers


def test_observer_require_tightens_never_loosens() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"good", 0)])
    assert verdict_of(sim).state == "REPRODUCED"
    # The observer requires T: pending.
    assert verdict_of(sim, policy=ObserverPolicy(require=Require((T.public,), 1))).state == "PENDING"
    # The observer requires quorum 4: more than there are votes -> pending (not loosened below 2).
    assert verdict_of(sim, policy=ObserverPolicy(quorum=4)).state == "PENDING"
    assert verdict_of(sim, policy=ObserverPolicy(quorum=1)).state == "REPRODUCED"
    # A trust set with only A and B: C ignored, still 2 votes.
    v = verdict_of(sim, policy=ObserverPolicy(trust=frozenset({A.public, B.public})))
    assert v.state == "REPRODUCED"
    assert [(i.worker, i.reason) for i in v.ignored] == [(C.public, R_NOT_TRUSTED)]
    # Trust only A: one vote, pending.
    assert verdict_of(sim, policy=ObserverPolicy(trust=frozenset({A.public}))).state == "PENDING"


def test_all_builds_in_no_group_reaches_quorum_disputed() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"one", 0), (B, b"two", 0), (C, b"three", 0)])
    v = verdict_of(sim)
    assert v.state == "DISPUTED" and v.digest is None
    assert len(v.groups) == 3


def test_two_groups_reach_quorum_disputed() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=2))
    sim.honest_round([(A, b"one", 0), (B, b"one", 0), (C, b"two", 0), (D, b"two", 0)])
    assert verdict_of(sim).state == "DISPUTED"


def test_quorum_agrees_on_exit_2_failed() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"", 2), (B, b"", 2), (C, b"good", 0)])
    v = verdict_of(sim)
    assert v.state == "FAILED" and v.exit_code == 2
    assert v.dissenters == (C.public,)


def test_deadline_passed_expired() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2, deadline=1_600_000))
    sim.honest_round([(A, b"good", 0)])
    assert verdict_of(sim, now=1_599_999).state == "PENDING"
    assert verdict_of(sim, now=1_600_000).state == "EXPIRED"


def test_cancel_by_publisher_only() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0)])
    sim.cancel(E)  # not the publisher: no effect
    assert verdict_of(sim).state == "PENDING"
    sim.cancel()
    assert verdict_of(sim).state == "CANCELLED"


def test_commit_mismatch_ignored() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    ba, bb = sim.built(A), sim.built(B)
    sim.claim(A)
    sim.claim(B)
    sim.select()
    sim.commit(A, ba)
    sim.commit(B, sim.built(B, b"committed-something-else"))
    sim.reveal(A, ba)
    sim.reveal(B, bb)
    v = verdict_of(sim)
    assert v.state == "PENDING"
    assert [i.worker for i in v.ignored] == [B.public]


def test_facts_before_offer_and_unknown_offer() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    board = Board()
    for f in sim.facts[1:]:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None and view.offer is None
    assert tally(view, NOW).state == "PENDING"
    board.add(sim.offer_fact.raw, NOW)
    assert tally(view, NOW).state == "REPRODUCED"


def test_verdict_json_shape() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"bad", 0)])
    board = Board()
    for f in sim.facts:
        board.add(f.raw, NOW)
    view = board.job(sim.job)
    assert view is not None
    j = verdict_json(view, tally(view, NOW))
    assert j["verdict"] == "REPRODUCED" and j["job"] == sim.job.hex() and j["project"] == "hello"
    assert j["replicas"] == 3 and j["quorum"] == 2
    assert j["dissenters"] == [C.peer_id]
    assert sorted(j["groups"][0]["workers"]) == sorted([A.peer_id, B.peer_id])
    assert set(j) == {
        "job",
        "project",
        "verdict",
        "digest",
        "replicas",
        "quorum",
        "groups",
        "dissenters",
        "equivocators",
        "ignored",
        "reason",
        "rounds",
        "ignored_selects",
        "missing",
        "declines",
        "cause",
        "workers",
        "created",
        "deadlines",
        "provenance",
    }
    assert j["reason"] is None and j["missing"] == [] and j["declines"] == []
    assert [w["phase"] for w in j["workers"]] == ["revealed"] * 3
    offer = sim.offer_fact.body
    assert j["created"] == offer.created
    assert j["deadlines"] == {
        "claim_window_end": offer.created + offer.claim_window,
        "reveal": min(offer.created + offer.limits.timeout_s * 1000 + 30_000, offer.deadline),
        "offer": offer.deadline,
    }
    from p2pci.control.schema import JOB_KEYS, PROVENANCE_KEYS

    assert set(j) == JOB_KEYS and set(j["provenance"]) == PROVENANCE_KEYS
    offer = sim.offer
    assert j["provenance"] == {
        "source_sha256": offer.source.sha256.hex(),
        "source_size": 1234,
        "commit": None,
        "tree": None,
        "image": offer.image.id,
        "image_recipe": None,
        "command": ["sh", "-c", "make"],
        "env": {"LANG": "C"},
        "source_date_epoch": 1_700_000_000,
        "inputs_sha256": None,
        "inputs_size": None,
    }
    # a pinned, git-published offer states its inputs, commit, tree and image recipe
    from dataclasses import replace

    from p2pci.core.messages import BlobRef, Provenance

    pinned = replace(offer, inputs=BlobRef(b"\x11" * 32, 99), provenance=Provenance("c" * 40, "d" * 40, "busybox"))
    p = provenance_json(pinned)
    assert (p["inputs_sha256"], p["inputs_size"]) == ("11" * 32, 99)
    assert (p["commit"], p["tree"], p["image_recipe"]) == ("c" * 40, "d" * 40, "busybox")
    assert [r["round"] for r in j["rounds"]] == [0]
    assert sorted(j["rounds"][0]["workers"]) == sorted([A.peer_id, B.peer_id, C.peer_id])


def test_a_lone_vote_for_its_digest_needs_no_witness_nothing_was_there_to_copy() -> None:
    # Open mode, replicas 1, quorum 1: nobody else revealed that digest, so it copies nobody.
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    sim.honest_round([(A, b"good", 0)])
    v = verdict_of(sim)
    assert v.state == "REPRODUCED" and v.ignored == ()


def test_votes_without_a_select_never_count_and_the_expiry_says_why() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, deadline=1_600_000))
    ba, bb = sim.built(A), sim.built(B)
    for k in (A, B):
        sim.claim(k)
    ca, cb = sim.commit(A, ba), sim.commit(B, bb)
    sim.reveal(A, ba, seen=(ca.id, cb.id))
    sim.reveal(B, bb, seen=(ca.id, cb.id))
    v = verdict_of(sim)
    assert v.state == "PENDING" and v.groups == ()
    assert {(i.worker, i.reason) for i in v.ignored} == {
        (A.public, R_NOT_SELECTED),
        (B.public, R_NOT_SELECTED),
    }
    late = verdict_of(sim, now=1_600_000)
    assert late.state == "EXPIRED" and late.reason == X_NO_SELECTION
    sim.select()
    assert verdict_of(sim).state == "REPRODUCED"


def test_an_early_wrong_reveal_does_not_make_honest_votes_look_copied() -> None:
    # L (selected) reveals a wrong digest before the honest workers commit. Their `seen`
    # lists are per digest: frozen at the first reveal of *their* digest, not of L's.
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=2))
    for k in (A, B, C, E):
        sim.claim(k)
    sim.select()
    bl = sim.built(E, b"evil")
    cl = sim.commit(E, bl)
    sim.reveal(E, bl, seen=(cl.id,))
    built = {k.public: sim.built(k) for k in (A, B, C)}
    commits = [sim.commit(k, built[k.public]) for k in (A, B, C)]
    view = sim.view()
    for k in (A, B, C):
        seen = view.seen_commits(1024, built[k.public].digest)
        assert {c.id for c in commits} <= set(seen)
        sim.reveal(k, built[k.public], seen=seen)
    v = verdict_of(sim)
    assert v.state == "REPRODUCED" and v.digest == built[A.public].digest
    assert set(v.groups[0].workers) == {A.public, B.public, C.public} and v.dissenters == (E.public,)
    # the v1 rule (frozen at the first reveal of any digest) would have left the honest commits out
    assert not {c.id for c in commits} & set(view.seen_commits(1024))


def test_a_witness_must_have_revealed_the_same_digest() -> None:
    # L1 and L2 reveal X; only the honest A and B (digest D) list their commits. v1 counted
    # any signer as a witness; v2 needs a counted vote for the same digest, so L1 and L2 do
    # not count (a shared digest with nobody holding the other's commit looks like a copy).
    l1, l2 = key("l1"), key("l2")
    sim = JobSim(make_offer(key("publisher"), replicas=4, quorum=2))
    for k in (A, B, l1, l2):
        sim.claim(k)
    sim.select()
    built = {k.public: sim.built(k, b"good" if k in (A, B) else b"evil") for k in (A, B, l1, l2)}
    commits = {k.public: sim.commit(k, built[k.public]).id for k in (A, B, l1, l2)}
    everyone = tuple(sorted(commits.values()))
    honest_only = tuple(sorted([commits[A.public], commits[B.public]]))
    sim.reveal(A, built[A.public], seen=everyone)
    sim.reveal(B, built[B.public], seen=everyone)
    sim.reveal(l1, built[l1.public], seen=honest_only)
    sim.reveal(l2, built[l2.public], seen=honest_only)
    v = verdict_of(sim)
    assert v.state == "REPRODUCED" and v.digest == built[A.public].digest and v.dissenters == ()
    assert {(i.worker, i.reason) for i in v.ignored} == {(l1.public, R_NOT_SEEN), (l2.public, R_NOT_SEEN)}


# ------------------------------------------------------------------ the decline rule (§6 2.3)


def test_a_decline_after_the_reveal_drops_the_vote_and_the_publisher_replaces_it() -> None:
    """A selected worker that declines after its reveal loses the vote it revealed, on the board
    that counted it (the kept votes are recounted: `base_version` moves) as on a fresh one, and
    its place is due for replacement: the publisher's next round names the next key in rank.
    Mutants: a tally that keeps a decliner's vote (REPRODUCED stays), one that only checks
    declines when the votes are first built (the kept votes would not see the late decline),
    a decline that does not move `base_version`."""
    pub = key("publisher")
    sim = JobSim(make_offer(pub, replicas=2, quorum=2, created=1_000_000, deadline=2_000_000))
    ranked = sorted((A, B, C), key=lambda k: selection_rank(sim.seed, sim.job, k.public))
    first, second, third = ranked
    for k in (A, B, C):
        sim.claim(k, lease_until=1_900_000)
    sim.select()
    for k in (first, second):
        sim.commit(k, sim.built(k))
    for k in (first, second):
        sim.reveal(k, sim.built(k))
    board = Board()
    for f in sim.facts:
        board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None
    v = tally(view, NOW)
    assert v.state == "REPRODUCED" and v.groups[0].workers == tuple(sorted((first.public, second.public)))
    base = view.base_version
    board.add_fact(sim.decline(first, "timeout", "too late"))
    assert view.base_version > base
    v = tally(view, NOW)
    assert v == verdict_of(sim)
    assert v.state == "PENDING" and v.groups[0].workers == (second.public,)
    assert [(i.worker, i.reason) for i in v.ignored] == [(first.public, R_DECLINED)]
    assert v.declines == ((first.public, "timeout", "too late"),) and v.equivocators == ()
    assert verdict_json(view, v)["ignored"] == [{"worker": first.peer_id, "reason": "declined its place"}]
    now = 1_010_000
    assert due_replacements(view, now) == {first.public}
    body = next_select(view, sim.seed, now, close=True)
    assert body is not None and body.round == 1
    assert body.workers == tuple(sorted((second.public, third.public)))
    assert verdict_of(sim, 2_000_000).state == "EXPIRED"


def test_the_decline_rule_comes_after_selection_and_equivocation_and_before_the_rest() -> None:
    """The reason reported for a vote that fails several rules is that of the first (§6 2):
    an unselected decliner is `not selected`, a declining equivocator is listed as an
    equivocator only, and a decliner outside the observer's trust set is `declined its place`.
    Declines of keys nobody selected change nothing (a decline before any round does, once a
    round selects its signer). Mutants: the decline check before the selection check, before
    the equivocation check, or after the trust check."""
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    sim.decline(C, "policy", "before the round")  # C declines first, then claims and is selected
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (C, b"good", 0)])
    sim.decline(D, "policy", "a stranger")
    bd = sim.built(D)
    sim.commit(D, bd)
    sim.reveal(D, bd)
    sim.commit(B, sim.built(B, b"other"))  # B equivocates
    sim.decline(B, "other")
    v = verdict_of(sim)
    assert v.equivocators == (B.public,)
    assert {i.worker: i.reason for i in v.ignored} == {C.public: R_DECLINED, D.public: R_NOT_SELECTED}
    assert v.state == "PENDING" and v.groups[0].workers == (A.public,)
    v = verdict_of(sim, policy=ObserverPolicy(trust=frozenset({A.public, B.public})))
    assert {i.worker: i.reason for i in v.ignored} == {C.public: R_DECLINED, D.public: R_NOT_SELECTED}
