"""Sybil simulation of protocol v2 selection and tally (docs/security.md, "Sybil in open mode").

`python -m bench.sybil [--quick]` prints one JSON object.

Per job: T eligible claimants (identities made in advance, so the identity cost is
already paid), a share s of them held by the attacker. The publisher selects with
`p2pci.core.selection.next_select` (secret seed, seeded rank); the selected honest
workers reveal the honest digest, the selected attacker keys reveal one wrong digest
and witness each other's commits; every unselected attacker key also commits and
reveals the wrong digest (P1 says that changes nothing). The verdict is
`p2pci.core.tally.tally` on the resulting board. Facts are built as verified `Fact`
objects without signing (the tally never re-verifies: signing would only cost time).
With `require`, one trusted key (honest) claims too and is always selected.

Expectation: the attacker gets X ~ Hypergeometric(T, a, M) of the M ranked places; a
false REPRODUCED needs X >= N (and no `require`); with `require` the job instead
EXPIRES when the honest votes (M - X + 1 with the trusted key) stay below N.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from math import comb
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pci.core.messages import Offer

T_CLAIMANTS = 20
SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
MN = ((3, 2), (5, 3), (7, 4))
T0 = 1_000_000


def hypergeom_tail(total: int, bad: int, draws: int, at_least: int) -> float:
    """P(X >= at_least) for X ~ Hypergeometric(total, bad, draws)."""
    den = comb(total, draws)
    return sum(comb(bad, k) * comb(total - bad, draws - k) for k in range(at_least, min(bad, draws) + 1)) / den


def sim_offer(
    m: int,
    n: int,
    source: bytes,
    seed: bytes,
    trusted: bytes | None,
    created: int,
    deadline: int,
    *,
    identity_bits: int = 0,
    claim_window: int = 2000,
) -> Offer:
    """The offer of one simulated job (here and in bench/sybil_machine.py): open, M replicas,
    quorum N, `source` as its source blob, sha256(`seed`) as its select commitment, `trusted`
    (if any) as its one required key. `identity_bits` and `claim_window` default to `Offer`'s."""
    from p2pci.core.messages import BlobRef, ImageRef, Limits, Offer, Require

    return Offer(
        project="sybil",
        source=BlobRef(source, 1),
        image=ImageRef("sha256:" + "ab" * 32, None),
        command=("true",),
        env=(),
        source_date_epoch=None,
        limits=Limits(60, 256, 1, 64, 16),
        replicas=m,
        quorum=n,
        workers="open",
        require=Require((trusted,), 1) if trusted is not None else None,
        created=created,
        deadline=deadline,
        select_commit=hashlib.sha256(seed).digest(),
        identity_bits=identity_bits,
        claim_window=claim_window,
    )


def simulate(m: int, n: int, share: float, jobs: int, require: bool, rng: random.Random) -> dict[str, float]:
    from p2pci.core.board import Board
    from p2pci.core.messages import BlobRef, Claim, Commit, Reveal
    from p2pci.core.results import ManifestEntry, result_digest
    from p2pci.core.selection import next_select
    from p2pci.core.signing import Fact, commit_hash
    from p2pci.core.tally import tally

    good = (ManifestEntry("a", 1, 0o644, hashlib.sha256(b"good").digest()),)
    evil = (ManifestEntry("a", 1, 0o644, hashlib.sha256(b"evil").digest()),)
    d_good, d_evil = result_digest(0, good), result_digest(0, evil)
    log = BlobRef(hashlib.sha256(b"log").digest(), 1)
    a = round(share * T_CLAIMANTS)
    counts = {"REPRODUCED_true": 0, "REPRODUCED_false": 0, "DISPUTED": 0, "EXPIRED": 0, "PENDING": 0, "other": 0}
    for _ in range(jobs):
        rb = rng.randbytes
        seed = rb(32)
        publisher = rb(32)
        trusted = rb(32)
        offer = sim_offer(m, n, rb(32), seed, trusted if require else None, T0, T0 + 3_600_000)
        job = rb(32)
        board = Board()
        board.add_fact(Fact(job, "offer", publisher, offer, b""))
        attackers = {rb(32) for _ in range(a)}
        honest = {rb(32) for _ in range(T_CLAIMANTS - a)}
        if require:
            honest.add(trusted)
        for k in attackers | honest:
            board.add_fact(Fact(rb(32), "claim", k, Claim(job, T0 + 30_000, b""), b""))
        view = board.job(job)
        assert view is not None
        sel = next_select(view, seed, T0 + 2_000, close=True)
        assert sel is not None
        board.add_fact(Fact(rb(32), "select", publisher, sel, b""))
        salts = {}
        for k in attackers | set(sel.workers):  # every attacker key votes, selected or not
            salt = rb(16)
            salts[k] = salt
            digest = d_evil if k in attackers else d_good
            board.add_fact(Fact(rb(32), "commit", k, Commit(job, commit_hash(salt, digest, k)), b""))
        commits = {f.signer: f.id for fs in view.commits.values() for f in fs}
        evil_ids = tuple(sorted(commits[k] for k in attackers))
        for k, salt in salts.items():
            if k in attackers:
                rev = Reveal.of(job, d_evil, salt, 0, evil, log, evil_ids)
            else:
                rev = Reveal.of(job, d_good, salt, 0, good, log, view.seen_commits(1024, d_good))
            board.add_fact(Fact(rb(32), "reveal", k, rev, b""))
        v = tally(view, T0 + 10_000)
        if v.state == "PENDING":
            v = tally(view, offer.deadline)  # nothing more will come: what the job ends as
        if v.state == "REPRODUCED":
            counts["REPRODUCED_true" if v.digest == d_good else "REPRODUCED_false"] += 1
        elif v.state in counts:
            counts[v.state] += 1
        else:
            counts["other"] += 1
    out = {k: c / jobs for k, c in counts.items()}
    out["expected_false_reproduced"] = 0.0 if require else hypergeom_tail(T_CLAIMANTS, a, m, n)
    # with require the trusted key votes too: honest votes = m - X + 1 < n  <=>  X > m + 1 - n
    out["expected_expired"] = hypergeom_tail(T_CLAIMANTS, a, m, m + 2 - n) if require else 0.0
    return out


def run(quick: bool = False) -> dict[str, Any]:
    jobs = 500 if quick else 10_000
    rng = random.Random(13)
    table = []
    t = time.process_time()
    for require in (False, True):
        for m, n in MN:
            for s in SHARES:
                r = simulate(m, n, s, jobs, require, rng)
                table.append({"m": m, "n": n, "share": s, "require": require, "jobs": jobs, **r})
    out: dict[str, Any] = {"sybil_claimants": T_CLAIMANTS, "sybil_jobs_per_cell": jobs, "sybil_table": table}
    for row in table:
        if row["m"] == 3 and row["n"] == 2 and row["share"] == 0.3 and not row["require"]:
            out["sybil_false_reproduced_s30_m3n2"] = row["REPRODUCED_false"]
            out["sybil_expected_false_reproduced_s30_m3n2"] = round(row["expected_false_reproduced"], 4)
    out["sybil_cpu_s"] = round(time.process_time() - t, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1))
