"""Issue 14 quotas: the token buckets, the gate in `admit_fact`, and the board's eviction."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import trio

from p2pci.core.messages import Cancel
from p2pci.core.node import NodeConfig, NodeMachine
from p2pci.core.signing import NodeKey, seal
from p2pci.core.worker import WorkerConfig, WorkerPolicy
from p2pci.daemon.node import validate_fact
from p2pci.net.base import Delivery
from p2pci.net.common import SeenIds, Stats, admit_fact
from p2pci.net.quota import QuotaLimits, Quotas, RequestLimiter, SyncLimits
from p2pci.testing.net import DictSyncSource

from .jobgen import JobSim, key, make_offer

T0 = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fact(k: NodeKey, tag: str) -> bytes:
    return seal(k, Cancel(job=hashlib.sha256(tag.encode()).digest())).raw


class Gate:
    """admit_fact with real envelopes, a fake clock and a big delivery channel."""

    def __init__(self, limits: QuotaLimits) -> None:
        self.clock = Clock()
        self.quotas = Quotas(limits, clock=self.clock)
        self.seen = SeenIds()
        self.sync = DictSyncSource()
        self.stats = Stats()
        self.send, self.recv = trio.open_memory_channel[Delivery](100_000)

    def admit(self, raw: bytes, peer: str = "peerA") -> str:
        return admit_fact(
            raw, peer, validate=validate_fact, seen=self.seen, sync=self.sync,
            deliver=self.send, stats=self.stats, quotas=self.quotas,
        )


def test_sync_rounds_are_limited_per_peer_then_refill() -> None:
    clock = Clock()
    lim = RequestLimiter(SyncLimits(peer_per_s=1.0, peer_burst=32, total_per_s=10.0, total_burst=256), clock=clock)
    assert [lim.take("A") for _ in range(33)] == [None] * 32 + ["peer"]
    assert lim.take("B") is None  # another peer has its own bucket
    clock.t = 2.5  # 2.5 tokens back: 2 rounds
    assert [lim.take("A") for _ in range(3)] == [None, None, "peer"]
    clock.t = 1_000.0  # full again, never more than the burst
    assert [lim.take("A") for _ in range(33)] == [None] * 32 + ["peer"]


def test_sync_rounds_are_limited_in_total_whatever_the_number_of_peers() -> None:
    clock = Clock()
    lim = RequestLimiter(SyncLimits(peer_per_s=1.0, peer_burst=32, total_per_s=10.0, total_burst=256), clock=clock)
    # fresh identities, each with a full bucket: 8 of them use up the total burst
    out = [lim.take(f"sybil{i}") for i in range(8) for _ in range(32)]
    assert out == [None] * 256
    assert lim.take("honest") == "total"
    clock.t = 1.0  # 10 rounds a second in all
    assert [lim.take(f"new{i}") for i in range(11)] == [None] * 10 + ["total"]
    # a refused round spends nothing: the peer's bucket is still full once the total refills
    clock.t = 100.0
    assert [lim.take("honest") for _ in range(33)] == [None] * 32 + ["peer"]


def test_tracked_sync_peers_are_bounded() -> None:
    lim = RequestLimiter(SyncLimits(max_tracked=100), clock=Clock())
    for i in range(1_000):
        lim.take(f"p{i}")
    assert len(lim) == 100


def test_sync_limits_follow_a_faster_sync_interval() -> None:
    # the daemon's default (30 s): 1 round/s per peer, 10 in total; an honest peer asks one round
    # per 24 s at most (16 if its board differs by more than 4 MiB: 0.67/s)
    assert SyncLimits.for_interval(30.0) == SyncLimits()
    # a test mesh syncing every 0.5 s: twice per interval per peer, ten peers' worth in total
    fast = SyncLimits.for_interval(0.5)
    assert fast.peer_per_s == 4.0 and fast.total_per_s == 40.0


def test_peer_rate_drops_past_the_burst_then_refills() -> None:
    g = Gate(QuotaLimits(peer_facts_per_s=10, peer_burst=5, signer_burst=1000))
    ks = [NodeKey.from_seed(hashlib.sha256(f"k{i}".encode()).digest()) for i in range(8)]
    raws = [fact(k, "x") for k in ks]  # 8 signers: only the peer's budget can bind
    got = [g.admit(r) for r in raws]
    assert got == ["delivered"] * 5 + ["limited"] * 3
    assert g.quotas.dropped["peer_rate"] == 3
    assert g.stats.get("delivered") == 5
    # another peer has its own budget
    assert g.admit(raws[5], peer="peerB") == "delivered"
    # a limited fact is not remembered: after a refill the same fact gets in
    g.clock.t += 0.1  # one token
    assert g.admit(raws[6]) == "delivered"
    assert g.admit(raws[7]) == "limited"
    # duplicates are free: no budget spent, no drop counted
    before = dict(g.quotas.dropped)
    assert g.admit(raws[0]) == "duplicate"
    assert dict(g.quotas.dropped) == before
    assert g.quotas.snapshot()["dropped_from"] == {"peerA": 4}


def test_signer_budget_spans_peers_and_counts_bytes() -> None:
    g = Gate(QuotaLimits(signer_facts_per_s=1, signer_burst=3))
    k = key("one signer")
    out = [g.admit(fact(k, f"t{i}"), peer=f"p{i}") for i in range(5)]  # every fact via another peer
    assert out == ["delivered"] * 3 + ["limited"] * 2
    assert g.quotas.dropped["signer_rate"] == 2
    size = len(fact(k, "t0"))
    g2 = Gate(QuotaLimits(signer_burst_kib=1, signer_kib_per_s=1))  # 1 KiB bucket
    n = 1024 // size
    out2 = [g2.admit(fact(k, f"b{i}")) for i in range(n + 1)]
    assert out2[:n] == ["delivered"] * n and out2[n] == "limited"
    assert g2.quotas.dropped["signer_bytes"] == 1


def test_peer_quota_comes_before_the_signature_check() -> None:
    g = Gate(QuotaLimits(peer_burst=1))
    k = key("k")
    assert g.admit(fact(k, "a")) == "delivered"
    bad = bytearray(fact(k, "b"))
    bad[-1] ^= 1  # not even valid: the peer is over budget, so it is not verified at all
    assert g.admit(bytes(bad)) == "limited"
    assert g.stats.get("rejected") == 0


def test_a_forgotten_fact_can_come_back() -> None:
    g = Gate(QuotaLimits())
    raw = fact(key("k"), "evicted later")
    assert g.admit(raw) == "delivered"
    assert g.admit(raw) == "duplicate"
    g.seen.discard([hashlib.sha256(raw).digest()])  # the daemon evicted it (LibP2PNetwork.forget)
    assert g.admit(raw) == "delivered"


def test_tracked_keys_are_bounded() -> None:
    q = Quotas(QuotaLimits(max_tracked=10), clock=Clock())
    for i in range(1000):
        q.check_peer(f"p{i}", 10)
        q.check_signer(bytes([i % 256, i // 256]) * 16, 10, f"p{i}")
    snap = q.snapshot()
    assert snap["tracked_peers"] == 10 and snap["tracked_signers"] == 10
    assert len(snap["dropped_from"]) <= 16


# ---------------------------------------------------------------- the board


def machine(max_jobs: int = 10, per_key: int = 64) -> NodeMachine:
    me = key("me")
    wc = WorkerConfig(me.public, lease_ms=10_000, claim_window_ms=1000, policy=WorkerPolicy(slots=1), salt_secret=me.seed)
    return NodeMachine(NodeConfig(key=me, worker=wc, builds=False, max_jobs=max_jobs, max_offers_per_key=per_key))


def junk(n: int, publisher: str = "junk") -> list[JobSim]:
    return [JobSim(make_offer(key(f"{publisher}{i}"), project=f"j{i}"), publisher=key(f"{publisher}{i}")) for i in range(n)]


def test_jobs_per_node_evicts_the_oldest_unselected_junk_not_a_selected_job() -> None:
    m = machine(max_jobs=10)
    real = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    w1, w2 = key("w1"), key("w2")
    real.claim(w1)
    real.claim(w2)
    real.select()
    m.receive_facts(real.facts, T0)  # the oldest job on the board, and selected
    assert m.enforce_limits() == []
    sims = junk(30)
    for s in sims:
        m.receive_facts(s.facts, T0)
    evicted = m.enforce_limits()
    assert m.board.job_count() == 10
    assert real.job not in evicted and m.board.job(real.job) is not None
    assert evicted == [s.job for s in sims[:21]]  # oldest first
    assert m.evicted == {"jobs_per_node": 21}
    # evicted facts are gone from the board (and offered to nobody by sync)
    assert not any(m.board.has(f.id) for s in sims[:21] for f in s.facts)
    assert set(m.evicted_ids) == {f.id for s in sims[:21] for f in s.facts}  # the network forgets them
    assert set(m.live_ids(T0)[: len(real.facts)]) == {f.id for f in real.facts}  # protected first


def test_sync_lists_a_protected_job_before_older_junk() -> None:
    """The real job arrives after the junk (the board's order puts it last): anti-entropy still
    lists its facts first, so a window cut at its end (wire.MAX_IDS) loses junk, not them."""
    m = machine(max_jobs=1000)
    sims = junk(30)
    for s in sims:
        m.receive_facts(s.facts, T0)
    real = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    real.claim(key("w1"))
    real.claim(key("w2"))
    real.select()
    m.receive_facts(real.facts, T0)
    ids = m.live_ids(T0)
    assert set(ids[: len(real.facts)]) == {f.id for f in real.facts}
    assert set(ids[len(real.facts) :]) == {f.id for s in sims for f in s.facts}


def test_our_own_jobs_and_jobs_we_take_part_in_are_never_evicted() -> None:
    m = machine(max_jobs=2)
    ours = JobSim(make_offer(m.cfg.key), publisher=m.cfg.key)
    claimed = JobSim(make_offer(key("someone")), publisher=key("someone"))
    claimed.claim(m.cfg.key)
    m.receive_facts(ours.facts + claimed.facts, T0)
    for s in junk(3):
        m.receive_facts(s.facts, T0)
    m.enforce_limits()
    assert m.board.job(ours.job) is not None and m.board.job(claimed.job) is not None
    assert m.board.job_count() == 2
    newest = junk(1, "more")[0]
    m.receive_facts(newest.facts, T0)
    assert m.enforce_limits() == [newest.job]  # the only unprotected job, even though the newest
    assert m.over_limit == 0
    # a bound below the protected jobs: nothing evicted, counted as over the limit
    m.cfg = replace(m.cfg, max_jobs=1)
    assert m.enforce_limits() == []
    assert m.board.job_count() == 2 and m.over_limit == 1


def self_claimed_junk(n: int, tag: str, select: bool) -> list[JobSim]:
    """Junk as cheap as an attacker makes it: each a fresh key that offers (identity_bits 0),
    claims its own offer and, if `select`, selects that claim (a valid round)."""
    sims = junk(n, tag)
    for s in sims:
        s.claim(s.publisher)
        if select:
            s.select()
    return sims


def test_a_board_full_of_self_claimed_junk_keeps_a_fresh_offer() -> None:
    """Jobs somebody claimed were evicted after unclaimed ones; a key claiming its own junk offer
    costs nothing, so with the board full of such junk a fresh real offer was the only victim and
    was evicted as it arrived (before this node's worker could claim it). Oldest first now."""
    m = machine(max_jobs=10)
    for s in self_claimed_junk(10, "claimed", select=False):
        m.receive_facts(s.facts, T0)
    assert m.enforce_limits() == []
    real = JobSim(make_offer(key("honest"), project="real"), publisher=key("honest"))
    m.receive_facts(real.facts, T0)
    evicted = m.enforce_limits()
    assert real.job not in evicted and m.board.job(real.job) is not None
    assert len(evicted) == 1 and m.board.job_count() == 10


def test_selected_junk_fills_at_most_half_the_board() -> None:
    """A job with a valid selection round was never evicted, but any key can select its own claim
    in its own offer: 40 such jobs left a board bounded at 10 jobs at 40 (over_limit 30), and a
    fresh real offer was evicted as it arrived. Only the oldest max_jobs // 2 selected jobs this
    node has no part in are passed over now: a real one selected before the flood stays."""
    m = machine(max_jobs=10)
    first = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    first.claim(key("w1"))
    first.claim(key("w2"))
    first.select()
    m.receive_facts(first.facts, T0)
    for s in self_claimed_junk(40, "selected", select=True):
        m.receive_facts(s.facts, T0)
        m.enforce_limits()
        assert m.board.job_count() <= 10
    assert m.over_limit == 0
    assert m.board.job(first.job) is not None  # the oldest selected job: sheltered
    real = JobSim(make_offer(key("honest"), project="real"), publisher=key("honest"))
    m.receive_facts(real.facts, T0)
    assert real.job not in m.enforce_limits() and m.board.job(real.job) is not None
    assert m.board.job_count() == 10


def test_offers_per_key_keep_the_newest() -> None:
    m = machine(max_jobs=1000, per_key=4)
    pub = key("spammer")
    sims = [JobSim(make_offer(pub, project=f"p{i}"), publisher=pub) for i in range(10)]
    for s in sims:
        m.receive_facts(s.facts, T0)
    evicted = m.enforce_limits()
    assert evicted == [s.job for s in sims[:6]]
    assert m.evicted == {"offers_per_key": 6}
    assert len(m.board.offers_by[pub.public]) == 4
    assert m.board.job_count() == 4


def test_quota_settings_reach_the_machine() -> None:
    from p2pci.config import Config, QuotaSettings, parse_config
    from p2pci.daemon.node import node_config

    cfg = parse_config({"quotas": {"max_jobs": 7, "max_offers_per_key": 3, "peer_burst": 9}})
    assert cfg.quotas == replace(QuotaSettings(), max_jobs=7, max_offers_per_key=3, peer_burst=9)
    nc = node_config(cfg, key("me"), builds=False)
    assert (nc.max_jobs, nc.max_offers_per_key) == (7, 3)
    assert cfg.quotas.limits().peer_burst == 9
    assert Config().quotas.max_jobs == 4096
