"""The verdict: a pure function of a job's facts, `now` and the observer's policy (protocol v2).

Vote rules (docs/protocol.md section 6), applied per signer that revealed, in key order:

1. The offer must be known (else PENDING with nothing counted).
2. The signer must be *selected*: named by a valid `select` round of the offer's
   publisher (p2pci.core.selection). Otherwise ignored, whatever else it did:
   facts of unselected keys change nothing but the list of ignored votes.
3. Equivocation: a selected signer with two or more distinct commits or two or
   more distinct reveals is an *equivocator* (listed, revealed or not): all its
   votes are dropped. A selected signer that is not an equivocator and has a
   decline held has *declined its place*: its votes are ignored (whenever the
   decline came, before or after its reveal; a decline frees the place for the
   next key in rank, so a kept vote would give a coalition a second draw).
4. The signer must be in the offer's allowlist (when it has one) and in the
   observer's trust set (when it has one); otherwise ignored.
5. It must have a commit, and `commit_hash(salt, digest, signer)` must equal
   that commit's hash; otherwise ignored.
6. Witness rule: its commit's fact id must appear in the `seen` list of a
   *counted* vote by a different signer *with the same digest* (the greatest
   set of votes closed under this rule), unless the signer is trusted not to
   copy (in the offer's allowlist, the offer's `require.keys` or the
   observer's `require.keys`) or no other vote passing rules 1-5 has its
   digest (nothing to copy from). An early reveal of another digest freezes
   nobody's `seen` list for this digest, and a stranger cannot be a witness.

Counted votes are grouped by (digest, exit_code). With quorum
`N = max(offer.quorum, policy.quorum)` and `requires` = the offer's and the
observer's `Require`s (a group satisfies them when, for each, at least `min`
of its workers are in `keys`), a group is *decisive* when it has >= N votes and
satisfies every `Require`:

* CANCELLED if a cancel signed by the offer's signer exists;
* DISPUTED if two or more groups are decisive;
* REPRODUCED(digest) / FAILED(digest) if exactly one group is decisive (exit 0 /
  non-zero); dissenters are the counted voters outside that group;
* without any `Require`: DISPUTED if no group has >= N votes but the counted
  votes are >= max(replicas, N) (all builds are in). With a `Require`, keys
  outside `keys` can never end the job: it waits for the trusted keys;
* EXPIRED if still undecided and `now >= offer.deadline` (reason: no valid
  selection, or not enough agreeing votes); else PENDING.

The observer's policy only tightens the offer's: its trust set removes
voters, its quorum can only raise N, its `require` adds a condition.
Equal facts give equal verdicts on every node, whatever the arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256 as _sha256
from itertools import islice
from typing import Any, Literal

from p2pci.core.board import JobView
from p2pci.core.frozen import builder
from p2pci.core.messages import Decline, Offer, Require, Reveal
from p2pci.core.selection import Selection, selection
from p2pci.core.signing import Fact, peer_id_of

State = Literal["PENDING", "REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"]
FINAL_STATES: frozenset[str] = frozenset({"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"})

# Reasons for ignored votes (stable strings: tests and the CLI show them).
R_NOT_ALLOWED = "not in the offer's allowlist"
R_NOT_TRUSTED = "not in the observer's trust set"
R_NO_COMMIT = "no commit"
R_COMMIT_MISMATCH = "reveal does not match its commit"
R_NOT_SEEN = "commit not in the seen list of another counted vote for the same digest (possible copy)"
R_NOT_SELECTED = "not selected by the publisher"
R_DECLINED = "declined its place"

# Reasons of an EXPIRED verdict.
X_NO_SELECTION = "the publisher never selected workers (it must stay online until selection is done)"
X_NO_QUORUM = "not enough agreeing votes by the deadline"
# Causes of an EXPIRED verdict (Verdict.cause, for humans: `expired_cause`).
C_NO_CLAIM = "no eligible worker claimed the job"
C_PUBLISHER_GONE = "publisher gone: workers claimed, nobody selected them"

DEFAULT_SLACK_MS = 30_000  # a worker reveals at the latest this long after the build timeout
MAX_CAUSE_CODES = 8  # decline codes named in an EXPIRED cause (the rest are counted as "other")


def reveal_deadline(offer: Offer, slack_ms: int = DEFAULT_SLACK_MS) -> int:
    """When a committed worker reveals even though not every selected worker committed."""
    return min(offer.created + offer.limits.timeout_s * 1000 + slack_ms, offer.deadline)


def _decline_codes(view: JobView) -> dict[bytes, str]:
    """Each decliner's reason code (its first decline in fact-id order): one per worker."""
    out: dict[bytes, str] = {}
    for w, fs in view.declines.items():
        ds = sorted((f for f in fs if isinstance(f.body, Decline)), key=lambda f: f.id)
        if ds:
            out[w] = ds[0].body.reason  # type: ignore[union-attr]
    return out


