"""Sybil simulation on the real node machine (docs/security.md, "Sybil in open mode").

`python -m bench.sybil_machine --table [--jobs N]` (`make sybil-table`) runs the whole table,
36 cells x N jobs (10 000 by default), 500 jobs per line appended to bench/sybil_table.jsonl
(every cell gets its k-th chunk before any gets its (k+1)-th; a killed run resumes where it
stopped; chunk k of a cell is its own random stream, so a rerun gives the same counts);
`python -m bench.sybil_machine [--upto N]` prints that table (markdown, then JSON rows);
`--cell M,N,S[,require] --jobs N` runs one cell; `--check N` compares N jobs per cell with and
without `SharedTally` (every fact, phase and verdict of every machine).

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

Attacker facts are handed to the machines as verified facts without an Ed25519 signature
(`forge`): the daemon gives a machine only facts whose signature it checked, and an attacker
signs its own facts validly, so the signature would only cost time. The machines of a job
share one tally, one verdict object and one selection per board content (`SharedTally`):
pure functions of the facts, computed once instead of once per machine; every decision stays
each machine's own. Both cut one job from about 25 ms to about 5 ms of CPU (with the peer-ID
and identity memos of p2pci.core).

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
import math
import random
import sys
import time
from typing import Any

from bench.sybil import MN, SHARES, T_CLAIMANTS, hypergeom_tail, sim_offer

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


class SharedTally:
    """One tally, selection and verdict object per distinct board content, shared by every machine.

    Every machine of a job holds its own board, and in this simulation those boards hold the
    same facts most of the time (one broadcast batch per instant). `tally(view, now, policy)`,
    `verdict_json(view, verdict)`, `selection(view)` and the selection helpers the worker rules
    call (`selected`, `live_claimants`, `round_pending`, of `(view, now)`) are pure functions of
    the facts of the job and of their other arguments (p2pci.core memoises tally and selection
    per view on such keys), so a process-wide memo keyed by (function, job, the set of fact
    ids, the other arguments) gives every machine the value it would compute itself, computed
    once instead of once per machine. The worker and publisher decisions themselves
    (`worker_step`, `next_select`, the effects) stay each machine's own. Installed only by this
    benchmark (`with SharedTally():`) over the names p2pci.core.node and p2pci.core.worker
    call; the daemon never uses it. `check_shared` runs jobs with and without it and compares
    every result."""

    _IDS = "bench/ids"

    def __init__(self) -> None:
        from p2pci.core.tally import ObserverPolicy, tally, verdict_json

        self._tally, self._verdict_json, self._default = tally, verdict_json, ObserverPolicy()
        self.tallies: dict[tuple[Any, ...], Any] = {}
        self.objects: dict[tuple[Any, ...], Any] = {}
        self.others: dict[tuple[Any, ...], Any] = {}

    def clear(self) -> None:
        """Forget everything (between jobs: the memo is keyed within one job)."""
        self.tallies.clear()
        self.objects.clear()
        self.others.clear()

    def _ids(self, view: Any) -> frozenset[bytes]:
        hit = view.cache.get(self._IDS)
        if hit is not None and hit[0] == view.version:
            return hit[1]  # type: ignore[no-any-return]
        ids = frozenset(view.ids)
        view.cache[self._IDS] = (view.version, ids)
        return ids

    def tally(self, view: Any, now: int, policy: Any = None) -> Any:
        offer = view.offer
        key = (
            view.job,
            self._ids(view),
            offer is not None and now >= offer.body.deadline,
            self._default if policy is None else policy,
        )
        hit = self.tallies.get(key)
        if hit is None:
            hit = self.tallies[key] = self._tally(view, now, key[3])
        return hit

    def verdict_json(self, view: Any, verdict: Any) -> Any:
        key = (view.job, self._ids(view), id(verdict))
        hit = self.objects.get(key)
        if hit is None or hit[0] is not verdict:
            hit = self.objects[key] = (verdict, self._verdict_json(view, verdict))  # holds verdict: its id stays unique
        return hit[1]

    def _shared(self, fn: Any) -> Any:
        memo = self.others

        def call(view: Any, *args: Any) -> Any:
            key = (fn, view.job, self._ids(view), args)
            hit = memo.get(key, memo)
            if hit is memo:
                hit = memo[key] = fn(view, *args)
            return hit

        return call

    def __enter__(self) -> SharedTally:
        import p2pci.core.node as node
        import p2pci.core.selection as sel
        import p2pci.core.worker as worker

        self._saved = {(m, name): getattr(m, name) for m in (node, worker) for name in self._names(m)}
        shared = {f: self._shared(getattr(sel, f)) for f in ("selection", "selected", "live_claimants", "round_pending")}
        for m, name in self._saved:
            if name == "tally":
                setattr(m, name, self.tally)
            elif name == "verdict_json":
                setattr(m, name, self.verdict_json)
            else:
                setattr(m, name, shared[name])
        return self

    @staticmethod
    def _names(module: Any) -> list[str]:
        names = ("tally", "verdict_json", "selection", "selected", "live_claimants", "round_pending")
        return [n for n in names if hasattr(module, n)]

    def __exit__(self, *exc: object) -> None:
        for (m, name), f in self._saved.items():
            setattr(m, name, f)


def forge(key: Any, body: Any) -> Any:
    """An attacker's fact as the machines receive it: a verified `Fact` (the daemon hands the
    machine facts whose signature it checked; an attacker signs its own facts validly), built
    without the Ed25519 signature, which no machine looks at again and would only cost time.
    Its id is unique per (job, signer, kind): each attacker key makes one fact of each kind."""
    from p2pci.core.signing import Fact

    fid = hashlib.sha256(b"bench/forged" + body.job + key.public + body.KIND.encode()).digest()
    return Fact(fid, body.KIND, key.public, body, b"")


def run_job(
    m: int, n: int, share: float, require: bool, keys: Keys, rng: random.Random, trace: list[Any] | None = None
) -> tuple[str, bool, int]:
    """(verdict state, false = the digest is the attacker's, attacker keys ranked in round 0).

    `trace`: gets what every machine did (the sorted fact ids of each machine's board, each
    worker machine's final phase, each machine's verdict at the end), for `check_shared`."""
    from p2pci.core.messages import BlobRef, Claim, Commit, Reveal
    from p2pci.core.node import NodeConfig, NodeMachine, Publish, RunBuild
    from p2pci.core.results import ManifestEntry, result_digest
    from p2pci.core.selection import selection
    from p2pci.core.signing import Fact, commit_hash
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
    trusted_key = trusted.public if require else None
    offer = sim_offer(
        m, n, rng.randbytes(32), seed, trusted_key, T0, T0 + 600_000, identity_bits=BITS, claim_window=2 * WINDOW_MS
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
                outbox += [forge(k, Claim(job, now + LEASE_MS, keys.nonce[k.public])) for k in attackers]
            if view is not None and attackers and not att_voted and selection(view).rounds:
                att_voted = True
                commits = []
                for k in attackers:
                    salt = rng.randbytes(16)
                    att_salts[k.public] = salt
                    commits.append(forge(k, Commit(job, commit_hash(salt, d_evil, k.public))))
                seen = tuple(sorted(f.id for f in commits))
                outbox += commits
                outbox += [forge(k, Reveal.of(job, d_evil, att_salts[k.public], 0, evil, log, seen)) for k in attackers]
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
    if trace is not None:
        trace += [sorted(mach.board.facts) for mach in machines]
        trace += [(w.jobs[job].phase if job in w.jobs else None) for w in workers]
        trace += [mach.verdict(job, now) for mach in machines]  # each machine's own view of the end
    return v.state, v.digest == d_evil, x


def check_shared(
    m: int, n: int, share: float, require: bool, jobs: int, seed: int = 7
) -> list[tuple[str, bool, int]]:
    """Run `jobs` jobs twice from the same random stream, each machine tallying its own board,
    then with `SharedTally`: every job's (state, false?, attacker keys ranked), every fact every
    machine holds and every worker's final phase must be equal. Returns the jobs' results
    (AssertionError on the first difference)."""
    results = []
    for shared in (False, True):
        rng = random.Random(seed)
        keys = Keys(rng)
        out: list[Any] = []
        st = SharedTally()
        if shared:
            st.__enter__()
        try:
            for _ in range(jobs):
                st.clear()
                trace: list[Any] = []
                out.append((run_job(m, n, share, require, keys, rng, trace), trace))
        finally:
            if shared:
                st.__exit__()
        results.append(out)
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        assert a[0] == b[0], f"job {i}: {a[0]} alone, {b[0]} shared"
        assert a[1] == b[1], f"job {i}: the machines did not do the same with and without SharedTally"
    return [r for r, _ in results[0]]


def count_jobs(m: int, n: int, share: float, require: bool, jobs: int, keys: Keys, rng: random.Random) -> dict[str, int]:
    """Run `jobs` jobs of one cell (machines sharing tallies through `SharedTally`) and count
    their verdicts: REPRODUCED split by whose digest won, DISPUTED, EXPIRED, any other state
    as "other"."""
    counts = {"REPRODUCED_true": 0, "REPRODUCED_false": 0, "DISPUTED": 0, "EXPIRED": 0, "other": 0}
    with SharedTally() as shared:
        for _ in range(jobs):
            shared.clear()
            state, false, _ = run_job(m, n, share, require, keys, rng)
            if state == "REPRODUCED":
                counts["REPRODUCED_false" if false else "REPRODUCED_true"] += 1
            else:
                counts[state if state in counts else "other"] += 1
    return counts


def simulate(m: int, n: int, share: float, jobs: int, require: bool, keys: Keys, rng: random.Random) -> dict[str, float]:
    counts = count_jobs(m, n, share, require, jobs, keys, rng)
    a = round(share * T_CLAIMANTS)
    out = {k: c / jobs for k, c in counts.items()}
    out["expected_false_reproduced"] = 0.0 if require else hypergeom_tail(T_CLAIMANTS, a, m, n)
    out["expected_expired"] = hypergeom_tail(T_CLAIMANTS, a, m, m + 2 - n) if require else 0.0
    return out


CHUNK = 500  # jobs per checkpoint of the table run (one JSON line each)
TABLE_FILE = "bench/sybil_table.jsonl"


def cells() -> list[tuple[int, int, float, bool]]:
    """The 36 cells of the table: (M, N, s, require), in the order of docs/security.md."""
    return [(m, n, s, req) for req in (False, True) for m, n in MN for s in SHARES]


def _cell_name(m: int, n: int, share: float, require: bool) -> str:
    return f"{m},{n},{share},{'require' if require else 'open'}"


def run_chunk(m: int, n: int, share: float, require: bool, chunk: int, jobs: int) -> dict[str, Any]:
    """`jobs` jobs of one cell from the random stream named by (cell, chunk): chunks are
    independent, so a table can be resumed, extended or split, and rerun to the same counts."""
    rng = random.Random(f"sybil/{_cell_name(m, n, share, require)}/{chunk}")
    keys = Keys(rng)
    t = time.process_time()
    counts = count_jobs(m, n, share, require, jobs, keys, rng)
    return {
        "cell": _cell_name(m, n, share, require),
        "chunk": chunk,
        "jobs": jobs,
        "counts": counts,
        "cpu_s": round(time.process_time() - t, 2),
    }


def load_table(path: str) -> dict[str, dict[int, dict[str, Any]]]:
    """cell name -> chunk -> chunk record, from a (possibly partial) table file."""
    done: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill: that chunk runs again
                done.setdefault(rec["cell"], {})[rec["chunk"]] = rec
    except FileNotFoundError:
        pass
    return done


def run_table(jobs: int, path: str = TABLE_FILE) -> None:
    """Every cell up to `jobs` jobs, CHUNK jobs per line appended to `path`; chunks already
    in the file are kept (an interrupted run resumes; a larger `jobs` extends the table)."""
    chunks = -(-jobs // CHUNK)
    done = load_table(path)
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if text and not text.endswith("\n"):  # a kill cut the last line: drop it (that chunk runs again)
        with open(path, "w") as f:
            f.write(text[: text.rfind("\n") + 1])
    t0 = time.monotonic()
    for k in range(chunks):  # every cell gets its k-th chunk before any gets its (k+1)-th
        for m, n, s, req in cells():
            if k in done.get(_cell_name(m, n, s, req), {}):
                continue
            rec = run_chunk(m, n, s, req, k, min(CHUNK, jobs - k * CHUNK))
            with open(path, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            print(f"{time.monotonic() - t0:8.0f} s  {rec['cell']:<22} chunk {k}: {rec['counts']} ({rec['cpu_s']} s CPU)", flush=True)


def summarize(path: str = TABLE_FILE, jobs: int | None = None) -> list[dict[str, Any]]:
    """Per cell: jobs, fractions, expectations and the distance in standard errors (`z`:
    (observed - expected) / sqrt(p (1 - p) / jobs) with p the expectation). `jobs`: only the
    chunks within the first `jobs` jobs of each cell (equal counts from an unfinished run)."""
    done = load_table(path)
    rows = []
    for m, n, s, req in cells():
        recs = [
            r
            for k, r in done.get(_cell_name(m, n, s, req), {}).items()
            if jobs is None or (k + 1) * CHUNK <= jobs
        ]
        total = sum(r["jobs"] for r in recs)
        if not total:
            continue
        counts = {k: sum(r["counts"][k] for r in recs) for k in recs[0]["counts"]}
        a = round(s * T_CLAIMANTS)
        exp = {
            "REPRODUCED_false": 0.0 if req else hypergeom_tail(T_CLAIMANTS, a, m, n),
            "DISPUTED": 0.0,
            "EXPIRED": hypergeom_tail(T_CLAIMANTS, a, m, m + 2 - n) if req else 0.0,
        }
        row: dict[str, Any] = {"m": m, "n": n, "share": s, "require": req, "jobs": total, "cpu_s": round(sum(r["cpu_s"] for r in recs), 1)}
        for key, p in exp.items():
            obs = counts[key] / total
            se = math.sqrt(p * (1 - p) / total)
            row[key] = obs
            row[f"expected_{key}"] = p
            # distance in standard errors of the expectation; an impossible outcome seen is inf
            row[f"z_{key}"] = (obs - p) / se if se else (0.0 if obs == p else math.inf)
        row["REPRODUCED_true"] = counts["REPRODUCED_true"] / total
        row["other"] = counts["other"] / total
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table of docs/security.md: open mode and `require` side by side per (M/N, s)."""
    by = {(r["m"], r["n"], r["share"], r["require"]): r for r in rows}
    out = [
        "| M/N | s | jobs | false REPRODUCED | expected | z | DISPUTED | EXPIRED "
        "| with `require`: jobs | false REPRODUCED | DISPUTED | EXPIRED | expected EXPIRED | z |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, n in MN:
        for s in SHARES:
            o, q = by.get((m, n, s, False)), by.get((m, n, s, True))
            cols = [f"{m}/{n}", f"{s}"]
            if o:
                cols += [f"{o['jobs']}", f"{o['REPRODUCED_false']:.4f}", f"{o['expected_REPRODUCED_false']:.4f}",
                         f"{o['z_REPRODUCED_false']:+.2f}", f"{o['DISPUTED']:.4f}", f"{o['EXPIRED']:.4f}"]
            else:
                cols += ["0", "", "", "", "", ""]
            if q:
                cols += [f"{q['jobs']}", f"{q['REPRODUCED_false']:.4f}", f"{q['DISPUTED']:.4f}", f"{q['EXPIRED']:.4f}",
                         f"{q['expected_EXPIRED']:.4f}", f"{q['z_EXPIRED']:+.2f}"]
            else:
                cols += ["0", "", "", "", "", ""]
            out.append("| " + " | ".join(cols) + " |")
    return "\n".join(out)


def run(quick: bool = False) -> dict[str, Any]:
    """The `make bench` part: the headline cell (s = 0.3, M/N = 3/2, no `require`), 10 000 jobs
    (1 000 with --quick) from the same random streams as the table's cell (its first chunks:
    the same counts), fewer if `make bench`'s time budget runs out (`sybil_jobs_s30_m3n2`)."""
    from bench.common import budget

    jobs = 1_000 if quick else 10_000
    stop = time.monotonic() + budget(300 if not quick else 60)
    recs = []
    for k in range(jobs // CHUNK):
        recs.append(run_chunk(3, 2, 0.3, False, k, CHUNK))
        if time.monotonic() > stop:
            break
    done = sum(r["jobs"] for r in recs)
    false = sum(r["counts"]["REPRODUCED_false"] for r in recs) / done
    exp = hypergeom_tail(T_CLAIMANTS, round(0.3 * T_CLAIMANTS), 3, 2)
    cpu = sum(r["cpu_s"] for r in recs)
    return {
        "sybil_false_reproduced_s30_m3n2": round(false, 4),
        "sybil_expected_false_reproduced_s30_m3n2": round(exp, 4),
        "sybil_z_s30_m3n2": round((false - exp) / math.sqrt(exp * (1 - exp) / done), 2),
        "sybil_jobs_s30_m3n2": done,
        "sybil_ms_per_job": round(1000 * cpu / done, 2),
    }


def one_cell(m: int, n: int, share: float, require: bool, jobs: int) -> dict[str, Any]:
    """One cell, `jobs` jobs from its own random stream (not the table's)."""
    rng = random.Random(31)
    keys = Keys(rng)
    t = time.process_time()
    r = simulate(m, n, share, jobs, require, keys, rng)
    cpu = time.process_time() - t
    return {"m": m, "n": n, "share": share, "require": require, "jobs": jobs, **r, "cpu_s": round(cpu, 1)}


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.sybil_machine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", action="store_true", help="run the whole table into --out (resumable: make sybil-table)")
    ap.add_argument("--report", action="store_true", help="print the table in --out as markdown, then JSON rows")
    ap.add_argument("--cell", help="M,N,S[,require]: one cell, --jobs jobs, printed as JSON")
    ap.add_argument("--check", type=int, metavar="JOBS", help="compare JOBS jobs per cell with and without SharedTally")
    ap.add_argument("--jobs", type=int, default=10_000, help="jobs per cell (default 10000)")
    ap.add_argument("--upto", type=int, help="report: only the first UPTO jobs of each cell")
    ap.add_argument("--out", default=TABLE_FILE, help=f"table file (default {TABLE_FILE})")
    ns = ap.parse_args(argv)
    if ns.table:
        run_table(ns.jobs, ns.out)
    elif ns.cell:
        spec = ns.cell.split(",")
        print(json.dumps(one_cell(int(spec[0]), int(spec[1]), float(spec[2]), spec[3:] == ["require"], ns.jobs), indent=1))
    elif ns.check:
        for m, n, s, req in cells():
            check_shared(m, n, s, req, ns.check)
            print(f"{_cell_name(m, n, s, req)}: {ns.check} jobs, the same with and without SharedTally", flush=True)
    else:
        rows = summarize(ns.out, ns.upto)
        print(markdown(rows))
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
