"""The NodeMachine: the node's rules, one pure test each (no trio, no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from p2pci.core.errors import LocalError
from p2pci.core.messages import BlobRef, Limits
from p2pci.core.node import (
    RECENT_WINDOW_MS,
    Effect,
    JobChanged,
    NodeChanged,
    NodeConfig,
    NodeMachine,
    Persist,
    Prefetch,
    Publish,
    RunBuild,
    ServeOutputs,
    StopBuild,
)
from p2pci.core.offer import (
    DEFAULT_LIMITS,
    OPEN_NEEDS_TWO,
    PublishRequest,
    check_request,
    new_offer,
    offer_deadline,
)
from p2pci.core.selection import next_select, selection_rank
from p2pci.core.signing import NodeKey, peer_id_of, seal
from p2pci.core.tally import reveal_deadline, worker_rows
from p2pci.core.worker import BuildDone, WorkerConfig, WorkerJob, WorkerPolicy, settle_ms_for

from .jobgen import SEED, JobSim, h, key, make_offer, manifest_for
from .machinemesh import MachineMesh

T0 = 1_000_000
WINDOW = 1_000
LEASE = 10_000
ME = key("me")


def machine(k: NodeKey = ME, *, slots: int = 1, builds: bool = True, settle: bool = True) -> NodeMachine:
    wc = WorkerConfig(
        k.public,
        lease_ms=LEASE,
        claim_window_ms=WINDOW,
        policy=WorkerPolicy(slots=slots),
        salt_secret=k.seed,
        settle_ms=settle_ms_for(WINDOW) if settle else 0,
    )
    return NodeMachine(NodeConfig(key=k, worker=wc, builds=builds))


def job(**kw: object) -> JobSim:
    return JobSim(make_offer(key("publisher"), created=T0, deadline=T0 + 600_000, **kw))  # type: ignore[arg-type]


def of(effects: list[Effect], t: type) -> list[Effect]:
    return [e for e in effects if isinstance(e, t)]


def published_kinds(effects: list[Effect]) -> list[str]:
    return [e.fact.kind for e in effects if isinstance(e, Publish)]


def publisher_selects(m: NodeMachine, now: int) -> None:
    """The test publisher (JobSim's key("publisher"), seed SEED) signs its selection round as
    soon as `replicas` claims are on the machine's board (protocol v2: it closes its window
    early; the machine under test is a worker)."""
    pub = key("publisher")
    for view in m.board.jobs():
        offer = view.offer_msg
        if view.offer is None or offer is None or view.offer.signer != pub.public:
            continue
        if len(view.claims) < offer.replicas:
            continue
        body = next_select(view, SEED, now, close=True)
        if body is not None:
            m.receive_facts([seal(pub, body)], now)


def tick(m: NodeMachine, now: int) -> list[Effect]:
    """One tick, performed like the daemon: our own new facts are stored, then received back."""
    effs = m.tick(now)
    m.receive_facts([e.fact for e in effs if isinstance(e, Publish)], now)
    publisher_selects(m, now)
    return effs


def tick_until_quiet(m: NodeMachine, now: int) -> list[Effect]:
    out: list[Effect] = []
    for _ in range(20):
        w = m.next_wakeup()
        if w is None or w > now:
            break
        out += tick(m, now)
    return out


def claim_and_settle(m: NodeMachine, sim: JobSim) -> list[Effect]:
    m.receive_facts([sim.offer_fact], T0)
    tick_until_quiet(m, T0)
    return tick_until_quiet(m, T0 + WINDOW)


# ---------------------------------------------------------------- the worker rules, per job


def test_first_claim_then_settle_then_build() -> None:
    m, sim = machine(), job(replicas=1, quorum=1, workers=(ME.public,))
    effs = claim_and_settle(m, sim)
    assert published_kinds(effs) == ["claim"] and not of(effs, RunBuild)
    settle_until = m.jobs[sim.job].settle_until
    assert settle_until == T0 + WINDOW + WINDOW // 2
    assert m.next_wakeup() == settle_until  # the settle end is a wake-up
    assert not of(tick_until_quiet(m, settle_until - 1), RunBuild)
    tick(m, settle_until - 1)
    effs = tick(m, settle_until)
    assert [type(e) for e in of(effs, RunBuild)] == [RunBuild] and m.building == {sim.job: settle_until}


def test_settle_zero_builds_on_the_next_tick() -> None:
    m, sim = machine(settle=False), job(replicas=1, quorum=1, workers=(ME.public,))
    effs = claim_and_settle(m, sim)
    assert of(effs, RunBuild)


def test_claim_publishes_and_prefetches_with_the_limits() -> None:
    m, sim = machine(), job(replicas=1, quorum=1, workers=(ME.public,))
    effs = claim_and_settle(m, sim)
    assert of(effs, Prefetch) == [Prefetch(sim.offer.source, sim.publisher.public, sim.offer.limits)]
    # a big source is still announced (the driver warms the runner; it fetches only <= PREFETCH_MAX)
    big = JobSim(replace(sim.offer, source=BlobRef(h(b"big"), 64 << 20)))  # > PREFETCH_MAX, < max_source_mb
    m2 = machine()
    m2.receive_facts([big.offer_fact], T0)
    tick_until_quiet(m2, T0)
    effs2 = tick_until_quiet(m2, T0 + WINDOW)
    assert published_kinds(effs2) == ["claim"]
    assert of(effs2, Prefetch) == [Prefetch(big.offer.source, big.publisher.public, big.offer.limits)]


def test_persist_comes_before_commit_and_outputs_before_reveal() -> None:
    m, sim = machine(), job(replicas=1, quorum=1, workers=(ME.public,))
    claim_and_settle(m, sim)
    now = T0 + 2 * WINDOW
    tick_until_quiet(m, now)
    assert sim.job in m.building
    m.build_finished(sim.job, BuildDone.of(0, manifest_for(b"good"), BlobRef(h(b"log"), 3)), now)
    effs = tick_until_quiet(m, now)
    kinds = [(type(e).__name__, e.fact.kind if isinstance(e, Publish) else "") for e in effs]
    i_commit = kinds.index(("Publish", "commit"))
    assert kinds[i_commit - 1][0] == "Persist"
    persist = effs[i_commit - 1]
    assert isinstance(persist, Persist) and persist.key == "worker/" + sim.job.hex()
    assert WorkerJob.from_obj(persist.value).commit is not None  # the salt and result are in it
    i_reveal = kinds.index(("Publish", "reveal"))
    assert isinstance(effs[i_reveal - 1], ServeOutputs) and isinstance(effs[i_reveal - 2], Persist)
    assert sim.job not in m.building
    assert m.verdict(sim.job, now).state == "REPRODUCED"  # allowlist of one: our own vote counts


def test_no_claim_once_others_revealed_with_a_witness() -> None:
    a, b, c = key("a"), key("b"), key("c")
    sim = job(replicas=3, quorum=3)  # two votes: still pending
    ba, bb = sim.built(a), sim.built(b)
    for k in (a, b):
        sim.claim(k, lease_until=T0 + 1)
    sim.select()  # a and b are selected: their reveals are votes (unselected ones would not stop c)
    for k, bt in ((a, ba), (b, bb)):
        sim.commit(k, bt)
    sim.reveal(a, ba)  # b's commit is in a's seen list: witnessed, and vice versa below
    sim.reveal(b, bb)
    m = machine(c)
    m.receive_facts(sim.facts, T0)
    tick_until_quiet(m, T0)
    effs = tick_until_quiet(m, T0 + WINDOW)
    assert published_kinds(effs) == [] and m.jobs[sim.job].phase in ("WAITING", "GAVE_UP")


def test_a_lone_selected_vote_at_quorum_one_decides_and_a_late_worker_does_not_claim() -> None:
    # v2: a vote that is the only one for its digest needs no witness (nothing to copy), and a
    # selected one counts; v1 ignored it as unwitnessed and let a late worker claim.
    a, c = key("a"), key("c")
    sim = job(replicas=2, quorum=1)
    ba = sim.built(a)
    sim.claim(a, lease_until=T0 + 1)
    sim.select()
    sim.commit(a, ba)
    sim.reveal(a, ba)
    m = machine(c)
    m.receive_facts(sim.facts, T0)
    tick_until_quiet(m, T0)
    effs = tick_until_quiet(m, T0 + WINDOW)
    assert published_kinds(effs) == [] and m.job_obj(sim.job, T0 + WINDOW)["verdict"] == "REPRODUCED"


def test_no_claim_once_others_hold_replicas_commits() -> None:
    a, b, c = key("a"), key("b"), key("c")
    sim = job(replicas=2, quorum=1)
    for k in (a, b):
        sim.claim(k, lease_until=T0 + 1)  # leases over: only the commits can stop c
        sim.commit(k, sim.built(k))
    m = machine(c)
    m.receive_facts(sim.facts, T0)
    tick_until_quiet(m, T0)
    assert published_kinds(tick_until_quiet(m, T0 + WINDOW)) == []
    m2 = machine(c)
    m2.receive_facts(sim.facts[:-1], T0)  # only one commit: c may claim
    tick_until_quiet(m2, T0)
    assert published_kinds(tick_until_quiet(m2, T0 + WINDOW)) == ["claim"]


def test_stand_by_stops_renewing_after_a_witnessed_reveal() -> None:
    sim = job(replicas=3, quorum=3)
    a, b, d, c = sorted((key("a"), key("b"), key("c"), key("d")), key=lambda k: selection_rank(SEED, sim.job, k.public))  # c last
    m = machine(c)
    m.receive_facts([sim.offer_fact], T0)
    tick_until_quiet(m, T0)
    tick_until_quiet(m, T0 + WINDOW)  # alone: c claims
    assert m.jobs[sim.job].phase == "CLAIMED"
    ba, bb = sim.built(a), sim.built(b)  # two of three votes: the job stays pending
    for k, bt in ((a, ba), (b, bb), (d, sim.built(d))):
        sim.claim(k, lease_until=T0 + 100_000)
        sim.commit(k, bt)
    m.receive_facts(sim.facts[1:], T0 + WINDOW)
    renew_at = m.jobs[sim.job].renew_at
    assert renew_at is not None
    assert published_kinds(tick_until_quiet(m, renew_at)) == ["claim"]  # a stand-by renews...
    assert m.jobs[sim.job].phase == "CLAIMED"  # ...and does not build: a, b, d are selected
    sim.reveal(a, ba)
    sim.reveal(b, bb)
    m.receive_facts(sim.facts[-2:], renew_at)
    later = renew_at + LEASE // 2
    effs = tick_until_quiet(m, renew_at) + tick_until_quiet(m, later)
    assert m.verdict(sim.job, later).state == "PENDING"
    assert "claim" not in published_kinds(effs), m.jobs[sim.job]  # ...until a witnessed reveal


def test_stand_by_claims_hold_no_slot_but_selected_claims_do() -> None:
    m = machine(slots=1)
    s1 = job(replicas=1, quorum=1, workers=(ME.public,), project="one")
    s2 = job(replicas=1, quorum=1, workers=(ME.public,), project="two")
    m.receive_facts([s1.offer_fact, s2.offer_fact], T0)
    tick_until_quiet(m, T0)
    effs = tick_until_quiet(m, T0 + WINDOW)
    # one slot: the first job is claimed (selected, will build), the second waits for the slot
    assert published_kinds(effs) == ["claim"]
    phases = sorted(w.phase for w in m.jobs.values())
    assert phases == ["CLAIMED", "WAITING"]


@pytest.mark.parametrize("better", [1, 2])
def test_a_stand_by_claim_holds_no_slot(better: int) -> None:
    sim_a = job(replicas=2, quorum=1, project="a")
    ranked = sorted((key(f"k{i}") for i in range(6)), key=lambda k: selection_rank(SEED, sim_a.job, k.public))
    me, ahead = ranked[-1], ranked[:better]
    m = machine(me, slots=1)
    m.receive_facts([sim_a.offer_fact], T0)
    tick_until_quiet(m, T0)
    tick_until_quiet(m, T0 + WINDOW)  # alone: me claims job a (selected)
    assert m.jobs[sim_a.job].phase == "CLAIMED"
    m.receive_facts([sim_a.claim(k, lease_until=T0 + 100_000) for k in ahead], T0 + WINDOW)
    sim_b = job(replicas=1, quorum=1, workers=(me.public,), project="b")
    m.receive_facts([sim_b.offer_fact], T0 + WINDOW)
    tick_until_quiet(m, T0 + WINDOW)
    effs = tick_until_quiet(m, T0 + 2 * WINDOW)
    if better == 2:  # two better claimants on a (M = 2): me is a stand-by there, its slot is free for b
        assert m.jobs[sim_a.job].phase == "CLAIMED" and published_kinds(effs) == ["claim"]
        assert m.jobs[sim_b.job].phase in ("CLAIMED", "BUILDING")
    else:  # me is still selected on a: it will build a, so b waits
        assert m.jobs[sim_b.job].phase == "WAITING" and "claim" not in published_kinds(effs)


def test_a_finished_build_frees_the_slot_for_the_waiting_job() -> None:
    m = machine(slots=1, settle=False)
    s1 = job(replicas=1, quorum=1, workers=(ME.public,), project="one")
    s2 = job(replicas=1, quorum=1, workers=(ME.public,), project="two")
    m.receive_facts([s1.offer_fact, s2.offer_fact], T0)
    tick_until_quiet(m, T0)
    now = T0 + WINDOW
    tick_until_quiet(m, now)
    assert len(m.building) == 1
    first = next(iter(m.building))
    m.build_finished(first, BuildDone.of(0, manifest_for(b"good"), BlobRef(h(b"log"), 3)), now)
    effs = tick_until_quiet(m, now)
    assert [e.job for e in of(effs, RunBuild)] == [s for s in (s1.job, s2.job) if s != first]  # type: ignore[attr-defined]


def test_cancel_stops_the_running_build() -> None:
    m = machine(settle=False)
    sim = job(replicas=1, quorum=1, workers=(ME.public,))
    claim_and_settle(m, sim)
    assert sim.job in m.building
    m.receive_facts([sim.cancel()], T0 + WINDOW)
    effs = m.tick(T0 + WINDOW)
    assert of(effs, StopBuild) == [StopBuild(sim.job)] and m.jobs[sim.job].phase == "GAVE_UP"


def test_restart_resumes_building_as_claimed() -> None:
    m = machine()
    sim = job(replicas=1, quorum=1, workers=(ME.public,))
    m.board.add_fact(sim.offer_fact)
    wj = replace(WorkerJob.new(sim.job, T0), phase="BUILDING")
    m.load([wj, replace(WorkerJob.new(b"x" * 32, T0), phase="COMMITTED")], [])
    assert m.jobs[sim.job].phase == "CLAIMED" and m.jobs[b"x" * 32].phase == "COMMITTED"
    assert m.next_wakeup() == -1  # every loaded job is looked at once


def test_observer_never_claims() -> None:
    m = machine(builds=False)
    sim = job(replicas=2, quorum=1)
    m.receive_facts([sim.offer_fact], T0)
    effs = tick_until_quiet(m, T0) + tick_until_quiet(m, T0 + WINDOW)
    assert published_kinds(effs) == [] and m.jobs == {} and of(effs, JobChanged)
    assert m.next_wakeup() == sim.offer.deadline  # a pending job wakes at its deadline


def test_phase_change_is_announced_and_job_change_only_once() -> None:
    m = machine()
    sim = job(replicas=1, quorum=1, workers=(ME.public,))
    m.receive_facts([sim.offer_fact], T0)
    effs = m.tick(T0)
    assert len(of(effs, JobChanged)) == 1 and of(effs, NodeChanged)
    m.receive_facts([sim.offer_fact], T0)  # a duplicate: nothing to do
    assert m.next_wakeup() != -1


def test_a_job_that_raises_is_counted_and_the_others_go_on() -> None:
    m = machine()
    m = NodeMachine(replace(m.cfg, worker=replace(m.cfg.worker, salt_secret=b"")))  # no salt secret: BuildDone raises
    good, bad = job(project="good"), job(project="bad")
    m.receive_facts([good.offer_fact, bad.offer_fact], T0)
    m.jobs[bad.job] = replace(WorkerJob.new(bad.job, T0), phase="BUILDING")
    m.build_finished(bad.job, BuildDone.of(0, manifest_for(b"good"), BlobRef(h(b"log"), 3)), T0)
    effs = m.tick(T0)
    assert m.errors == 1
    assert [e.obj["project"] for e in of(effs, JobChanged)] == ["good"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- trust, anti-entropy, pruning


def test_set_trust_retallies_and_persists() -> None:
    a, b = key("a"), key("b")
    sim = job(replicas=2, quorum=2)
    sim.honest_round([(a, b"good", 0), (b, b"good", 0)])
    m = machine(builds=False)
    m.receive_facts(sim.facts, T0)
    m.tick(T0)
    assert m.job_obj(sim.job, T0)["verdict"] == "REPRODUCED"
    effs = m.set_trust([a.public])
    assert effs == [Persist("trust_mode", "listed"), Persist("trust", [peer_id_of(a.public)])]
    effs = m.tick(T0)
    assert [e.obj["verdict"] for e in of(effs, JobChanged)] == ["PENDING"]  # type: ignore[attr-defined]
    assert m.observer_policy().trust == frozenset({a.public})
    # fail closed: removing the last key leaves an empty listed set, which counts nobody
    assert m.set_trust([]) == [Persist("trust", [])]
    assert m.observer_policy().trust == frozenset() and m.fresh_job_obj(sim.job, T0)["verdict"] == "PENDING"
    m.set_trust([], listed=False)
    assert m.observer_policy().trust is None and m.fresh_job_obj(sim.job, T0)["verdict"] == "REPRODUCED"


def test_live_ids_and_prune_keep() -> None:
    a, b = key("a"), key("b")
    done, pending = job(replicas=2, quorum=2, project="done"), job(project="pending")
    done.honest_round([(a, b"good", 0), (b, b"good", 0)])
    m = machine(builds=False)
    m.receive_facts(done.facts + pending.facts, T0)
    m.tick(T0)
    assert m.prune_keep() == [pending.job]
    assert set(m.live_ids(T0)) == {f.id for f in done.facts + pending.facts}
    late = done.offer.deadline + RECENT_WINDOW_MS + 1
    assert set(m.live_ids(late)) == {f.id for f in pending.facts}


def test_prune_keep_right_after_a_restart_knows_the_decided_jobs() -> None:
    # the daemon's retention prune runs as it starts, before the first tick: the loaded jobs
    # have no verdict yet, and without `now` every one of them would be kept (found by
    # tests/e2e/test_real_daemons_store.py: the decided job was never pruned)
    a, b = key("a"), key("b")
    done, pending = job(replicas=2, quorum=2, project="done"), job(project="pending")
    done.honest_round([(a, b"good", 0), (b, b"good", 0)])
    m = machine(builds=False)
    for f in done.facts + pending.facts:
        m.board.add_fact(f)
    m.load([], [])
    assert m.prune_keep(T0) == [pending.job]
    assert set(m.prune_keep()) == {done.job, pending.job}  # without `now`: only ticked verdicts


def test_resolve_job() -> None:
    m = machine(builds=False)
    sim = job()
    m.receive_facts([sim.offer_fact], T0)
    assert m.resolve_job(sim.job.hex()[:6]).job == sim.job
    for bad in ("", "xyz", "0" * 70, None):
        with pytest.raises(LocalError):
            m.resolve_job(bad)


# ---------------------------------------------------------------- core.offer


def test_check_request_rules() -> None:
    check_request(3, 2, open_mode=True)
    check_request(1, 1, open_mode=False)
    check_request(1, 1, open_mode=True, require=True)
    with pytest.raises(LocalError, match="larger than replicas"):
        check_request(2, 3, open_mode=False)
    with pytest.raises(LocalError, match="open mode needs at least 2"):
        check_request(1, 1, open_mode=True)
    with pytest.raises(LocalError):
        check_request(0, 1, open_mode=False)
    with pytest.raises(LocalError):
        check_request(2, 0, open_mode=False)
    assert "2 replicas" in OPEN_NEEDS_TWO


def _args(**kw: object) -> dict[str, object]:
    return {"project": "p", "source": {"sha256": "ab" * 32, "size": 3}, "image": "busybox", "command": ["true"], **kw}


def test_publish_request_from_args_and_new_offer() -> None:
    req = PublishRequest.from_args(_args(env={"B": "2", "A": "1"}, workers=[peer_id_of(ME.public)], replicas=1, quorum=1))
    assert req.limits == DEFAULT_LIMITS and req.env == (("A", "1"), ("B", "2")) and req.workers == (ME.public,)
    wc = WorkerConfig(ME.public, lease_ms=LEASE, claim_window_ms=WINDOW, slack_ms=3000)
    offer = new_offer(req, image=make_offer(ME).image, now=T0, timing=wc, select_commit=h(SEED))
    assert offer.created == T0 and offer.select_commit == h(SEED) and offer.claim_window == 2 * WINDOW
    assert offer.deadline == offer_deadline(T0, DEFAULT_LIMITS, wc) == T0 + 2 * (2 * WINDOW + 600_000 + 3000) + LEASE
    with pytest.raises(LocalError, match="open mode"):
        new_offer(
            PublishRequest.from_args(_args(replicas=1, quorum=1)), image=offer.image, now=T0, timing=wc, select_commit=h(SEED)
        )
    lim = Limits(5, 64, 1, 64, 1)
    assert PublishRequest.from_args(_args(limits=lim.to_obj())).limits == lim


@pytest.mark.parametrize(
    "bad",
    [
        "not a map",
        _args(project=5),
        _args(source={"sha256": "zz", "size": 1}),
        _args(command="true"),
        _args(limits={"timeout_s": 0, "memory_mb": 1, "cpus": 1, "pids": 1, "out_mb": 1}),
        _args(workers="some"),
        _args(replicas="3"),
        _args(extra=1),
        _args(env=["A=1"]),
    ],
)
def test_publish_request_refuses_malformed_args(bad: object) -> None:
    with pytest.raises(LocalError):
        PublishRequest.from_args(bad)


def test_node_config_key_must_match() -> None:
    with pytest.raises(LocalError):
        NodeConfig(key=ME, worker=WorkerConfig(key("other").public))


# ---------------------------------------------------------------- five machines, any order


@settings(max_examples=100, deadline=None)
@given(
    inbound_ms=st.lists(st.integers(0, WINDOW // 2), min_size=5, max_size=5),
    build_ms=st.lists(st.integers(50, 5_000), min_size=5, max_size=5),
    ticks=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 60_000)), max_size=20),
    replicas=st.integers(2, 4),
    liar=st.none() | st.integers(1, 4),
    vanish=st.none() | st.integers(1, 4),
)
def test_five_machines_converge_and_stay_live(
    inbound_ms: list[int], build_ms: list[int], ticks: list[tuple[int, int]], replicas: int, liar: int | None, vanish: int | None
) -> None:
    """Random per-node delays (so each node sees its own interleaving of everyone's facts), build
    times, extra ticks, one liar, one builder that vanishes: every live node reaches the same final
    verdict, long before the deadline.

    The limits are those of protocol v1 (docs/protocol.md): claims must reach everyone within
    the settle time (inbound delay <= half a claim window) and facts reach a node in the order
    they were sent, else a commit can arrive after the first reveal and is ignored as a possible
    copy; and a liar plus a vanished worker among three selected leave one honest counted vote.
    """
    assume(liar is None or vanish is None or liar == vanish or replicas >= 4)
    mesh = MachineMesh(
        5,
        T0,
        builders=frozenset({1, 2, 3, 4}),
        liars=frozenset() if liar is None else frozenset({liar}),
        delay=lambda s, d, n: inbound_ms[d],
        build_ms=lambda node, n: build_ms[node],
    )
    if vanish is not None:
        mesh.vanish_when_building.add(vanish)
    offer = make_offer(key("publisher"), replicas=replicas, quorum=2, created=T0, deadline=T0 + 600_000)
    jid = mesh.publish(0, offer)
    for node, dt in ticks:
        mesh.extra_tick(node, T0 + dt)
    mesh.run_until(lambda: mesh.converged(jid), offer.deadline)
    verdicts = mesh.verdicts(jid)
    assert mesh.converged(jid), (verdicts, [m.jobs.get(jid) for m in mesh.machines])
    states = {(v.state, v.digest) for v in verdicts if v is not None}
    assert len(states) == 1, states  # every live node: the same verdict
    assert mesh.now < offer.deadline  # live: decided before the job expired
    # 4 builders, at most one liar and one vanishing: two honest votes can always agree
    assert verdicts[0] is not None and verdicts[0].state in ("REPRODUCED", "DISPUTED")
    event(f"{verdicts[0].state}, {mesh.builds} builds")


def test_own_facts_enter_the_board_only_when_given_back() -> None:
    m = machine(settle=False)
    sim = job(replicas=1, quorum=1, workers=(ME.public,))
    claim_and_settle(m, sim)
    now = T0 + WINDOW
    m.build_finished(sim.job, BuildDone.of(0, manifest_for(b"good"), BlobRef(h(b"log"), 3)), now)
    effs = m.tick(now)  # not given back: the commit is not on the board yet
    commits = [e.fact for e in effs if isinstance(e, Publish) and e.fact.kind == "commit"]
    assert len(commits) == 1 and not m.board.has(commits[0].id) and m.jobs[sim.job].phase == "BUILT"
    for _ in range(3):  # BUILT re-emits its commit on every tick, but one Publish is under way
        m._dirty.add(sim.job)
        assert not [e for e in m.tick(now) if isinstance(e, Publish)]
    assert m.receive_facts(commits, now) == 1
    effs = tick_until_quiet(m, now)
    assert m.jobs[sim.job].phase == "REVEALED" and "reveal" in published_kinds(effs)


def test_a_verdict_that_loses_votes_is_reported_and_selection_goes_on() -> None:
    a, b = key("a"), key("b")
    sim = job(replicas=2, quorum=2)
    sim.honest_round([(a, b"good", 0), (b, b"good", 0)])
    m = machine(builds=False)
    m.receive_facts(sim.facts, T0)
    tick(m, T0)
    assert m.job_obj(sim.job, T0)["verdict"] == "REPRODUCED" and m.regressions == 0
    m.receive_facts([sim.commit(b, sim.built(b, b"other"))], T0)  # b equivocates after the fact
    effs = tick(m, T0)
    assert [e.obj["verdict"] for e in of(effs, JobChanged)] == ["PENDING"]  # type: ignore[attr-defined]
    assert m.regressions == 1


def own_job(*, replicas: int, quorum: int) -> tuple[NodeKey, NodeMachine, JobSim]:
    """A publisher's machine (it builds nothing) that has published and taken back one offer."""
    pub = key("pub")
    m = machine(pub, builds=False)
    seed = h(b"a seed")
    offer = replace(make_offer(pub, replicas=replicas, quorum=quorum, created=T0, deadline=T0 + 600_000), select_commit=h(seed))
    fact, _ = m.publish_offer(offer, seed, T0)
    m.receive_facts([fact], T0)
    return pub, m, JobSim(offer, publisher=pub, seed=seed)


def test_the_publisher_machine_persists_its_seed_before_the_offer_and_selects() -> None:
    pub = key("pub")
    m = machine(pub, builds=False)
    seed = h(b"a seed")
    offer = replace(make_offer(pub, replicas=2, quorum=2, created=T0, deadline=T0 + 600_000), select_commit=h(seed))
    with pytest.raises(LocalError, match="select_commit"):
        m.publish_offer(offer, h(b"another seed"), T0)
    fact, effs = m.publish_offer(offer, seed, T0)
    assert effs == [Persist("seed/" + fact.id.hex(), seed.hex()), Publish(fact)]
    m.receive_facts([fact], T0)
    sim = JobSim(offer, publisher=pub, seed=seed)
    assert sim.job == fact.id
    for k in (key("a"), key("b"), key("c")):
        m.receive_facts([sim.claim(k)], T0 + 10)
    assert published_kinds(m.tick(T0 + 10)) == []  # the claim window is not over
    effs = m.tick(offer.created + offer.claim_window)
    assert published_kinds(effs) == ["select"]
    assert published_kinds(m.tick(offer.created + offer.claim_window + 1)) == []  # not back yet: no second round
    m.receive_facts([e.fact for e in effs if isinstance(e, Publish)], offer.created + offer.claim_window + 1)
    v = m.verdict(sim.job, offer.created + offer.claim_window + 1)
    assert len(v.selection.rounds) == 1 and len(v.selection.current) == 2


@pytest.mark.parametrize("grace", [150, None])
def test_the_publisher_closes_the_window_a_grace_after_replicas_claims(grace: int | None) -> None:
    pub = key("pub")
    m = machine(pub, builds=False)
    m = NodeMachine(replace(m.cfg, select_grace_ms=grace))
    seed = h(b"a seed")
    offer = replace(make_offer(pub, replicas=2, quorum=2, created=T0, deadline=T0 + 600_000), select_commit=h(seed))
    assert offer.claim_window >= 1000
    fact, _ = m.publish_offer(offer, seed, T0)
    m.receive_facts([fact], T0)
    sim = JobSim(offer, publisher=pub, seed=seed)
    m.receive_facts([sim.claim(key("a"))], T0 + 10)
    assert published_kinds(m.tick(T0 + 10)) == [] and m.next_wakeup() == offer.created + 2 * offer.claim_window
    m.receive_facts([sim.claim(key("b"))], T0 + 20)  # replicas claims are in: the grace starts
    assert published_kinds(m.tick(T0 + 20)) == []
    close = T0 + 20 + grace if grace is not None else offer.created + offer.claim_window
    assert m.next_wakeup() == close
    m.receive_facts([sim.claim(key("c"))], T0 + 30)  # a late claim in the grace: no new grace, it competes
    assert published_kinds(m.tick(T0 + 30)) == [] and m.next_wakeup() == close
    assert published_kinds(m.tick(close - 1)) == []
    effs = m.tick(close)
    selects = [e.fact for e in effs if isinstance(e, Publish)]
    assert published_kinds(effs) == ["select"] and len(selects[0].body.claims) == 3  # type: ignore[attr-defined]
    assert m._enough_at == ({sim.job: T0 + 20} if grace is not None else {})
    m.receive_facts(selects, close)
    m.tick(close + 1)
    assert not m._enough_at  # round 0 is out: nothing kept per job for the grace


def test_a_daemon_worker_claims_at_once_and_builds_on_the_tick_of_the_select() -> None:
    """The daemon's settings (claim_delay_ms 0, settle_ms 0): the claim goes out on first sight,
    with the Prefetch (source, limits), and the build starts on the tick that holds the select."""
    base = machine()
    m = NodeMachine(replace(base.cfg, worker=replace(base.cfg.worker, claim_delay_ms=0, settle_ms=0)))
    sim = job(replicas=2, quorum=2)
    m.receive_facts([sim.offer_fact], T0)
    effs = m.tick(T0)
    assert published_kinds(effs) == ["claim"] and of(effs, Prefetch) and not of(effs, RunBuild)
    m.receive_facts([e.fact for e in effs if isinstance(e, Publish)], T0)
    assert not of(m.tick(T0 + 1), RunBuild)  # not selected yet: no build
    sim.claim(key("other"))
    pub = key("publisher")
    m.receive_facts([sim.facts[-1]], T0 + 5)
    view = m.board.job(sim.job)
    assert view is not None
    body = next_select(view, SEED, T0 + 5, close=True)
    assert body is not None and ME.public in body.workers
    m.receive_facts([seal(pub, body)], T0 + 5)
    assert [type(e) for e in of(m.tick(T0 + 5), RunBuild)] == [RunBuild] and m.building == {sim.job: T0 + 5}


def test_a_publisher_with_no_claim_after_the_grace_does_not_ask_for_a_tick_at_once() -> None:
    """Every worker busy elsewhere: round 0 is due but nobody claimed. The machine must wait for a
    claim, not ask to be ticked again at `now` (a daemon's clock loop spun on that without yielding,
    starving every other task, so no claim could ever arrive and every job of the process EXPIRED)."""
    _pub, m, sim = own_job(replicas=2, quorum=2)
    offer = sim.offer
    m.tick(T0)
    grace = offer.created + 2 * offer.claim_window
    assert m.next_wakeup() == grace  # fewer than `replicas` claims: the window plus one of grace
    for now in (grace, grace + 5):
        assert published_kinds(m.tick(now)) == []
        w = m.next_wakeup()
        assert w is None or w > now, (now, w)
    # a claim arriving late still gets round 0 at once
    m.receive_facts([sim.claim(key("late"))], grace + 10)
    assert published_kinds(m.tick(grace + 10)) == ["select"]


def test_busy_workers_and_many_jobs_stay_live() -> None:
    """Ten nodes (2 publishers, 8 one-slot workers with slow builds), twenty jobs published 100 ms
    apart: most publishers pass their grace with no claim (every worker busy), and must then
    select as soon as a worker is free, not spin. Every job ends decided before its deadline."""
    mesh = MachineMesh(
        10,
        T0,
        builders=frozenset(range(2, 10)),
        slots=1,
        lease_ms=2_000,
        claim_window_ms=100,
        build_ms=lambda node, n: 1_500,
    )
    jobs = []
    for i in range(20):
        mesh.run_until(lambda: False, T0 + i * 100)
        mesh.now = T0 + i * 100
        offer = replace(
            make_offer(mesh.keys[i % 2], replicas=3, quorum=2, created=mesh.now, deadline=mesh.now + 60_000, project=f"p{i}"),
            claim_window=200,
        )
        jobs.append((mesh.publish(i % 2, offer), offer.deadline))
    mesh.run_until(lambda: all(mesh.all_final(j) for j, _ in jobs), T0 + 120_000)
    states = [mesh.verdicts(j)[0] for j, _ in jobs]
    assert all(v is not None and v.state == "REPRODUCED" for v in states), [v and v.state for v in states]
    assert mesh.now < min(d for _, d in jobs)  # all decided before the first deadline


def test_tail_targets_are_the_other_selected_workers_of_our_undecided_jobs() -> None:
    """Whose live log the publisher asks for (docs/protocol.md §8.6): selected or committed
    workers of its own jobs, not itself, not a decliner or a revealer, not a stranger's job, and
    nothing once the job is decided."""
    pub, m, sim = own_job(replicas=5, quorum=2)
    a, b, c, d = key("a"), key("b"), key("c"), key("d")
    m.receive_facts([sim.claim(k) for k in (a, b, c, d, pub)], T0 + 10)  # the publisher builds too
    assert m.tail_targets(T0 + 10) == set()  # claimed, not selected yet
    m.receive_facts([sim.select()], T0 + 20)
    now = T0 + 30
    assert pub.public in m.verdict(sim.job, now).selection.current  # selected, yet not tailed: our own log
    assert m.tail_targets(now) == {(sim.job, peer_id_of(k.public)) for k in (a, b, c, d)}
    # a stranger's job with selected workers: not ours to tail
    other = JobSim(make_offer(key("stranger"), replicas=1, quorum=1, created=T0, deadline=T0 + 600_000), publisher=key("stranger"))
    m.receive_facts([other.offer_fact, other.claim(a)], now)
    m.receive_facts([other.select()], now)
    ba, bb = sim.built(a), sim.built(b)
    e = key("e")  # claims after the round and commits: not selected, not asked
    m.receive_facts([sim.claim(e)], now)
    m.receive_facts([sim.commit(e, sim.built(e))], now)
    m.receive_facts([sim.commit(a, ba), sim.decline(c)], now)
    rows = worker_rows(sim.view(), m.verdict(sim.job, now))
    assert {"worker": peer_id_of(e.public), "phase": "committed"}.items() <= next(r for r in rows if r["worker"] == peer_id_of(e.public)).items()
    assert m.tail_targets(now) == {(sim.job, peer_id_of(k.public)) for k in (a, b, d)}
    m.receive_facts([sim.commit(b, bb)], now)
    m.receive_facts([sim.reveal(a, ba)], now)
    assert m.tail_targets(now) == {(sim.job, peer_id_of(k.public)) for k in (b, d)}
    m.receive_facts([sim.reveal(b, bb)], now)
    assert m.verdict(sim.job, now).final  # d is still selected, building: no longer asked
    assert m.tail_targets(now) == set()


_WAKE_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("at"), st.integers(0, 5), st.integers(0, 100)),  # _wake_at(job, when)
        st.tuples(st.just("gone"), st.integers(0, 5), st.just(0)),  # the job evicted
        st.tuples(st.just("tick"), st.just(0), st.integers(0, 30)),  # time moves on by this much
        st.tuples(st.just("peek"), st.just(0), st.just(0)),  # next_wakeup
    ),
    max_size=200,
)


