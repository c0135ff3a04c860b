"""Sybil simulation on the real node machine (docs/security.md, "Sybil in open mode").

`python -m bench.sybil_machine [--jobs N] [--cell M,N,S[,require]]` prints one JSON object.

Per job, every honest party is a real `p2pci.core.node.NodeMachine`, driven the way the
daemon drives it (`receive_facts`, `tick` at `next_wakeup()`, its effects performed:
`Publish` gossips the fact to every machine, `RunBuild` ends `BUILD_MS` later with the
honest result through `build_finished`):

* the publisher's machine publishes the offer (`publish_offer`, with a random seed) and
  signs its own selection rounds (claim window, early close after its select grace,
  replacement rounds);
* T = 20 eligible claimants: `a = round(s * T)` attacker keys and `T - a` honest worker
  machines (with `require`, one more honest machine whose key is the offer's trusted
  key). Every key's identity proof was minted in advance at the offer's `identity_bits`
  (8 here: the proof is checked, its price is not what this measures);
* the attacker is scripted: every attacker key claims as soon as it sees the offer; as
  soon as it sees the first `select`, every attacker key, selected or not, commits one
  wrong digest, then reveals it with `seen` = all attacker commits (they witness each
  other), before the honest builds are done (the early wrong reveal).

The network is perfect (every fact reaches every machine at once, in one batch per
instant); time is virtual. The verdict is the publisher machine's board tallied when
nothing is left to do (at the offer's deadline if still PENDING: what the job ends as);
an honest observer machine that never builds must agree (checked on every job).

Expectation (as in bench/sybil.py): the attacker gets X ~ Hypergeometric(T, a, M) of the
M ranked places; a false REPRODUCED needs X >= N; with `require` it is impossible and the
job EXPIRES when the honest votes (M - X + 1 with the trusted key) stay below N.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from typing import Any

from bench.sybil import MN, SHARES, T_CLAIMANTS, hypergeom_tail

T0 = 1_800_000_000_000
BITS = 8
BUILD_MS = (1_000, 3_000)
LEASE_MS = 30_000
WINDOW_MS = 2_000


class Keys:
    """A fixed pool of keys with identity proofs minted once (identities made in advance)."""

    def __init__(self, rng: random.Random) -> None:
        from p2pci.core.identity import mint
        from p2pci.core.signing import NodeKey

        self.pool = [NodeKey.from_seed(rng.randbytes(32)) for _ in range(T_CLAIMANTS + 3)]
        self.nonce = {k.public: mint(k.public, BITS) for k in self.pool}


def run_job(m: int, n: int, share: float, require: bool, keys: Keys, rng: random.Random) -> tuple[str, bool, int]:
    """(verdict state, false = the digest is the attacker's, attacker keys ranked in round 0)."""
    from p2pci.core.messages import BlobRef, Claim, Commit, ImageRef, Limits, Offer, Require, Reveal
    from p2pci.core.node import NodeConfig, NodeMachine, Publish, RunBuild
    from p2pci.core.results import ManifestEntry, result_digest
    from p2pci.core.selection import selection
    from p2pci.core.signing import Fact, commit_hash, seal
    from p2pci.core.tally import tally
    from p2pci.core.worker import BuildDone, WorkerConfig

    a = round(share * T_CLAIMANTS)
    pool = list(keys.pool)
    rng.shuffle(pool)
    pub_key, trusted, observer = pool[0], pool[1], pool[2]
    claimants = pool[3 : 3 + T_CLAIMANTS]
    attackers, honest = claimants[:a], claimants[a:]
    if require:
        honest = [*honest, trusted]

    def machine(k: Any, builds: bool) -> NodeMachine:
        wc = WorkerConfig(k.public, lease_ms=LEASE_MS, claim_window_ms=WINDOW_MS, salt_secret=k.seed, claim_delay_ms=0, settle_ms=0)
        return NodeMachine(NodeConfig(key=k, worker=wc, builds=builds, identity=keys.nonce[k.public]))

    pub = machine(pub_key, False)
    obs = machine(observer, False)
    workers = [machine(k, True) for k in honest]
    machines = [pub, obs, *workers]
    good = (ManifestEntry("a", 1, 0o644, hashlib.sha256(b"good").digest()),)
    evil = (ManifestEntry("a", 1, 0o644, hashlib.sha256(b"evil").digest()),)
    d_evil = result_digest(0, evil)
    log = BlobRef(hashlib.sha256(b"log").digest(), 1)
    seed = rng.randbytes(32)
    offer = Offer(
        project="sybil",
        source=BlobRef(rng.randbytes(32), 1),
        image=ImageRef("sha256:" + "ab" * 32, None),
        command=("true",),
        env=(),
        source_date_epoch=None,
        limits=Limits(60, 256, 1, 64, 16),
        replicas=m,
        quorum=n,
        workers="open",
        require=Require((trusted.public,), 1) if require else None,
        created=T0,
        deadline=T0 + 600_000,
        select_commit=hashlib.sha256(seed).digest(),
        identity_bits=BITS,
        claim_window=2 * WINDOW_MS,
    )
    now = T0
    outbox: list[Fact] = []
    fact, effs = pub.publish_offer(offer, seed, now)
    job = fact.id
    outbox += [e.fact for e in effs if isinstance(e, Publish)]
    builds: list[tuple[int, int, NodeMachine]] = []  # (finish time, seq, machine)
    seq = 0
    att_claimed = att_voted = False
    att_salts: dict[bytes, bytes] = {}
    steps = 0
    while True:
        # this instant: deliver, tick everyone that is due, until quiet
        for _ in range(100):
            if outbox:
                batch, outbox = outbox, []
                for mach in machines:
                    mach.receive_facts(batch, now)
            view = obs.board.job(job)
            if view is not None and not att_claimed:
                att_claimed = True
                outbox += [seal(k, Claim(job, now + LEASE_MS, keys.nonce[k.public])) for k in attackers]
            if view is not None and attackers and not att_voted and selection(view).rounds:
                att_voted = True
                commits = []
                for k in attackers:
                    salt = rng.randbytes(16)
                    att_salts[k.public] = salt
                    commits.append(seal(k, Commit(job, commit_hash(salt, d_evil, k.public))))
                seen = tuple(sorted(f.id for f in commits))
                outbox += commits
                outbox += [seal(k, Reveal.of(job, d_evil, att_salts[k.public], 0, evil, log, seen)) for k in attackers]
            acted = bool(outbox)
            for mach in machines:
                w = mach.next_wakeup()
                if w is not None and w <= now:
                    acted = True
                    steps += 1
                    for e in mach.tick(now):
                        if isinstance(e, Publish):
                            outbox.append(e.fact)
                        elif isinstance(e, RunBuild):
                            seq += 1
                            builds.append((now + rng.randint(*BUILD_MS), seq, mach))
            if not acted:
                break
        view = pub.board.job(job)
        assert view is not None
        v = tally(view, now)
        if v.final and not builds:
            break
        times = [t for t, _, _ in builds]
        for mach in machines:
            w = mach.next_wakeup()
            if w is not None and w > now:
                times.append(w)
        nxt = min(times, default=None)
        if nxt is None or nxt >= offer.deadline:
            now = offer.deadline
            break
        now = nxt
        due = [b for b in builds if b[0] <= now]
        builds = [b for b in builds if b[0] > now]
        for _, _, mach in sorted(due, key=lambda b: (b[0], b[1])):
            mach.build_finished(job, BuildDone.of(0, good, log), now)
    v = tally(pub.board.job(job), now)  # type: ignore[arg-type]
    w = tally(obs.board.job(job), now)  # type: ignore[arg-type]
    assert (v.state, v.digest) == (w.state, w.digest), "two honest boards disagree"
    rounds = selection(pub.board.job(job)).rounds  # type: ignore[arg-type]
    x = len(set(rounds[0].ranked) & {k.public for k in attackers}) if rounds else -1
    return v.state, v.digest == d_evil, x


def simulate(m: int, n: int, share: float, jobs: int, require: bool, keys: Keys, rng: random.Random) -> dict[str, float]:
    counts = {"REPRODUCED_true": 0, "REPRODUCED_false": 0, "DISPUTED": 0, "EXPIRED": 0, "other": 0}
    for _ in range(jobs):
        state, false, _ = run_job(m, n, share, require, keys, rng)
        if state == "REPRODUCED":
            counts["REPRODUCED_false" if false else "REPRODUCED_true"] += 1
        elif state in counts:
            counts[state] += 1
        else:
            counts["other"] += 1
    a = round(share * T_CLAIMANTS)
    out = {k: c / jobs for k, c in counts.items()}
    out["expected_false_reproduced"] = 0.0 if require else hypergeom_tail(T_CLAIMANTS, a, m, n)
    out["expected_expired"] = hypergeom_tail(T_CLAIMANTS, a, m, m + 2 - n) if require else 0.0
    return out


def full_table(jobs: int = 500) -> dict[str, Any]:
    """Every cell (s x M/N x require), `jobs` jobs each."""
    rng = random.Random(13)
    keys = Keys(rng)
    table = []
    t = time.process_time()
    for require in (False, True):
        for m, n in MN:
            for s in SHARES:
                r = simulate(m, n, s, jobs, require, keys, rng)
                table.append({"m": m, "n": n, "share": s, "require": require, "jobs": jobs, **r})
    cpu = time.process_time() - t
    out: dict[str, Any] = {
        "sybil_machine_claimants": T_CLAIMANTS,
        "sybil_machine_jobs_per_cell": jobs,
        "sybil_machine_table": table,
        "sybil_machine_cpu_s": round(cpu, 1),
        "sybil_machine_ms_per_job": round(1000 * cpu / (jobs * len(table)), 2),
    }
    for row in table:
        if row["m"] == 3 and row["n"] == 2 and row["share"] == 0.3 and not row["require"]:
            out["sybil_false_reproduced_s30_m3n2"] = row["REPRODUCED_false"]
            out["sybil_expected_false_reproduced_s30_m3n2"] = round(row["expected_false_reproduced"], 4)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The `make bench` part: the headline cell (s = 0.3, M/N = 3/2, no `require`) on the real node
    machine (the whole table takes about 20 CPU minutes: `python -m bench.sybil_machine`)."""
    jobs = 300 if quick else 3000
    cell = one_cell(3, 2, 0.3, False, jobs)
    return {
        "sybil_false_reproduced_s30_m3n2": cell["REPRODUCED_false"],
        "sybil_expected_false_reproduced_s30_m3n2": round(cell["expected_false_reproduced"], 4),
        "sybil_jobs_s30_m3n2": jobs,
        "sybil_ms_per_job": round(1000 * cell["cpu_s"] / jobs, 2),
    }


def one_cell(m: int, n: int, share: float, require: bool, jobs: int) -> dict[str, Any]:
    """One cell with more jobs (the headline cell of bench/results.json)."""
    rng = random.Random(31)
    keys = Keys(rng)
    t = time.process_time()
    r = simulate(m, n, share, jobs, require, keys, rng)
    cpu = time.process_time() - t
    return {"m": m, "n": n, "share": share, "require": require, "jobs": jobs, **r, "cpu_s": round(cpu, 1)}


if __name__ == "__main__":
    # --jobs N: jobs per cell of the whole table; --cell M,N,S[,require] --jobs N: one cell
    n_jobs = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 500
    if "--cell" in sys.argv:
        spec = sys.argv[sys.argv.index("--cell") + 1].split(",")
        print(json.dumps(one_cell(int(spec[0]), int(spec[1]), float(spec[2]), spec[3:] == ["require"], n_jobs), indent=1))
    else:
        print(json.dumps(full_table(n_jobs), indent=1))
