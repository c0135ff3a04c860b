"""Tally behaviours that surviving mutants of core/tally.py showed untested
(`make mutate MUTATE=tally`, docs/testing.md "Mutation testing")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from p2pci.core.board import Board, JobView
from p2pci.core.messages import BlobRef, Decline, Require, Select
from p2pci.core.signing import NodeKey, peer_id_of, public_of, seal
from p2pci.core.tally import (
    C_NO_CLAIM,
    C_PUBLISHER_GONE,
    MAX_WORKER_ROWS,
    R_NOT_SEEN,
    R_NOT_SELECTED,
    Group,
    Ignored,
    ObserverPolicy,
    Verdict,
    tally,
    verdict_json,
    worker_rows,
)

from .jobgen import JobSim, h, key, make_offer

A, B, C = (key(n) for n in "abc")


def view_of(sim: JobSim) -> JobView:
    board = Board()
    for f in sim.facts:
        board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None
    return view


def test_two_of_two_that_disagree_is_disputed_at_once() -> None:
    # every build is in (counted == replicas == quorum) and no group has quorum: DISPUTED
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"evil", 0)])
    assert tally(view_of(sim), sim.offer.created + 1).state == "DISPUTED"


def test_with_a_require_a_split_waits_for_the_trusted_keys() -> None:
    # the "all builds are in" DISPUTED rule does not apply when the offer has a require
    sim = JobSim(
        make_offer(key("publisher"), replicas=2, quorum=2, require=Require((key("trusted").public,), 1))
    )
    sim.honest_round([(A, b"good", 0), (B, b"evil", 0)])
    assert tally(view_of(sim), sim.offer.created + 1).state == "PENDING"


def test_a_require_min_counts_each_key_once() -> None:
    # min 2 of {A, X}: A alone (with B, untrusted) is not enough
    x = key("x")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, require=Require((A.public, x.public), 2)))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    assert tally(view_of(sim), sim.offer.created + 1).state == "PENDING"


def test_the_memo_follows_the_deadline_and_the_policy() -> None:
    # one view, asked again: at the deadline it is EXPIRED, with another policy it is recomputed
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    view = view_of(sim)
    assert tally(view, sim.offer.created + 1).state == "REPRODUCED"
    distrust = ObserverPolicy(trust=frozenset({A.public}))
    assert tally(view, sim.offer.created + 1, distrust).state == "PENDING"
    assert tally(view, sim.offer.created + 1).state == "REPRODUCED"
    pending = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    pending.honest_round([(A, b"good", 0)])
    pview = view_of(pending)
    deadline = pending.offer.deadline
    assert tally(pview, deadline - 1).state == "PENDING"
    assert tally(pview, deadline).state == "EXPIRED"  # the same view: the memo must not answer
    assert tally(pview, deadline - 1).state == "PENDING"


def _by_key(*names: str) -> list[NodeKey]:
    return sorted((key(n) for n in names), key=lambda k: k.public)


def _claimed_and_selected(sim: JobSim, ks: list[NodeKey]) -> None:
    for k in ks:
        sim.claim(k)
    sim.select()


def test_a_refused_vote_that_sorts_first_stops_no_other_vote() -> None:
    # votes are checked in key order; a refused one (no commit, or a reveal that does not match
    # its commit) must not end the loop (`continue` -> `break`)
    for refusal in ("no commit", "mismatch"):
        first, k2, k3 = _by_key("v1", "v2", "v3")
        sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
        _claimed_and_selected(sim, [first, k2, k3])
        if refusal == "mismatch":
            sim.commit(first, sim.built(first, b"other"))
        built = {k.public: sim.built(k) for k in (k2, k3)}
        for k in (k2, k3):
            sim.commit(k, built[k.public])
        sim.reveal(first, sim.built(first))
        for k in (k2, k3):
            sim.reveal(k, built[k.public])
        v = tally(view_of(sim), sim.offer.created + 1)
        assert v.state == "REPRODUCED" and set(v.groups[0].workers) == {k2.public, k3.public}, refusal
        assert [i.worker for i in v.ignored] == [first.public]


def test_an_exempt_vote_that_sorts_first_does_not_end_the_witness_check() -> None:
    # the lowest key reveals a digest nobody else has (exempt: nothing to copy); the two others
    # agree but neither saw the other's commit: both are removed (`continue` -> `break`)
    first, k2, k3 = _by_key("w1", "w2", "w3")
    sim = JobSim(make_offer(key("publisher"), replicas=3, quorum=2))
    _claimed_and_selected(sim, [first, k2, k3])
    b1, b2, b3 = sim.built(first, b"unique"), sim.built(k2), sim.built(k3)
    for k, b in ((first, b1), (k2, b2), (k3, b3)):
        sim.commit(k, b)
    sim.reveal(first, b1, seen=())
    sim.reveal(k2, b2, seen=())
    sim.reveal(k3, b3, seen=())
    v = tally(view_of(sim), sim.offer.created + 1)
    assert v.state != "REPRODUCED" and {i.worker for i in v.ignored} == {k2.public, k3.public}


def test_allowlisted_workers_need_no_witness() -> None:
    # traditional mode: the listed keys are trusted not to copy, so empty `seen` lists still count
    a, b = key("listed-a"), key("listed-b")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2, workers=(a.public, b.public)))
    _claimed_and_selected(sim, [a, b])
    ba, bb = sim.built(a), sim.built(b)
    sim.commit(a, ba)
    sim.commit(b, bb)
    sim.reveal(a, ba, seen=())
    sim.reveal(b, bb, seen=())
    assert tally(view_of(sim), sim.offer.created + 1).state == "REPRODUCED"


def test_a_job_whose_offer_is_missing_is_an_empty_pending_verdict() -> None:
    # facts can arrive before their offer: the verdict is PENDING with every list empty, and
    # shows as such (the Verdict defaults are what this verdict is made of)
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    claim = sim.claim(A)
    board = Board()
    board.add_fact(claim)
    view = board.job(sim.job)
    assert view is not None and view.offer is None
    v = tally(view, sim.offer.created + 1)
    assert (v.state, v.digest, v.exit_code, v.reason, v.cause) == ("PENDING", None, None, "", "")
    assert v.groups == v.dissenters == v.equivocators == v.ignored == v.missing == v.declines == ()
    assert v.selection.rounds == () and not v.final
    shown = verdict_json(view, v)
    assert shown["groups"] == shown["ignored"] == shown["rounds"] == shown["missing"] == []
    assert shown["reason"] is None and shown["cause"] is None


def test_final_states_and_immutable_results() -> None:
    finals = {
        s for s in ("PENDING", "REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED") if Verdict(s).final
    }  # type: ignore[arg-type]
    assert finals == {"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"}
    for obj, field in (
        (Verdict("PENDING"), "state"),
        (ObserverPolicy(), "quorum"),
        (Group(b"d", 0, ()), "exit_code"),
        (Ignored(b"w", "r"), "reason"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)


def test_a_larger_group_failing_the_require_does_not_hide_a_smaller_one_that_meets_it() -> None:
    # groups are tried largest first: {A, B} has quorum but no require key, {T} meets both; the
    # scan must go on past the first (mutant: `continue` -> `break` after a failed require)
    t = key("trusted")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=1, require=Require((t.public,), 1)))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0), (t, b"other", 0)])
    v = tally(view_of(sim), sim.offer.created + 1)
    assert [len(g.workers) for g in v.groups] == [2, 1]  # the failing group does come first
    assert v.state == "REPRODUCED" and v.digest == sim.built(t, b"other").digest
    assert v.dissenters == tuple(sorted([A.public, B.public]))


# ---------------------------------------------------------------- session 5 run (the rewritten tally)

PROTOCOL = " ".join((Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text().split())


@pytest.mark.parametrize("text", [C_NO_CLAIM, C_PUBLISHER_GONE])
def test_each_expired_cause_is_the_documented_string(text: str) -> None:
    # the causes are for humans, but documented verbatim (docs/protocol.md section 6): a changed
    # (or None) constant passed every test that compares the verdict with the constant itself
    assert isinstance(text, str) and f"`{text}`" in PROTOCOL


def test_a_round_that_selects_nobody_says_so_in_the_cause() -> None:
    # a round 0 over no claims selects nobody; the job expires with the documented cause
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.select()
    v = tally(view_of(sim), sim.offer.deadline)
    assert v.state == "EXPIRED" and v.selection.rounds and not v.selected
    assert v.cause == "no worker was selected" and "`no worker was selected`" in PROTOCOL


def test_the_declined_text_ranks_codes_by_count_then_name_and_counts_the_rest_as_other() -> None:
    # 11 declines over 10 codes: "cj" twice, then the others once each by name; the 8 named codes
    # (MAX_CAUSE_CODES) are followed by the 2 left as "2 other"
    sim = JobSim(make_offer(key("publisher")))
    codes = ["cj", "cj", "ci", "ch", "cg", "cf", "ce", "cd", "cc", "cb", "ca"]
    for i, code in enumerate(codes):
        sim.decline(key(f"decliner{i}"), code)
    v = tally(view_of(sim), sim.offer.deadline)
    assert v.state == "EXPIRED"
    assert v.cause == C_NO_CLAIM + "; 11 declined: 2 cj, 1 ca, 1 cb, 1 cc, 1 cd, 1 ce, 1 cf, 1 cg, 2 other"


def _require_job(names: tuple[str, ...], replicas: int) -> tuple[JobSim, NodeKey, list[NodeKey]]:
    # open mode with a require key T: T is trusted not to copy, the others are not
    t = key("trusted")
    sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=2, require=Require((t.public,), 1)))
    others = [key(n) for n in names]
    _claimed_and_selected(sim, [t, *others])
    assert tally(view_of(sim), sim.offer.created + 1).selected == {t.public, *(k.public for k in others)}
    return sim, t, others


def test_a_require_key_exempts_itself_only_an_open_worker_with_its_digest_still_needs_a_witness() -> None:
    # T (require key, exempt) and X agree; T's reveal does not list X's commit, so nobody witnesses
    # X: X is ignored and T alone is short of quorum 2. The witness scan must run although an
    # exempt key exists (mutants: the pre-check `per_digest > 1` -> `> 2`, `changed = None`)
    sim, t, (x,) = _require_job(("x",), replicas=2)
    bt, bx = sim.built(t), sim.built(x)
    sim.commit(t, bt)
    sim.commit(x, bx)
    sim.reveal(t, bt, seen=())
    sim.reveal(x, bx)  # X saw T's commit, which witnesses nothing for T (exempt anyway)
    v = tally(view_of(sim), sim.offer.created + 1)
    assert v.state == "PENDING"
    assert [g.workers for g in v.groups] == [(t.public,)]
    assert v.ignored == (Ignored(x.public, R_NOT_SEEN),)
    # control: with T's reveal listing X's commit both count and the job is REPRODUCED
    sim2, t2, (x2,) = _require_job(("x",), replicas=2)
    bt2, bx2 = sim2.built(t2), sim2.built(x2)
    sim2.commit(t2, bt2)
    sim2.commit(x2, bx2)
    sim2.reveal(t2, bt2)
    sim2.reveal(x2, bx2)
    assert tally(view_of(sim2), sim2.offer.created + 1).state == "REPRODUCED"


def test_two_unwitnessed_open_workers_are_removed_when_the_exempt_key_has_another_digest() -> None:
    # T (exempt) reveals a digest of its own; X and Y agree but neither saw the other's commit: both
    # are removed although no exempt vote shares a digest (mutant: `s not in no_copy` -> `s in`)
    sim, t, (x, y) = _require_job(("x", "y"), replicas=3)
    bt, bx, by = sim.built(t, b"other"), sim.built(x), sim.built(y)
    for k, b in ((t, bt), (x, bx), (y, by)):
        sim.commit(k, b)
    for k, b in ((t, bt), (x, bx), (y, by)):
        sim.reveal(k, b, seen=())
    v = tally(view_of(sim), sim.offer.created + 1)
    assert [g.workers for g in v.groups] == [(t.public,)]
    assert v.ignored == tuple(sorted((Ignored(k.public, R_NOT_SEEN) for k in (x, y)), key=lambda i: i.worker))


def test_ignored_votes_are_listed_by_key_whichever_rule_refused_them() -> None:
    # an unselected key U is refused in the first scan, the unwitnessed X later by the witness
    # rule; with U's key above X's the two must still be listed by key (mutant: sort only when
    # more than 2 are ignored)
    for n in range(50):
        u = key(f"unselected{n}")
        if u.public > key("x").public:
            break
    sim, t, (x,) = _require_job(("x",), replicas=2)
    bt, bx, bu = sim.built(t), sim.built(x), sim.built(u)
    sim.commit(t, bt)
    sim.commit(x, bx)
    sim.commit(u, bu)
    sim.reveal(t, bt, seen=())
    sim.reveal(x, bx)
    sim.reveal(u, bu)
    v = tally(view_of(sim), sim.offer.created + 1)
    assert u.public not in v.selected and u.public > x.public
    assert v.ignored == (Ignored(x.public, R_NOT_SEEN), Ignored(u.public, R_NOT_SELECTED))


def _rows(sim: JobSim) -> dict[str, dict[str, object]]:
    view = view_of(sim)
    return {r["worker"]: r for r in worker_rows(view, tally(view, sim.offer.created + 1))}


def test_worker_rows_list_a_strangers_commit_and_name_a_decline_declined() -> None:
    # a key that never claimed but committed is listed (committed, not selected); a decline that is
    # not a timeout is "declined" (mutants: `chosen & commits`, `commits & reveals`, the phase text)
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.claim(A)
    sim.select()
    sim.commit(C, sim.built(C))
    sim.decline(B, "image", "not allowed")
    rows = _rows(sim)
    assert set(rows) == {A.peer_id, B.peer_id, C.peer_id}
    assert (rows[C.peer_id]["phase"], rows[C.peer_id]["selected"]) == ("committed", False)
    assert (rows[B.peer_id]["phase"], rows[B.peer_id]["reason"]) == ("declined", "image")
    assert (rows[A.peer_id]["phase"], rows[A.peer_id]["selected"]) == ("selected", True)


def test_worker_rows_stop_at_max_worker_rows_keeping_the_selected_keys() -> None:
    # 258 claimants, two selected: 256 rows (MAX_WORKER_ROWS), and the two selected are among them
    # whatever their keys (mutants: 257 or no bound; unselected keys first)
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    ks = [key(f"claimant{i}") for i in range(MAX_WORKER_ROWS + 2)]
    for k in ks:
        sim.claim(k)
    sim.select()
    view = view_of(sim)
    v = tally(view, sim.offer.created + 1)
    assert len(v.selected) == 2
    rows = worker_rows(view, v)
    assert len(rows) == MAX_WORKER_ROWS == 256
    assert [r["worker"] for r in rows if r["selected"]] == [peer_id_of(w) for w in sorted(v.selected)]
    assert [r["worker"] for r in rows] == sorted((r["worker"] for r in rows), key=public_of)


def test_worker_rows_show_a_dropped_worker_and_a_declines_log() -> None:
    # round 1 drops a worker of round 0 that never committed: "dropped", still selected; a decline
    # with a log shows its hash under "log" (mutants: the phase text, the "log" key)
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    for k in (A, B, C):
        sim.claim(k)
    first = sim.select()
    assert isinstance(first.body, Select)
    gone = first.body.workers[0]
    sim.select(drop=(gone,))
    log = BlobRef(h(b"the log"), 7)
    other = next(k for k in (A, B, C) if k.public not in first.body.workers)
    sim.facts.append(seal(other, Decline(sim.job, "outputs", "too big", log)))
    rows = {public_of(w): r for w, r in _rows(sim).items()}
    assert (rows[gone]["phase"], rows[gone]["selected"]) == ("dropped", True)
    assert (rows[other.public]["phase"], rows[other.public]["log"]) == ("declined", log.sha256.hex())
    assert all(rows[k.public]["log"] is None for k in (A, B, C) if k is not other)


def test_a_workers_first_decline_by_fact_id_names_its_code_whatever_the_arrival_order() -> None:
    # two declines of one worker, the higher fact id arriving first: the cause counts the code of
    # the lower id (mutant: sorted by nothing, i.e. by arrival)
    sim = JobSim(make_offer(key("publisher")))
    d1, d2 = sim.decline(A, "image"), sim.decline(A, "policy")
    first, later = sorted((d1, d2), key=lambda f: f.id)
    board = Board()
    for f in (sim.offer_fact, later, first):
        board.add_fact(f)
    view = board.job(sim.job)
    assert view is not None and [f.id for f in view.declines[A.public]] == [later.id, first.id]
    code = first.body.reason  # type: ignore[union-attr]
    assert tally(view, sim.offer.deadline).cause == f"{C_NO_CLAIM}; 1 declined: 1 {code}"