@given(_WAKE_OPS)
@settings(max_examples=300, deadline=None)
def test_the_wakeup_heap_gives_what_a_scan_of_every_job_would(ops: list[tuple[str, int, int]]) -> None:
    """NodeMachine keeps each job's wake-up in a dict and in a heap with stale entries (for speed):
    due jobs and the next wake-up are the same as scanning the dict, as the machine did before,
    and stale entries never pile up past the rebuild bound."""
    m = machine()
    ref: dict[bytes, int] = {}
    now = 0
    for op, j, n in ops:
        job = bytes([j]) * 32
        if op == "at":
            when = now + n
            m._wake_at(job, when)
            if job not in ref or when < ref[job]:
                ref[job] = when
        elif op == "gone":
            m._wakeups.pop(job, None)  # as _evict does
            ref.pop(job, None)
        elif op == "tick":
            now += n
            due = {k for k, t in ref.items() if t <= now}
            for k in due:
                del ref[k]
            assert m._due(now) == due
        else:
            assert m.next_wakeup() == min(ref.values(), default=None)
        assert m._wakeups == ref
        assert len(m._wake_heap) <= 2 * len(ref) + 65


def test_a_job_woken_earlier_and_earlier_leaves_a_bounded_heap() -> None:
    m = machine()
    job = b"j" * 32
    for when in range(10_000, 9_000, -1):  # every call moves it earlier: a new heap entry each time
        m._wake_at(job, when)
    assert len(m._wake_heap) <= 2 * len(m._wakeups) + 65 and m.next_wakeup() == 9_001
    assert m._due(9_001) == {job} and m.next_wakeup() is None


