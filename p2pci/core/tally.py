"""The verdict: a pure function of a job's facts, `now` and the observer's policy.

Vote rules (docs/protocol.md section 6), applied per signer that revealed:

1. The offer must be known (else PENDING with nothing counted).
2. Equivocation first: a signer with two or more distinct commits or two or
   more distinct reveals for the job is an *equivocator*: reported, and all
   its votes dropped (also when it would be ignored for another reason).
3. The signer must be in the offer's allowlist (when the offer has one) and
   in the observer's trust set (when it has one); otherwise ignored.
4. It must have a commit, and `commit_hash(salt, digest, signer)` must equal
   that commit's hash; otherwise ignored.
5. Its commit's fact id must appear in the `seen` list of a reveal by a
   *different* signer (any reveal of the job with a valid signature), unless
   the signer is trusted not to copy: in the offer's allowlist, in the
   offer's `require.keys` or in the observer's `require.keys`. A copier that
   committed only after seeing a reveal is in nobody's `seen`: not counted.

   Collusion limit: two colluding signers that list each other's commits in
   their `seen` lists both count, whatever digest they reveal. Commit-reveal
   stops lone copiers, not coalitions (docs/security.md).

Counted votes are grouped by (digest, exit_code). With quorum
`N = max(offer.quorum, policy.quorum)` and `requires` = the offer's and the
observer's `Require`s (a group satisfies them when, for each, at least `min`
of its workers are in `keys`):

* CANCELLED if a cancel signed by the offer's signer exists;
* DISPUTED if two or more groups have >= N votes;
* REPRODUCED(digest) / FAILED(digest) if exactly one group has >= N votes
  and satisfies every `Require` (exit 0 / non-zero); dissenters are the
  counted voters outside that group;
* DISPUTED if no group has >= N votes but the counted votes are
  >= max(replicas, N) (all builds are in; the max only matters when an
  observer raised N above replicas: more votes could still make it). A group that reaches N but misses a `Require` is not
  a dispute: the job stays PENDING until a trusted key agrees;
* EXPIRED if still PENDING and `now >= offer.deadline`; else PENDING.

The observer's policy only tightens the offer's: its trust set removes
voters, its quorum can only raise N, its `require` adds a condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from p2pci.core.board import JobView
from p2pci.core.messages import Offer, Require, Reveal
from p2pci.core.signing import commit_hash, peer_id_of

State = Literal["PENDING", "REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"]
FINAL_STATES: frozenset[str] = frozenset({"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"})

# Reasons for ignored votes (stable strings: tests and the CLI show them).
R_NOT_ALLOWED = "not in the offer's allowlist"
R_NOT_TRUSTED = "not in the observer's trust set"
R_NO_COMMIT = "no commit"
R_COMMIT_MISMATCH = "reveal does not match its commit"
R_NOT_SEEN = "commit not in any other signer's seen list (possible copy)"


@dataclass(frozen=True, slots=True)
class ObserverPolicy:
    """The observer's own trust policy: it can only tighten the offer's."""

    trust: frozenset[bytes] | None = None
    require: Require | None = None
    quorum: int | None = None


@dataclass(frozen=True, slots=True)
class Group:
    digest: bytes
    exit_code: int
    workers: tuple[bytes, ...]  # sorted


@dataclass(frozen=True, slots=True)
class Ignored:
    worker: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    digest: bytes | None = None
    exit_code: int | None = None
    groups: tuple[Group, ...] = ()
    dissenters: tuple[bytes, ...] = ()
    equivocators: tuple[bytes, ...] = ()
    ignored: tuple[Ignored, ...] = ()

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


PENDING = Verdict("PENDING")


class _Memo:
    """The last verdict computed for a view (one per view: the daemon uses one policy)."""

    __slots__ = ("version", "expired", "policy", "verdict")

    def __init__(self, version: int, expired: bool, policy: ObserverPolicy, verdict: Verdict) -> None:
        self.version = version
        self.expired = expired
        self.policy = policy
        self.verdict = verdict


def _satisfies(workers: tuple[bytes, ...], requires: tuple[Require, ...]) -> bool:
    for req in requires:
        keys = req.keys
        if sum(1 for w in workers if w in keys) < req.min:
            return False
    return True


def tally(view: JobView, now: int, policy: ObserverPolicy = ObserverPolicy()) -> Verdict:
    """The verdict of one job (see the module docstring for the rules).

    Memoised on the view: the verdict depends on `now` only through
    `now >= deadline` and not on claims, so (tally_version, expired?, policy)
    is a complete key.
    """
    offer_fact = view.offer
    expired = offer_fact is not None and now >= offer_fact.body.deadline  # type: ignore[union-attr]
    cache = view.cache
    memo = cache.get(_MEMO)
    if (
        type(memo) is _Memo
        and memo.version == view.tally_version
        and memo.expired == expired
        and (memo.policy is policy or memo.policy == policy)
    ):
        return memo.verdict
    if len(cache) > 4096:
        cache.clear()
    verdict = _tally(view, now, policy)
    cache[_MEMO] = _Memo(view.tally_version, expired, policy, verdict)
    return verdict


_MEMO = "verdict"
_NO_KEYS: frozenset[bytes] = frozenset()


def _tally(view: JobView, now: int, policy: ObserverPolicy) -> Verdict:
    offer_fact = view.offer
    if offer_fact is None:
        return PENDING
    offer = offer_fact.body
    assert isinstance(offer, Offer)
    allow = view.allowlist
    trust = policy.trust
    oreq = offer.require
    preq = policy.require
    requires: tuple[Require, ...]
    if oreq is None:
        requires = () if preq is None else (preq,)
    else:
        requires = (oreq,) if preq is None else (oreq, preq)
    no_copy: frozenset[bytes] | set[bytes] = allow or _NO_KEYS
    if requires:
        no_copy = set(no_copy)
        for r in requires:
            no_copy.update(r.keys)
    quorum = offer.quorum
    if policy.quorum is not None and policy.quorum > quorum:
        quorum = policy.quorum

    commits = view.commits
    reveals = view.reveals
    equiv = view.equivocators  # kept by the board as facts arrive
    seen_by = view.witnesses
    cache = view.cache

    ignored: list[Ignored] = []
    votes: dict[tuple[bytes, int], list[bytes]] = {}
    counted = 0
    for signer in sorted(reveals):
        if signer in equiv:
            continue
        if allow is not None and signer not in allow:
            ignored.append(Ignored(signer, R_NOT_ALLOWED))
            continue
        if trust is not None and signer not in trust:
            ignored.append(Ignored(signer, R_NOT_TRUSTED))
            continue
        cfs = commits.get(signer)
        if not cfs:
            ignored.append(Ignored(signer, R_NO_COMMIT))
            continue
        rev_fact = reveals[signer][0]
        rev: Reveal = rev_fact.body  # type: ignore[assignment]
        com = cfs[0]
        key = rev_fact.id + com.id  # bytes: no tuple for the collector to track
        match = cache.get(key)
        if match is None:
            match = cache[key] = commit_hash(rev.salt, rev.digest, signer) == com.body.hash  # type: ignore[union-attr]
        if not match:
            ignored.append(Ignored(signer, R_COMMIT_MISMATCH))
            continue
        if signer not in no_copy:
            witnesses = seen_by.get(com.id)
            if not witnesses or (len(witnesses) == 1 and signer in witnesses):
                ignored.append(Ignored(signer, R_NOT_SEEN))
                continue
        vkey = (rev.digest, rev.exit_code)
        ws = votes.get(vkey)
        if ws is None:
            votes[vkey] = [signer]
        else:
            ws.append(signer)
        counted += 1

    # signers were visited in sorted order: each group's workers are sorted already
    groups: tuple[Group, ...]
    if len(votes) == 1:
        for (d, e), ws in votes.items():
            groups = (Group(d, e, tuple(ws)),)
    elif votes:
        groups = tuple(sorted([Group(d, e, tuple(ws)) for (d, e), ws in votes.items()], key=_group_order))
    else:
        groups = ()
    equivocators = tuple(sorted(equiv)) if equiv else ()
    ignored_t = tuple(ignored) if ignored else ()
    if view.cancels and any(c.signer == offer_fact.signer for c in view.cancels):
        return Verdict("CANCELLED", None, None, groups, (), equivocators, ignored_t)
    win: Group | None = None
    for g in groups:  # sorted by size, largest first
        if len(g.workers) < quorum:
            break
        if win is not None:
            return Verdict("DISPUTED", None, None, groups, (), equivocators, ignored_t)
        win = g
    if win is not None:
        if not requires or _satisfies(win.workers, requires):
            dissenters: tuple[bytes, ...] = ()
            if len(groups) == 2:  # the winner is the larger group: groups[0]
                dissenters = groups[1].workers
            elif len(groups) > 2:
                dissenters = tuple(sorted([w for g in groups if g is not win for w in g.workers]))
            state: State = "REPRODUCED" if win.exit_code == 0 else "FAILED"
            return Verdict(state, win.digest, win.exit_code, groups, dissenters, equivocators, ignored_t)
    elif counted >= offer.replicas and counted >= quorum:
        return Verdict("DISPUTED", None, None, groups, (), equivocators, ignored_t)
    if now >= offer.deadline:
        return Verdict("EXPIRED", None, None, groups, (), equivocators, ignored_t)
    return Verdict("PENDING", None, None, groups, (), equivocators, ignored_t)


def _group_order(g: Group) -> tuple[int, bytes, int]:
    return (-len(g.workers), g.digest, g.exit_code)


def verdict_json(view: JobView, verdict: Verdict) -> dict[str, Any]:
    """The `p2pci show JOB --json` object: keys as peer IDs, hashes as hex."""
    offer = view.offer_msg
    return {
        "job": view.job.hex(),
        "project": None if offer is None else offer.project,
        "verdict": verdict.state,
        "digest": None if verdict.digest is None else verdict.digest.hex(),
        "replicas": None if offer is None else offer.replicas,
        "quorum": None if offer is None else offer.quorum,
        "groups": [
            {
                "digest": g.digest.hex(),
                "exit_code": g.exit_code,
                "workers": [peer_id_of(w) for w in g.workers],
            }
            for g in verdict.groups
        ],
        "dissenters": [peer_id_of(w) for w in verdict.dissenters],
        "equivocators": [peer_id_of(w) for w in verdict.equivocators],
        "ignored": [{"worker": peer_id_of(i.worker), "reason": i.reason} for i in verdict.ignored],
    }
