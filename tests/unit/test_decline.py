"""Every non-final state says why (issue 16): declines published by the NodeMachine, the causes
an EXPIRED verdict carries, and the per-worker rows of the verdict object."""

from __future__ import annotations

from p2pci.core.board import Board
from p2pci.core.messages import BlobRef, Decline
from p2pci.core.node import NodeConfig, NodeMachine, Publish
from p2pci.core.signing import seal
from p2pci.core.tally import C_NO_CLAIM, C_PUBLISHER_GONE, X_NO_QUORUM, X_NO_SELECTION, tally, verdict_json
from p2pci.core.worker import BuildFailed, WorkerConfig, WorkerPolicy

from .jobgen import JobSim, h, key, make_offer
from .test_node_machine import T0, WINDOW, claim_and_settle, machine, tick, tick_until_quiet

A, B, C = key("a"), key("b"), key("c")
LATE = 3_000_000  # after make_offer's deadline


def verdict_at(sim: JobSim, now: int) -> dict[str, object]:
    board = Board()
    for f in sim.facts:
        board.add(f.raw, 0)
    view = board.job(sim.job)
    assert view is not None
    return verdict_json(view, tally(view, now))


# ---------------------------------------------------------------- EXPIRED causes


def test_expired_without_claims_says_no_eligible_worker() -> None:
    sim = JobSim(make_offer(key("publisher")))
    j = verdict_at(sim, LATE)
    assert j["reason"] == X_NO_SELECTION and j["cause"] == C_NO_CLAIM


def test_expired_without_claims_counts_the_declines_by_reason() -> None:
    sim = JobSim(make_offer(key("publisher")))
    sim.decline(A, "policy", "timeout 99999s exceeds 3600s")
    sim.decline(B, "policy", "memory")
    sim.decline(C, "image", "not allowed")
    j = verdict_at(sim, LATE)
    assert j["reason"] == X_NO_SELECTION  # exactly the document's text (interop)
    assert j["cause"] == C_NO_CLAIM + "; 3 declined: 2 policy, 1 image"


def test_expired_with_claims_and_no_round_says_publisher_gone() -> None:
    sim = JobSim(make_offer(key("publisher")))
    sim.claim(A)
    j = verdict_at(sim, LATE)
    assert j["reason"] == X_NO_SELECTION and j["cause"] == C_PUBLISHER_GONE


def test_expired_after_a_timeout_names_it_and_the_missing_reveal() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.claim(A)
    sim.claim(B)
    sim.select()
    b = sim.built(A)
    sim.commit(A, b)
    sim.reveal(A, b)
    sim.decline(B, "timeout", "timed out after 60s; log tail:\nstill compiling")
    j = verdict_at(sim, LATE)
    assert j["verdict"] == "EXPIRED"
    assert j["reason"] == X_NO_QUORUM and j["cause"] == "1 declined: 1 timeout; 1 timed out"
    rows = {w["worker"]: w for w in j["workers"]}  # type: ignore[attr-defined]
    assert rows[A.peer_id]["phase"] == "revealed" and rows[A.peer_id]["reason"] is None
    assert rows[B.peer_id]["phase"] == "timed_out" and rows[B.peer_id]["reason"] == "timeout"
    assert "still compiling" in rows[B.peer_id]["detail"]


def test_expired_with_a_silent_selected_worker() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.claim(A)
    sim.claim(B)
    sim.select()
    b = sim.built(A)
    sim.commit(A, b)
    sim.reveal(A, b)
    j = verdict_at(sim, LATE)
    assert j["reason"] == X_NO_QUORUM and j["cause"] == "1 selected worker(s) did not reveal"
    assert verdict_at(sim, 1_500_000)["cause"] is None  # PENDING: no cause


