"""Liveness of the pure protocol: simulated workers on one board, some vanishing, time driven by next_wakeup."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board
from p2pci.core.messages import BlobRef, Claim, Commit
from p2pci.core.selection import next_select, select_wakeup
from p2pci.core.signing import NodeKey, seal
from p2pci.core.tally import tally
from p2pci.core.worker import (
    BuildDone,
    PublishClaim,
    PublishCommit,
    PublishReveal,
    StartBuild,
    Tick,
    WorkerConfig,
    WorkerJob,
    next_wakeup,
    worker_step,
)

from .jobgen import SEED, JobSim, h, key, make_offer, manifest_for
from .machinemesh import MachineMesh

T0 = 1_000_000
KEYS = [key(f"sim-{i}") for i in range(8)]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 6),
    replicas=st.integers(1, 3),
    quorum_frac=st.integers(1, 3),
    vanish=st.lists(st.integers(0, 5), max_size=3, unique=True),
    durations=st.lists(st.integers(100, 20_000), min_size=6, max_size=6),
)
def test_job_completes_despite_workers_vanishing_before_commit(
    n: int, replicas: int, quorum_frac: int, vanish: list[int], durations: list[int]
) -> None:
    quorum = min(quorum_frac, replicas)
    sim = JobSim(
        make_offer(key("publisher"), replicas=replicas, quorum=quorum, created=T0, deadline=T0 + 600_000)
    )
    board = Board()
    board.add(sim.offer_fact.raw, T0)
    keys: list[NodeKey] = KEYS[:n]
    cfgs = [WorkerConfig(k.public, lease_ms=10_000, claim_window_ms=1_000, salt_secret=k.seed) for k in keys]
    wjs = [WorkerJob.new(sim.job, T0) for _ in keys]
    gone = {i for i in vanish if i < n}  # these stop for good once they start building
    done_at: dict[int, int] = {}
    now = T0
    view = board.job(sim.job)
    assert view is not None
    for _ in range(2_000):
        for i, k in enumerate(keys):
            if i in gone and wjs[i].phase == "BUILDING":
                continue
            events: list[Tick | BuildDone] = [Tick()]
            if done_at.get(i) is not None and done_at[i] <= now:
                del done_at[i]
                events.insert(0, BuildDone.of(0, manifest_for(b"good"), BlobRef(h(b"log"), 1)))
            for ev in events:
                wjs[i], actions = worker_step(wjs[i], view, now, cfgs[i], ev)
                for a in actions:
                    if isinstance(a, PublishClaim):
                        board.add(seal(k, Claim(sim.job, a.lease_until)).raw, now)
                    elif isinstance(a, PublishCommit):
                        board.add(seal(k, Commit(sim.job, a.hash)).raw, now)
                    elif isinstance(a, PublishReveal):
                        board.add(seal(k, a.reveal).raw, now)
                    elif isinstance(a, StartBuild):
                        done_at[i] = now + durations[i]
        # the publisher (protocol v2): select once the window is over, replace squatters later
        body = next_select(view, SEED, now, close=now >= T0 + 1_000)
        if body is not None:
            board.add(seal(sim.publisher, body).raw, now)
            continue  # let the workers see the new round at the same instant
        verdict = tally(view, now)
        if verdict.final:
            break
        wakeups = [t for i in range(n) if i not in gone or wjs[i].phase != "BUILDING"
                   for t in [next_wakeup(wjs[i], view, now)] if t is not None]  # fmt: skip
        wakeups += [t for i, t in done_at.items() if i not in gone]
        pub = select_wakeup(view, now, T0 + 1_000)
        if pub is not None:
            wakeups.append(pub)
        later = [t for t in wakeups if t > now]
        if not later:
            break
        now = min(later)
    event(verdict.state)
    survivors = n - len(gone)
    # Protocol v2: vanished workers are replaced in later selection rounds, so a job completes
    # whenever enough workers stay (a lone vote for its digest needs no witness).
    if survivors >= quorum:
        assert verdict.state == "REPRODUCED", (verdict, [w.phase for w in wjs], gone)
        assert now < T0 + 600_000
    else:
        assert verdict.state in ("REPRODUCED", "EXPIRED", "PENDING")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 6),
    replicas=st.integers(1, 3),
    quorum_frac=st.integers(1, 3),
    vanish=st.lists(st.integers(0, 5), max_size=3, unique=True),
    durations=st.lists(st.integers(100, 20_000), min_size=6, max_size=6),
)
def test_node_machines_complete_a_job_despite_workers_vanishing(
    n: int, replicas: int, quorum_frac: int, vanish: list[int], durations: list[int]
) -> None:
    """The same property on the real NodeMachine (settle, slots, late-claim rules included),
    node 0 the publisher, facts delivered at once."""
    quorum = min(quorum_frac, replicas)
    mesh = MachineMesh(n + 1, T0, builders=frozenset(range(1, n + 1)), delay=lambda s, d, k: 0,
                       build_ms=lambda node, k: durations[node - 1])  # fmt: skip
    mesh.vanish_when_building.update(i + 1 for i in vanish if i < n)
    offer = make_offer(key("publisher"), replicas=replicas, quorum=quorum, created=T0, deadline=T0 + 600_000)
    jid = mesh.publish(0, offer)
    mesh.run_until(lambda: mesh.all_final(jid), offer.deadline)
    verdict = mesh.machines[0].verdict(jid, mesh.now)
    event(verdict.state)
    survivors = n - len(mesh.vanish_when_building)
    if replicas >= 2 and survivors >= max(quorum, 2):
        assert verdict.state == "REPRODUCED", (verdict, [m.jobs.get(jid) for m in mesh.machines])
        assert mesh.now < offer.deadline
    else:
        assert verdict.state in ("REPRODUCED", "EXPIRED", "PENDING")
