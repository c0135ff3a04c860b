"""The tally as it was before the issue-17 rewrite (main at efbd178, `p2pci.core.tally._tally`),
kept as an oracle: `test_tally_reference.py` checks that the rewritten tally gives the same
verdict for every job and policy. Changed since: the cache key (its own entries on the view), and
the decline rule (a selected key with a decline held has its votes ignored, `R_DECLINED`), added
to both."""

# ruff: noqa

from __future__ import annotations

from p2pci.core.board import JobView
from p2pci.core.messages import Decline, Offer, Require, Reveal
from p2pci.core.selection import selection
from p2pci.core.signing import commit_hash
from p2pci.core.tally import (
    PENDING,
    R_COMMIT_MISMATCH,
    R_DECLINED,
    R_NO_COMMIT,
    R_NOT_ALLOWED,
    R_NOT_SEEN,
    R_NOT_SELECTED,
    R_NOT_TRUSTED,
    X_NO_QUORUM,
    X_NO_SELECTION,
    Group,
    Ignored,
    ObserverPolicy,
    State,
    Verdict,
    _group_order,
    _satisfies,
    _worker_of,
    expired_cause,
)

_NO_KEYS: frozenset[bytes] = frozenset()


def reference_tally(view: JobView, now: int, policy: ObserverPolicy) -> Verdict:
    offer_fact = view.offer
    if offer_fact is None:
        return PENDING
    offer = offer_fact.body
    assert isinstance(offer, Offer)
    sel = selection(view)
    chosen = sel.selected
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
    equiv = view.equivocators & chosen  # equivocation of unselected keys is their own business
    seen_by = view.witnesses
    cache = view.cache

    ignored: list[Ignored] = []
    # signer -> (digest, exit_code, commit id) of the votes that pass rules 1-5
    cands: dict[bytes, tuple[bytes, int, bytes]] = {}
    for signer in sorted(reveals):
        if signer not in chosen:
            ignored.append(Ignored(signer, R_NOT_SELECTED))
            continue
        if signer in equiv:
            continue
        if signer in view.declines:  # a selected key that declined its place (the decline rule)
            ignored.append(Ignored(signer, R_DECLINED))
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
        key = b"reference" + rev_fact.id + com.id  # its own cache entries
        match = cache.get(key)
        if match is None:
            match = cache[key] = commit_hash(rev.salt, rev.digest, signer) == com.body.hash  # type: ignore[union-attr]
        if not match:
            ignored.append(Ignored(signer, R_COMMIT_MISMATCH))
            continue
        cands[signer] = (rev.digest, rev.exit_code, com.id)

    # witness rule: the greatest set of votes in which every vote that is not exempt is witnessed
    # by another vote of the set with the same digest. Exempt: keys trusted not to copy, and a vote
    # whose digest no other candidate vote has (nobody revealed that digest: there was nothing to
    # copy). The rule is monotone, so removing unwitnessed votes until none is left gives the one
    # greatest set, whatever the order.
    per_digest: dict[bytes, int] = {}
    for digest, _, _ in cands.values():
        per_digest[digest] = per_digest.get(digest, 0) + 1
    # nothing to check unless some vote shares its digest with another and is not exempt
    changed = any(per_digest[c[0]] > 1 and s not in no_copy for s, c in cands.items())
    while changed:
        changed = False
        for signer in sorted(cands):
            digest, _, cid = cands[signer]
            if signer in no_copy or per_digest[digest] == 1:
                continue
            ok = False
            for w in seen_by.get(cid, ()):
                if w != signer:
                    other = cands.get(w)
                    if other is not None and other[0] == digest:
                        ok = True
                        break
            if not ok:
                del cands[signer]
                ignored.append(Ignored(signer, R_NOT_SEEN))
                changed = True

    votes: dict[tuple[bytes, int], list[bytes]] = {}
    for signer in sorted(cands):
        digest, code, _ = cands[signer]
        votes.setdefault((digest, code), []).append(signer)
    counted = len(cands)

    groups: tuple[Group, ...]
    if len(votes) == 1:
        for (d, e), ws in votes.items():
            groups = (Group(d, e, tuple(ws)),)
    elif votes:
        groups = tuple(sorted([Group(d, e, tuple(ws)) for (d, e), ws in votes.items()], key=_group_order))
    else:
        groups = ()
    equivocators = tuple(sorted(equiv)) if equiv else ()
    if len(ignored) > 1:
        ignored.sort(key=_worker_of)
    ignored_t = tuple(ignored) if ignored else ()
    # selected workers whose reveal this node lacks: those that committed, and those of the latest
    # round that neither revealed nor declined (a worker dropped without a commit owes nothing)
    current = sel.current_set
    view_declines = view.declines
    missing_l = [
        w
        for w in chosen
        if w not in reveals and (w in commits or (w in current and w not in view_declines))
    ]
    missing = tuple(sorted(missing_l)) if missing_l else ()
    declines = (
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

    def out(
        state: State,
        digest: bytes | None = None,
        code: int | None = None,
        dis: tuple[bytes, ...] = (),
        why: str = "",
        cause: str = "",
    ) -> Verdict:
        return Verdict(state, digest, code, groups, dis, equivocators, ignored_t, why, sel, missing, declines, cause)

    if view.cancels and any(c.signer == offer_fact.signer for c in view.cancels):
        return out("CANCELLED")
    win: Group | None = None
    for g in groups:  # sorted by size, largest first
        if len(g.workers) < quorum:
            break
        if requires and not _satisfies(g.workers, requires):
            continue
        if win is not None:
            return out("DISPUTED")
        win = g
    if win is not None:
        dissenters = tuple(sorted([w for g in groups if g is not win for w in g.workers]))
        state: State = "REPRODUCED" if win.exit_code == 0 else "FAILED"
        return out(state, win.digest, win.exit_code, dissenters)
    if not requires and not any(len(g.workers) >= quorum for g in groups):
        if counted >= offer.replicas and counted >= quorum:
            return out("DISPUTED")
    if now >= offer.deadline:
        why = X_NO_SELECTION if not sel.rounds else X_NO_QUORUM
        return out("EXPIRED", why=why, cause=expired_cause(view, sel, len(missing)))
    return out("PENDING")