def test_worker_rows_phases() -> None:
    sim = JobSim(make_offer(key("publisher"), replicas=1, quorum=1))
    sim.claim(A)
    sim.claim(B)
    sim.select()
    j = verdict_at(sim, 1_500_000)
    phases = {w["phase"] for w in j["workers"]}  # type: ignore[attr-defined]
    assert phases == {"selected", "claimed"}  # one of two selected, the other stands by
    chosen = [w for w in j["workers"] if w["selected"]]  # type: ignore[attr-defined]
    assert len(chosen) == 1 and chosen[0]["phase"] == "selected"


# ---------------------------------------------------------------- the machine publishes declines


def my_job() -> JobSim:
    """An offer for this worker alone (1 replica, quorum 1), open for 600 s from T0."""
    return JobSim(
        make_offer(key("publisher"), created=T0, deadline=T0 + 600_000, replicas=1, quorum=1, workers=(ME_KEY.public,))
    )


def declines(effs: list[object]) -> list[Decline]:
    return [e.fact.body for e in effs if isinstance(e, Publish) and isinstance(e.fact.body, Decline)]


def test_policy_refusal_publishes_one_decline() -> None:
    sim = JobSim(make_offer(key("publisher"), created=T0, deadline=T0 + 600_000, timeout_s=7200))
    m = machine()  # max_timeout_s 3600
    m.receive_facts([sim.offer_fact], T0)
    effs = tick_until_quiet(m, T0)
    (d,) = declines(effs)
    assert d.reason == "policy" and "7200" in d.detail and d.job == sim.job
    assert m.jobs[sim.job].phase == "SKIPPED"
    assert declines(tick_until_quiet(m, T0 + WINDOW)) == []  # once per job


def test_image_refusal_is_declined_with_its_code() -> None:
    sim = JobSim(make_offer(key("publisher"), created=T0, deadline=T0 + 600_000))
    wc = WorkerConfig(
        ME_KEY.public, policy=WorkerPolicy(images=frozenset({"sha256:" + "0" * 64})), salt_secret=ME_KEY.seed
    )
    m = NodeMachine(NodeConfig(key=ME_KEY, worker=wc))
    m.receive_facts([sim.offer_fact], T0)
    (d,) = declines(tick_until_quiet(m, T0))
    assert d.reason == "image"


def test_an_image_archive_over_max_image_mb_is_declined_unless_the_image_is_listed() -> None:
    """[worker] max_image_mb: an offer whose image archive is larger is refused (code `image`, the
    sizes named), one just at the cap is not, and an image the donor lists runs without the
    archive, so its size does not matter."""
    from dataclasses import replace

    import pytest

    from p2pci.config import LocalError, parse_config
    from p2pci.core.messages import ImageRef
    from p2pci.core.worker import eligible, refusal

    base = make_offer(key("publisher"), created=T0, deadline=T0 + 600_000)
    big = replace(base, image=ImageRef(base.image.id, BlobRef(h(b"image"), (8 << 20) + 1)))
    assert refusal(big, WorkerPolicy()) is None  # the default cap is 4 GiB
    assert refusal(big, WorkerPolicy(max_image_mb=8)) == ("image", "image archive of 8 MiB exceeds 8 MiB")
    at_cap = replace(base, image=ImageRef(base.image.id, BlobRef(h(b"image"), 8 << 20)))
    assert eligible(at_cap, WorkerPolicy(max_image_mb=8)) is None
    assert eligible(base, WorkerPolicy(max_image_mb=1)) is None  # no archive
    listed = WorkerPolicy(max_image_mb=8, images=frozenset({base.image.id}))
    assert eligible(big, listed) is None
    # the NodeMachine publishes the refusal as a decline
    sim = JobSim(big)
    wc = WorkerConfig(ME_KEY.public, policy=WorkerPolicy(max_image_mb=8), salt_secret=ME_KEY.seed)
    m = NodeMachine(NodeConfig(key=ME_KEY, worker=wc))
    m.receive_facts([sim.offer_fact], T0)
    (d,) = declines(tick_until_quiet(m, T0))
    assert d.reason == "image" and "exceeds 8 MiB" in d.detail
    # p2pci.toml
    assert parse_config({"worker": {"max_image_mb": 8}}).worker.policy().max_image_mb == 8
    assert parse_config({}).worker.policy().max_image_mb == 4096
    with pytest.raises(LocalError, match="max_image_mb"):
        parse_config({"worker": {"max_image_mb": 0}})