def _declined_text(codes: dict[bytes, str]) -> str:
    """The text "2 declined: 1 policy, 1 timeout" (codes by count, then name)."""
    counts: dict[str, int] = {}
    for c in codes.values():
        counts[c] = counts.get(c, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked[:MAX_CAUSE_CODES]
    rest = sum(n for _, n in ranked[MAX_CAUSE_CODES:])
    parts = [f"{n} {c}" for c, n in shown] + ([f"{rest} other"] if rest else [])
    return f"{len(codes)} declined: " + ", ".join(parts)


def expired_cause(view: JobView, sel: Selection, reveals_missing: int) -> str:
    """Why a job EXPIRED, for humans (the verdict object's `cause`; docs/protocol.md section 6).

    No valid round: nobody claimed (no eligible worker; with the declines when some said why),
    or workers claimed and the publisher never selected (publisher gone). With a round: the
    declines (timeouts are declines with reason `timeout`), the selected workers that did not
    reveal, or that round 0 selected nobody ("" when none applies)."""
    codes = _decline_codes(view)
    if not sel.rounds:
        if view.claims:
            return C_PUBLISHER_GONE
        return C_NO_CLAIM + ("; " + _declined_text(codes) if codes else "")
    causes: list[str] = []
    if not sel.selected:
        causes.append("no worker was selected")
    if codes:
        causes.append(_declined_text(codes))
        timeouts = sum(1 for c in codes.values() if c == "timeout")
        if timeouts:
            causes.append(f"{timeouts} timed out")
    if reveals_missing:
        causes.append(f"{reveals_missing} selected worker(s) did not reveal")
    return "; ".join(causes)


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
    reason: str = ""  # why EXPIRED (else "")
    selection: Selection = Selection()
    missing: tuple[bytes, ...] = ()  # selected workers that owe a reveal this board lacks (sorted)
    declines: tuple[tuple[bytes, str, str], ...] = ()  # (selected worker, reason code, detail), sorted
    cause: str = ""  # why EXPIRED, for humans (expired_cause; else "")

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def selected(self) -> frozenset[bytes]:
        return self.selection.selected


PENDING = Verdict("PENDING")


class _Memo:
    """The last verdict computed for a view (one per view: the daemon uses one policy), and the
    job's votes under that policy (`_Votes`), kept while only first reveals arrive."""

    __slots__ = ("version", "expired", "policy", "verdict", "votes")

    def __init__(
        self, version: int, expired: bool, policy: ObserverPolicy, verdict: Verdict, votes: _Votes
    ) -> None:
        self.version = version
        self.expired = expired
        self.policy = policy
        self.verdict = verdict
        self.votes = votes


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
    is a complete key. While only first reveals arrive (`JobView.base_version`
    unchanged), the job's votes are updated with the new signers' votes instead
    of recounted (`_Votes`).
    """
    offer_fact = view.offer
    if offer_fact is None:
        return PENDING
    offer: Offer = offer_fact.body  # type: ignore[assignment]
    expired = now >= offer.deadline
    cache = view.cache
    memo = cache.get(_MEMO)
    if type(memo) is _Memo and (memo.policy is policy or memo.policy == policy):
        if memo.version == view.tally_version and memo.expired == expired:
            return memo.verdict
        votes = memo.votes
        if votes.base != view.base_version:
            votes = memo.votes = _Votes(view, offer, offer_fact.signer, policy)
        if len(view.reveals) > votes.n:
            votes.update(view)
        verdict = votes.verdict(view, now, offer)
        memo.version, memo.expired, memo.verdict = view.tally_version, expired, verdict
        return verdict
    verdict, votes = _count(view, offer_fact, now, policy)
    cache[_MEMO] = _Memo(view.tally_version, expired, policy, verdict, votes)
    return verdict


def _tally(view: JobView, now: int, policy: ObserverPolicy) -> tuple[Verdict, _Votes | None]:
    """The verdict counted from scratch (no memo, no kept votes), and the votes it was counted
    from (None: no offer). `tally` does the same when it has nothing to start from."""
    offer_fact = view.offer
    if offer_fact is None:
        return PENDING, None
    return _count(view, offer_fact, now, policy)


def _count(view: JobView, offer_fact: Fact, now: int, policy: ObserverPolicy) -> tuple[Verdict, _Votes]:
    """Every vote of the job counted from empty, and the verdict at `now`."""
    offer: Offer = offer_fact.body  # type: ignore[assignment]
    votes = _Votes(view, offer, offer_fact.signer, policy)
    votes.update(view)
    return votes.verdict(view, now, offer), votes


_MEMO = "verdict"
_CHECKED = "rule5"
_NO_KEYS: frozenset[bytes] = frozenset()


class _Votes:
    """A job's votes under one observer policy: everything the verdict needs besides `now`.

    Built from the facts other than reveals (the offer, selection, commits, declines, cancels:
    `base` is the view's `base_version` then), then each revealing signer is added once, in
    arrival order (`update`: the first `n` signers of `view.reveals` are in). A signer's first
    reveal changes nothing that was derived from the other facts, and the witness rule decomposes
    by digest (a witness must be a counted vote *with the same digest*, and whether a vote is
    exempt depends only on how many candidate votes share its digest), so a new vote re-runs the
    rule for its own digest only, and the groups of the other digests are kept. A full tally is
    the same code from a new `_Votes`; any other new fact (`base_version` moves) starts one.

    Rule 5 (the reveal matches its commit) is checked once per signer and view: a signer's first
    reveal and first commit never change, so the result is kept in `view.cache` (`_CHECKED`)
    across new `_Votes` and policies."""

    __slots__ = (
        "base",
        "n",
        "sel",
        "chosen",
        "equiv",
        "declined",
        "allow",
        "trust",
        "no_copy",
        "requires",
        "quorum",
        "cancelled",
        "missing",
        "equivocators",
        "declines",
        "checked",
        "pre",
        "unseen",
        "groups",
        "groups_t",
        "ignored",
        "ignored_t",
    )

    def __init__(self, view: JobView, offer: Offer, offer_signer: bytes, policy: ObserverPolicy) -> None:
        self.base = view.base_version
        self.n = 0  # signers of view.reveals added so far (its keys, in arrival order)
        sel = self.sel = selection(view)
        chosen = self.chosen = sel.selected
        allow = self.allow = view.allowlist
        self.trust = policy.trust
        oreq = offer.require
        preq = policy.require
        requires: tuple[Require, ...]
        if oreq is None:
            requires = () if preq is None else (preq,)
        else:
            requires = (oreq,) if preq is None else (oreq, preq)
        self.requires = requires
        no_copy: frozenset[bytes] | set[bytes] = allow or _NO_KEYS
        if requires:
            no_copy = set(no_copy)
            for r in requires:
                no_copy.update(r.keys)
        self.no_copy = no_copy
        quorum = offer.quorum
        if policy.quorum is not None and policy.quorum > quorum:
            quorum = policy.quorum
        self.quorum = quorum
        # equivocation of unselected keys is their own business
        equiv = self.equiv = view.equivocators & chosen if view.equivocators else _NO_KEYS
        self.equivocators = tuple(sorted(equiv)) if equiv else ()
        # selected keys with a decline held: their votes are ignored (rule 3; declines of
        # unselected keys change nothing)
        self.declined = chosen & view.declines.keys() if view.declines else _NO_KEYS
        self.cancelled = bool(view.cancels) and any(c.signer == offer_signer for c in view.cancels)
        # selected workers whose reveal this board lacks: those that committed, and those of the
        # latest round that neither revealed nor declined (a worker dropped without a commit owes
        # nothing). A new reveal takes its signer out (`add`).
        commits = view.commits
        view_declines = view.declines
        current = sel.current_set
        reveals = view.reveals
        missing = [
            w
            for w in chosen
            if w not in reveals and (w in commits or (w in current and w not in view_declines))
        ]
        missing.sort()
        self.missing = tuple(missing)
        self.declines = (
            tuple(
                sorted(
                    (w, d.body.reason, d.body.detail)
                    for w, fs in view_declines.items()
                    if w in chosen
                    for d in fs
                    if isinstance(d.body, Decline)
                )
            )
            if view_declines
            else ()
        )
        checked = view.cache.get(_CHECKED)
        if type(checked) is not dict:
            checked = view.cache[_CHECKED] = {}
        self.checked: dict[bytes, _Vote | bool] = checked  # signer -> its rule-5 result
        self.pre: dict[bytes, dict[bytes, _Vote]] = {}  # digest -> signer -> vote passing rules 1-5
        self.unseen: dict[bytes, list[Ignored]] | None = None  # digest -> its votes the witness rule drops
        self.groups: dict[bytes, Group] = {}  # group key (digest + exit code byte) -> its group
        self.groups_t: tuple[Group, ...] | None = ()  # every group, in verdict order (None: redo)
        self.ignored: tuple[Ignored, ...] = ()  # signers ignored by rules 2-5
        self.ignored_t: tuple[Ignored, ...] | None = ()  # with those of `unseen`, by worker (None: redo)

    def update(self, view: JobView) -> None:
        """Add the signers of `view.reveals` not added yet."""
        reveals = view.reveals
        n = len(reveals)
        if n == self.n + 1:
            self.add(next(reversed(reveals)), view)  # the newest key of a dict: O(1)
        else:
            for signer in islice(reveals, self.n, None):
                self.add(signer, view)
        self.n = n

    def add(self, signer: bytes, view: JobView) -> None:
        """Rules 2-5 for one revealing signer, then the witness rule and groups of its digest."""
        if signer in self.missing:
            self.missing = tuple([w for w in self.missing if w != signer])
        if signer not in self.chosen:
            self._ignore(signer, R_NOT_SELECTED)
            return
        if signer in self.equiv:
            return
        if signer in self.declined:
            self._ignore(signer, R_DECLINED)
            return
        allow = self.allow
        if allow is not None and signer not in allow:
            self._ignore(signer, R_NOT_ALLOWED)
            return
        trust = self.trust
        if trust is not None and signer not in trust:
            self._ignore(signer, R_NOT_TRUSTED)
            return
        vote = self.checked.get(signer)
        if vote is None:
            cfs = view.commits.get(signer)
            if not cfs:
                self._ignore(signer, R_NO_COMMIT)  # not kept: the commit may come later
                return
            # rule 5: a signer's first reveal and first commit never change, nor does this
            rev: Reveal = view.reveals[signer][0].body  # type: ignore[assignment]
            com = cfs[0]
            d = rev.digest
            if _sha256(rev.salt + d + signer).digest() == com.body.hash:  # type: ignore[union-attr]  # commit_hash, inlined
                vote = (d, rev.exit_code, com.id, d + _CODE_BYTE[rev.exit_code])
            else:
                vote = _MISMATCH
            self.checked[signer] = vote
        if vote is _MISMATCH:
            self._ignore(signer, R_COMMIT_MISMATCH)
            return
        digest = vote[0]  # type: ignore[index]
        same = self.pre.get(digest)
        if same is None:  # the first vote of its digest: exempt from the witness rule
            self.pre[digest] = {signer: vote}  # type: ignore[dict-item]
            self._grow(signer, vote)  # type: ignore[arg-type]
            return
        same[signer] = vote  # type: ignore[assignment]
        unseen = self.unseen
        if unseen is None or digest not in unseen:
            # every vote of this digest held before counted: with 3 or more now, each old one is
            # still witnessed, and only the new one can lack a witness. With 2, the old one was
            # exempt (alone with its digest) and needs the new one as its witness: if it has it
            # and the new one is witnessed, both count; anything else is settled from scratch.
            seen_by = view.witnesses
            no_copy = self.no_copy
            if len(same) == 2:
                other, ov = next(iter(same.items()))
                if not (other in no_copy or signer in seen_by.get(ov[2], ())):
                    self._settle(digest, seen_by)
                    return
            if signer not in no_copy:
                for w in seen_by.get(vote[2], ()):  # type: ignore[index]
                    if w != signer and w in same:
                        break
                else:
                    if len(same) == 2:
                        self._settle(digest, seen_by)
                        return
                    if unseen is None:
                        unseen = self.unseen = {}
                    unseen[digest] = [Ignored(signer, R_NOT_SEEN)]
                    self.ignored_t = None
                    return
            self._grow(signer, vote)  # type: ignore[arg-type]
            return
        self._settle(digest, view.witnesses)

    def _grow(self, signer: bytes, vote: _Vote) -> None:
        """One more counted vote: its group gets the signer."""
        gkey = vote[3]
        groups = self.groups
        g = groups.get(gkey)
        if g is None:
            groups[gkey] = _build_group(vote[0], vote[1], (signer,))
        else:
            ws = g.workers
            groups[gkey] = _build_group(
                vote[0], vote[1], (*ws, signer) if signer > ws[-1] else tuple(sorted((*ws, signer)))
            )
        self.groups_t = None

    def _ignore(self, signer: bytes, reason: str) -> None:
        self.ignored = (*self.ignored, Ignored(signer, reason))
        self.ignored_t = None

    def _settle(self, digest: bytes, seen_by: dict[bytes, set[bytes]]) -> None:
        """The witness rule for the votes of one digest (two or more), then that digest's groups.

        The greatest set of them in which every vote that is not exempt is witnessed by another
        vote of the set (with this digest, then). Exempt: keys trusted not to copy (a vote alone
        with its digest is exempt too, but then this is not called). The rule is monotone, so
        removing unwitnessed votes until none is left gives the one greatest set."""
        votes = self.pre[digest]
        no_copy = self.no_copy
        alive = dict(votes)
        dropped: list[Ignored] = []
        changed = True
        while changed:
            changed = False
            for signer in list(alive):
                if signer in no_copy:
                    continue
                for w in seen_by.get(alive[signer][2], ()):
                    if w != signer and w in alive:
                        break
                else:
                    del alive[signer]
                    dropped.append(Ignored(signer, R_NOT_SEEN))
                    changed = True
        unseen = self.unseen
        if dropped:
            if unseen is None:
                unseen = self.unseen = {}
            unseen[digest] = dropped
            self.ignored_t = None
        elif unseen is not None and unseen.pop(digest, None) is not None:
            self.ignored_t = None
        groups = self.groups
        for v in votes.values():
            groups.pop(v[3], None)
        by_key: dict[bytes, list[bytes]] = {}
        for signer, v in alive.items():
            ws = by_key.get(v[3])
            if ws is None:
                by_key[v[3]] = [signer]
            else:
                ws.append(signer)
        for gkey, ws in by_key.items():
            if len(ws) > 1:
                ws.sort()
            groups[gkey] = _build_group(digest, alive[ws[0]][1], tuple(ws))
        self.groups_t = None

    def verdict(self, view: JobView, now: int, offer: Offer) -> Verdict:
        """The verdict from these votes at `now`."""
        groups = self.groups_t
        if groups is None:
            made = list(self.groups.values())
            if len(made) > 1:
                made.sort(key=_group_order)
            groups = self.groups_t = tuple(made)
        ignored = self.ignored_t
        if ignored is None:
            all_ignored = list(self.ignored)
            if self.unseen is not None:
                for gone in self.unseen.values():
                    all_ignored += gone
            if len(all_ignored) > 1:
                all_ignored.sort(key=_worker_of)
            ignored = self.ignored_t = tuple(all_ignored)
        quorum = self.quorum
        requires = self.requires
        sel = self.sel
        state: State = "PENDING"
        digest: bytes | None = None
        code: int | None = None
        dissenters: tuple[bytes, ...] = ()
        why = cause = ""
        if self.cancelled:
            state = "CANCELLED"
        else:
            win: Group | None = None
            for g in groups:  # sorted by size, largest first
                if len(g.workers) < quorum:
                    break
                if requires and not _satisfies(g.workers, requires):
                    continue
                if win is not None:
                    state = "DISPUTED"
                    break
                win = g
            if state == "DISPUTED":
                pass
            elif win is not None:
                if len(groups) > 1:
                    dissenters = tuple(sorted([w for g in groups if g is not win for w in g.workers]))
                state = "REPRODUCED" if win.exit_code == 0 else "FAILED"
                digest, code = win.digest, win.exit_code
            elif (
                not requires
                and not any(len(g.workers) >= quorum for g in groups)
                and _counted(groups) >= max(offer.replicas, quorum)
            ):
                state = "DISPUTED"
            elif now >= offer.deadline:
                state = "EXPIRED"
                why = X_NO_SELECTION if not sel.rounds else X_NO_QUORUM
                cause = expired_cause(view, sel, len(self.missing))
        return _build_verdict(
            state,
            digest,
            code,
            groups,
            dissenters,
            self.equivocators,
            ignored,
            why,
            sel,
            self.missing,
            self.declines,
            cause,
        )


def _counted(groups: tuple[Group, ...]) -> int:
    return sum(len(g.workers) for g in groups)


# a reveal that matches its commit: (digest, exit code, commit id, group key = digest + exit code byte)
_Vote = tuple[bytes, int, bytes, bytes]
_CODE_BYTE = [bytes((c,)) for c in range(256)]  # exit codes are 0..255
_MISMATCH = False  # a rule-5 failure (a reveal that does not match its commit)
_build_verdict = builder(Verdict)
_build_group = builder(Group)


def _worker_of(i: Ignored) -> bytes:
    return i.worker


def _group_order(g: Group) -> tuple[int, bytes, int]:
    return (-len(g.workers), g.digest, g.exit_code)


MAX_WORKER_ROWS = 256  # rows of `workers` in a verdict object (selected keys first)


def worker_rows(view: JobView, verdict: Verdict) -> list[dict[str, Any]]:
    """Per worker, what this node's facts say it did (docs/protocol.md section 6, `workers`).

    `phase`, first match: `revealed`, `timed_out` (declined with reason `timeout`), `declined`,
    `committed`, `selected` (named by the latest round: building, as far as facts tell),
    `dropped` (named by an earlier round only), `claimed`. `reason`/`detail` are the decline's."""
    sel = verdict.selection
    current = frozenset(sel.current)
    chosen = sel.selected
    declines: dict[bytes, Decline] = {}
    for w, fs in view.declines.items():
        ds = sorted((f for f in fs if isinstance(f.body, Decline)), key=lambda f: f.id)
        if ds:
            declines[w] = ds[0].body  # type: ignore[assignment]
    keys = set(chosen) | set(view.commits) | set(view.reveals) | set(declines) | set(view.claims)
    ordered = sorted(keys, key=lambda k: (k not in chosen, k))[:MAX_WORKER_ROWS]
    rows: list[dict[str, Any]] = []
    for k in sorted(ordered):
        d = declines.get(k)
        if k in view.reveals:
            phase = "revealed"  # what it did: a decline signed as well voids the vote (rule 3), not this row
        elif d is not None:
            phase = "timed_out" if d.reason == "timeout" else "declined"
        elif k in view.commits:
            phase = "committed"
        elif k in current:
            phase = "selected"
        elif k in chosen:
            phase = "dropped"
        else:
            phase = "claimed"
        rows.append(
            {
                "worker": peer_id_of(k),
                "phase": phase,
                "selected": k in chosen,
                "reason": None if d is None else d.reason,
                "detail": None if d is None else d.detail,
                "log": None if d is None or d.log is None else d.log.sha256.hex(),
            }
        )
    return rows


def deadlines(offer: Offer) -> dict[str, int]:
    """The job's deadlines (ms): end of the claim window, reveal deadline, offer deadline."""
    return {
        "claim_window_end": offer.created + offer.claim_window,
        "reveal": reveal_deadline(offer),
        "offer": offer.deadline,
    }


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
        "reason": verdict.reason or None,
        "rounds": [
            {
                "round": r.round,
                "select": r.fact_id.hex(),
                "created": r.created,
                "workers": [peer_id_of(w) for w in r.workers],
            }
            for r in verdict.selection.rounds
        ],
        "ignored_selects": [
            {"select": b.fact_id.hex(), "round": b.round, "signer": peer_id_of(b.signer), "reason": b.reason}
            for b in verdict.selection.ignored
        ],
        "missing": [peer_id_of(w) for w in verdict.missing],
        "declines": [{"worker": peer_id_of(w), "reason": r, "detail": d} for w, r, d in verdict.declines],
        "cause": verdict.cause or None,
        "workers": worker_rows(view, verdict),
        "created": None if offer is None else offer.created,
        "deadlines": None if offer is None else deadlines(offer),
        "provenance": None if offer is None else provenance_json(offer),
    }


def provenance_json(offer: Offer) -> dict[str, Any]:
    """What a verdict is about, from the signed offer: the source, the git commit and tree it
    was packed from (when the publisher states them), the image and its recipe, the command,
    env, SOURCE_DATE_EPOCH and pinned inputs. Hashes as hex; peer text as it was signed."""
    return {
        "source_sha256": offer.source.sha256.hex(),
        "source_size": offer.source.size,
        "commit": offer.provenance.commit,
        "tree": offer.provenance.tree,
        "image": offer.image.id,
        "image_recipe": offer.provenance.recipe,
        "command": list(offer.command),
        "env": dict(offer.env),
        "source_date_epoch": offer.source_date_epoch,
        "inputs_sha256": None if offer.inputs is None else offer.inputs.sha256.hex(),
        "inputs_size": None if offer.inputs is None else offer.inputs.size,
    }