def test_a_dispute_between_a_full_round_is_final_at_once_not_at_the_reveal_deadline() -> None:
    """Two builders of M = N = 2 disagree. The liar finishes first; when the honest worker's
    commit goes out, the liar reveals at once and its reveal reaches the honest node before that
    node ticked on its own commit (facts delivered at once: the same order as on a daemon whose
    own commit takes longer to come back to its machine than the other worker takes to react).
    Every place of round 0 is held by a commit, so no round can bring anyone who could agree: the
    honest worker reveals at once and every node is DISPUTED right after the last build, where it
    used to hold its reveal until the reveal deadline."""
    mesh = MachineMesh(3, T0, builders=frozenset({1, 2}), liars=frozenset({2}), delay=lambda s, d, n: 0,
                       build_ms=lambda node, n: 300 if node == 2 else 500)  # fmt: skip
    offer = make_offer(key("publisher"), replicas=2, quorum=2, created=T0, deadline=T0 + 600_000)
    jid = mesh.publish(0, offer)
    honest = mesh.machines[1]
    raced: list[int] = []
    tick = honest.tick

    def watched(now: int) -> list[Effect]:  # the race: a tick of BUILT that holds the other's reveal
        wj, view = honest.jobs.get(jid), honest.board.job(jid)
        if wj is not None and wj.phase == "BUILT" and view is not None and mesh.keys[2].public in view.reveals:
            raced.append(now)
        return tick(now)

    honest.tick = watched  # type: ignore[method-assign]
    mesh.run_until(lambda: mesh.all_final(jid), offer.deadline)
    assert raced
    assert mesh.all_final(jid)
    assert {v.state for v in mesh.verdicts(jid) if v is not None} == {"DISPUTED"}
    # final on every node at the honest worker's own tick on its commit (facts travel in 0 ms),
    # not at the reveal deadline (T0 + 90 s here) that the old rule waited for
    window = mesh.claim_window_ms
    assert mesh.now == raced[0] == T0 + window + settle_ms_for(window) + 500, (mesh.now, raced)
    assert mesh.now < reveal_deadline(offer, honest.cfg.worker.slack_ms)