ME_KEY = key("me")


def test_an_offer_for_others_or_already_over_is_not_declined() -> None:
    others = JobSim(
        make_offer(key("publisher"), created=T0, deadline=T0 + 600_000, timeout_s=7200, workers=(A.public,))
    )
    m = machine()
    m.receive_facts([others.offer_fact], T0)
    assert declines(tick_until_quiet(m, T0)) == []  # not in the allowlist: not addressed to us
    old = JobSim(make_offer(key("publisher"), created=T0 - 10, deadline=T0, timeout_s=7200))
    m.receive_facts([old.offer_fact], T0 + 1)
    assert declines(tick_until_quiet(m, T0 + 1)) == []  # expired: nobody waits for us


def test_timed_out_build_publishes_a_decline_with_the_log() -> None:
    m = machine(settle=False)
    sim = my_job()
    claim_and_settle(m, sim)
    assert sim.job in m.building
    ref = BlobRef(h(b"log"), 3)
    m.build_finished(
        sim.job, BuildFailed("timed out", code="timeout", detail="tail\x1b[31m", log=ref), T0 + WINDOW + 5
    )
    (d,) = declines(tick(m, T0 + WINDOW + 5))
    assert d.reason == "timeout" and d.log == ref
    assert d.detail == "tail?[31m"  # control characters never reach a signed text
    assert m.jobs[sim.job].phase == "GAVE_UP"


def test_cancelled_build_is_not_declined() -> None:
    m = machine(settle=False)
    sim = my_job()
    claim_and_settle(m, sim)
    m.build_finished(sim.job, BuildFailed("cancelled", code=""), T0 + WINDOW + 5)
    assert declines(tick(m, T0 + WINDOW + 5)) == []


def test_a_decline_round_trips() -> None:
    f = seal(A, Decline(h(b"j"), "timeout", "x" * 1024, BlobRef(h(b"l"), 1)))
    assert f.body == Decline(h(b"j"), "timeout", "x" * 1024, BlobRef(h(b"l"), 1))


def test_a_strangers_declines_change_no_verdict() -> None:
    """Declines of keys nobody selected (any number, each declining many times) change neither
    the verdict nor who counts: they are listed per key, once, as what that key said. A
    selected key's decline is another matter: it voids that key's vote."""
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(A, b"good", 0), (B, b"good", 0)])
    before = verdict_at(sim, LATE)
    strangers = [key(f"stranger{i}") for i in range(20)]
    for s in strangers:
        sim.decline(s, "policy", "x")
        sim.decline(s, "timeout", "y")
    after = verdict_at(sim, LATE)
    assert after["verdict"] == before["verdict"] == "REPRODUCED"
    assert {k: after[k] for k in ("groups", "dissenters", "missing", "declines", "reason", "cause")} == {
        k: before[k] for k in ("groups", "dissenters", "missing", "declines", "reason", "cause")
    }
    rows = after["workers"]
    assert len(rows) == 22  # type: ignore[arg-type]
    # a selected worker's decline, even after its reveal, voids its vote (docs/protocol.md §6
    # 2.3): its place is freed for the next in rank, so the vote cannot stay. Its row still
    # says what it did (revealed), with the decline's reason
    sim.decline(A, "timeout", "lie")
    j = verdict_at(sim, LATE)
    assert j["verdict"] == "EXPIRED" and j["dissenters"] == []
    assert j["groups"] == [{"digest": before["groups"][0]["digest"], "exit_code": 0, "workers": [B.peer_id]}]  # type: ignore[index]
    assert j["ignored"] == [{"worker": A.peer_id, "reason": "declined its place"}]
    assert j["declines"] == [{"worker": A.peer_id, "reason": "timeout", "detail": "lie"}]
    row = {w["worker"]: w for w in j["workers"]}[A.peer_id]  # type: ignore[index]
    assert (row["phase"], row["reason"]) == ("revealed", "timeout")


# ---------------------------------------------------------------- donor controls in the machine


def test_paused_worker_claims_nothing_and_resumes() -> None:
    m = machine(settle=False)
    sim = my_job()
    assert m.set_accepting("paused") != []
    m.receive_facts([sim.offer_fact], T0)
    effs = tick_until_quiet(m, T0) + tick_until_quiet(m, T0 + WINDOW)
    assert not [e for e in effs if isinstance(e, Publish)] and m.jobs[sim.job].phase == "WAITING"
    m.set_accepting("open")
    effs = tick_until_quiet(m, T0 + WINDOW + 1)
    assert [e.fact.kind for e in effs if isinstance(e, Publish)][:1] == ["claim"]


def test_pausing_declines_claims_not_yet_building_and_drains_after_the_build() -> None:
    m = machine()  # with a settle: the claim waits before building
    sim = my_job()
    claim_and_settle(m, sim)
    assert m.jobs[sim.job].phase == "CLAIMED" and not m.building
    m.set_accepting("draining")
    (d,) = declines(tick(m, T0 + WINDOW + 1))
    assert d.reason == "paused" and m.jobs[sim.job].phase == "GAVE_UP"
    assert not m.drained()  # our decline is back on the board: one more decision first
    tick_until_quiet(m, T0 + WINDOW + 1)
    assert m.drained()
    # a running build holds the drain until it ends
    m2 = machine(settle=False)
    sim2 = my_job()
    claim_and_settle(m2, sim2)
    assert sim2.job in m2.building
    m2.set_accepting("draining")
    assert declines(tick(m2, T0 + WINDOW + 1)) == [] and not m2.drained()
    m2.build_finished(sim2.job, BuildFailed("cancelled", code=""), T0 + WINDOW + 2)
    assert not m2.drained()  # the result is not decided on yet
    tick_until_quiet(m2, T0 + WINDOW + 2)
    assert m2.drained()


def test_accepting_rejects_unknown_modes() -> None:
    import pytest

    from p2pci.core.errors import LocalError

    with pytest.raises(LocalError, match="accepting must be one of"):
        machine().set_accepting("sleepy")


# ---------------------------------------------------------------- publisher wake-ups


def test_a_publisher_with_no_live_eligible_claim_after_the_window_does_not_ask_for_a_tick_now() -> None:
    """The MockClock cluster hung on this: round 0 due (the window is over) but no eligible claim
    yet (none, a lease that lapsed, a claimant that declined) made `next_wakeup` return `now`
    forever, a hot loop in the daemon's clock loop that starved the tasks bringing claims."""
    from dataclasses import replace

    pub = key("pub")
    seed = h(b"a seed")
    offer = replace(make_offer(pub, replicas=2, quorum=2, created=T0, deadline=T0 + 600_000), select_commit=h(seed))
    for case in ("none", "lapsed", "declined"):
        m = machine(pub, builds=False)
        fact, _ = m.publish_offer(offer, seed, T0)
        m.receive_facts([fact], T0)
        sim = JobSim(offer, publisher=pub, seed=seed)
        now = offer.created + 2 * offer.claim_window + 1  # past the window and its grace
        if case == "lapsed":
            m.receive_facts([sim.claim(A, lease_until=now - 1)], T0 + 10)
        elif case == "declined":
            m.receive_facts([sim.decline(A, "policy", "timeout")], T0 + 10)
        for _ in range(5):
            tick(m, now)
        w = m.next_wakeup()
        assert w is None or w > now, (case, w, now)
        assert w == offer.deadline, case  # only the verdict's deadline is left to wait for
