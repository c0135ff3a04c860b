"""Who builds a job, and so who votes (protocol v2, docs/protocol.md section 5).

The publisher commits to a secret 32-byte `seed` in its offer
(`select_commit = sha256(seed)`) and, once the claim window is over, signs a
`select` fact that reveals the seed, lists the claim fact ids it considered
and names the workers. Every observer recomputes the workers:

    rank(seed, J, W) = sha256(seed || J || W)     (bytes compared lexicographically)

* *eligible*: the signer of a listed claim of this job that is in the offer's
  allowlist (if it has one) and whose claim carries an identity nonce of at
  least `offer.identity_bits` (p2pci.core.identity);
* `require` keys that are eligible are always selected, on top of the ranked
  slots;
* round 0: the ranked workers are the `replicas` lowest-ranked eligible
  non-require keys;
* round r > 0 (replacing squatters, decliners and equivocators): `claims` is a superset of
  round r-1's; the publisher may drop ranked workers of round r-1 (a dropped key
  is never selected again in this job); the ranked workers it keeps stay, and
  the free places go to the lowest-ranked eligible keys that were not ranked in
  round r-1 and never dropped.

Rounds must be consecutive from 0. A `select` not signed by the offer's signer is
ignored and reported and changes nothing else (it never ends the chain: anyone could).
A publisher's select whose seed does not match, that lists a claim this board does
not hold (yet), or whose workers differ from the recomputed ones is *ignored and
reported*, and so is every later round (the chain stops there). Two different
selects of the same round by the publisher stop the chain at that round. With
several faults the reason is that of the first failing check, in the order of
docs/protocol.md section 5: earlier round, two selects, seed, created, unknown claim,
previous claims, not eligible, require, workers (`_selection`, then `_check`).
A key with several listed claims is eligible when any one of them shows enough
identity work (`eligible_keys`).

A worker is *selected* when any valid round names it: only selected workers
vote (p2pci.core.tally). A worker builds only while the *latest* valid round
names it. Leases: a selected worker's lease ends at
`min(max lease_until of its claims, created of the round that first selected it + lease_cap(offer), deadline)`
with `lease_cap = 2 * claim_window + timeout_s * 1000`: a claim cannot keep a
place longer, whatever it says.

The seed is unknown to everyone but the publisher until the first `select`, so
keys made after the offer was seen rank no better than keys made before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from p2pci.core.board import MAX_CLAIMANTS, claim_tier
from p2pci.core.identity import identity_bits
from p2pci.core.messages import MAX_SELECT_CLAIMS, Claim, Offer, Select

if TYPE_CHECKING:
    from p2pci.core.board import JobView
    from p2pci.core.signing import Fact

# new keys a round lists at most (the publisher's listing rule, `claims_to_list`): the claimant
# cap's 256 (docs/protocol.md 4.8), a quarter of what a select lists, so round 0 leaves room for
# at least three more rounds of newcomers
MAX_LIST_PER_ROUND = MAX_CLAIMANTS

# Reasons a select is ignored (stable strings: tests and the CLI show them).
S_NOT_PUBLISHER = "not signed by the offer's publisher"
S_SEED = "seed does not match the offer's select_commit"
S_UNKNOWN_CLAIM = "lists a claim this node does not hold (yet)"
S_DROPS_CLAIMS = "does not list every claim of the previous round"
S_WORKERS = "workers are not the lowest-ranked eligible listed claimants"
S_REQUIRE = "leaves out an eligible listed require key"
S_NOT_ELIGIBLE = "selects a key that is not an eligible listed claimant"
S_CREATED = "created is before the offer's or the previous round's, or at or after the deadline"
S_TWO = "the publisher signed two different selects for this round"
S_GAP = "an earlier round is missing, invalid or equivocal"


def selection_rank(seed: bytes, job: bytes, worker: bytes) -> bytes:
    """sha256(seed || job || worker): lower is better."""
    return hashlib.sha256(seed + job + worker).digest()


def lease_cap(offer: Offer) -> int:
    """The longest a selected worker keeps its place without committing, in ms."""
    return 2 * offer.claim_window + offer.limits.timeout_s * 1000


@dataclass(frozen=True, slots=True)
class Round:
    round: int
    fact_id: bytes
    created: int
    workers: tuple[bytes, ...]  # sorted by key bytes (as on the wire)
    ranked: frozenset[bytes]  # workers that hold a ranked place (not require keys)
    claims: frozenset[bytes]  # claim fact ids listed
    excluded: frozenset[bytes]  # ranked workers dropped in this or an earlier round


@dataclass(frozen=True, slots=True)
class BadSelect:
    fact_id: bytes
    round: int
    signer: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    """The valid selection rounds of a job (a pure function of its facts)."""

    rounds: tuple[Round, ...] = ()
    ignored: tuple[BadSelect, ...] = ()
    seed: bytes | None = None
    # derived from `rounds` once (the tally reads them on every new fact): not compared
    _selected: frozenset[bytes] = field(init=False, repr=False, compare=False, default=frozenset())
    _current: frozenset[bytes] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        out: set[bytes] = set()
        for r in self.rounds:
            out.update(r.workers)
        object.__setattr__(self, "_selected", frozenset(out))
        object.__setattr__(self, "_current", frozenset(self.current))

    @property
    def current(self) -> tuple[bytes, ...]:
        """The workers of the latest valid round (empty before the first)."""
        return self.rounds[-1].workers if self.rounds else ()

    @property
    def current_set(self) -> frozenset[bytes]:
        """`current` as a set."""
        return self._current

    @property
    def selected(self) -> frozenset[bytes]:
        """Every worker some valid round named: these, and only these, vote."""
        return self._selected

    def first_round_of(self, worker: bytes) -> Round | None:
        for r in self.rounds:
            if worker in r.workers:
                return r
        return None


NO_SELECTION = Selection()


def eligible_keys(view: JobView, offer: Offer, claim_ids: frozenset[bytes] | set[bytes]) -> set[bytes]:
    """Signers of the given claims of this job that are allowed and show enough identity work."""
    allow = view.allowlist
    bits = offer.identity_bits
    out: set[bytes] = set()
    for cid in claim_ids:
        f = view.claim_ids.get(cid)
        if f is None or f.signer in out:
            continue
        body = f.body
        assert isinstance(body, Claim)
        if allow is not None and f.signer not in allow:
            continue
        if bits and identity_bits(f.signer, body.identity) < bits:
            continue
        out.add(f.signer)
    return out


def _require_keys(offer: Offer) -> frozenset[bytes]:
    return frozenset() if offer.require is None else frozenset(offer.require.keys)


def compute_workers(
    view: JobView,
    offer: Offer,
    seed: bytes,
    claims: frozenset[bytes] | set[bytes],
    prev: Round | None,
    drop: frozenset[bytes] | set[bytes] = frozenset(),
) -> tuple[tuple[bytes, ...], frozenset[bytes], frozenset[bytes]]:
    """(workers sorted by key, ranked, excluded) of the round listing `claims` after `prev`,
    dropping `drop` (ranked workers of `prev`). The one rule both the publisher and every
    observer apply."""
    elig = eligible_keys(view, offer, claims)
    req = _require_keys(offer)
    pool = elig - req
    job = view.job
    if prev is None:
        ranked: set[bytes] | frozenset[bytes] = set(
            sorted(pool, key=lambda w: selection_rank(seed, job, w))[: offer.replicas]
        )
        excluded: frozenset[bytes] = frozenset()
    else:
        dropped = prev.ranked & set(drop)
        excluded = prev.excluded | dropped
        kept = prev.ranked - dropped
        free = offer.replicas - len(kept)
        avail = sorted(pool - prev.ranked - excluded, key=lambda w: selection_rank(seed, job, w))
        ranked = kept | set(avail[: max(free, 0)])
    workers = tuple(sorted(ranked | (elig & req)))
    return workers, frozenset(ranked), excluded


def _check(view: JobView, offer: Offer, fact: Fact, prev: Round | None) -> Round | str:
    sel = fact.body
    assert isinstance(sel, Select)
    if hashlib.sha256(sel.seed).digest() != offer.select_commit:
        return S_SEED
    if not offer.created <= sel.created < offer.deadline or (prev is not None and sel.created < prev.created):
        return S_CREATED
    claims = frozenset(sel.claims)
    for cid in claims:
        if cid not in view.claim_ids:
            return S_UNKNOWN_CLAIM
    if prev is not None and not prev.claims <= claims:
        return S_DROPS_CLAIMS
    elig = eligible_keys(view, offer, claims)
    w = frozenset(sel.workers)
    if not w <= elig:
        return S_NOT_ELIGIBLE
    req = _require_keys(offer)
    if not (elig & req) <= w:
        return S_REQUIRE
    drop = frozenset() if prev is None else prev.ranked - w
    workers, ranked, excluded = compute_workers(view, offer, sel.seed, claims, prev, drop)
    if workers != sel.workers:
        return S_WORKERS
    return Round(sel.round, fact.id, sel.created, workers, ranked, claims, excluded)


_SEL_KEY = "selection"


def selection(view: JobView) -> Selection:
    """The job's valid selection rounds and the ignored selects (memoised on the view)."""
    # a selection depends on the offer, the claims and the selects only: a reveal or commit
    # (the bulk of a job's facts) does not recompute it. One entry per view, replaced.
    hit = view.cache.get(_SEL_KEY)
    if isinstance(hit, tuple) and hit[0] == view.select_version:
        return hit[1]  # type: ignore[no-any-return]
    result = _selection(view)
    view.cache[_SEL_KEY] = (view.select_version, result)
    return result


def _selection(view: JobView) -> Selection:
    offer_fact = view.offer
    if offer_fact is None or not view.selects:
        return NO_SELECTION
    offer = offer_fact.body
    assert isinstance(offer, Offer)
    publisher = offer_fact.signer
    rounds: list[Round] = []
    ignored: list[BadSelect] = []
    broken = False
    for r in sorted(view.selects):
        facts = sorted(view.selects[r], key=lambda f: f.id)
        mine = [f for f in facts if f.signer == publisher]
        for f in facts:
            if f.signer != publisher:
                ignored.append(BadSelect(f.id, r, f.signer, S_NOT_PUBLISHER))
        if not mine:
            continue
        if broken or r != len(rounds):
            broken = True
            ignored.extend(BadSelect(f.id, r, f.signer, S_GAP) for f in mine)
            continue
        if len(mine) > 1:
            broken = True
            ignored.extend(BadSelect(f.id, r, f.signer, S_TWO) for f in mine)
            continue
        res = _check(view, offer, mine[0], rounds[-1] if rounds else None)
        if isinstance(res, str):
            broken = True
            ignored.append(BadSelect(mine[0].id, r, publisher, res))
            continue
        rounds.append(res)
    seed = None
    for f in view.selects.get(0, ()):
        if rounds and f.id == rounds[0].fact_id and isinstance(f.body, Select):
            seed = f.body.seed
    ignored.sort(key=lambda b: (b.round, b.fact_id))
    return Selection(tuple(rounds), tuple(ignored), seed)


# --------------------------------------------------------------------------
# leases and the publisher's next round


def lease_end(view: JobView, sel: Selection, worker: bytes) -> int | None:
    """When a selected worker's place ends if it has not committed (None: not selected)."""
    offer = view.offer_msg
    first = sel.first_round_of(worker)
    if offer is None or first is None:
        return None
    leases = [c.body.lease_until for c in view.claims.get(worker, ()) if isinstance(c.body, Claim)]
    end = min(first.created + lease_cap(offer), offer.deadline)
    return min(max(leases), end) if leases else end


def due_replacements(view: JobView, now: int) -> frozenset[bytes]:
    """Ranked workers of the latest round that declined, equivocated (two distinct commits or
    reveals held: its votes are dropped, docs/protocol.md section 6, so its place would hold no
    vote for good), or did not commit by their lease end."""
    sel = selection(view)
    if not sel.rounds:
        return frozenset()
    out = set()
    equivocators = view.equivocators
    for w in sel.rounds[-1].ranked:
        if w in view.declines or w in equivocators:
            out.add(w)
        elif w not in view.commits:
            end = lease_end(view, sel, w)
            if end is not None and now >= end:
                out.add(w)
    return frozenset(out)


def _live_claims(view: JobView, now: int | None) -> dict[bytes, bytes]:
    """signer -> the claim id the publisher would list for it: one per eligible key with a claim
    live at `now` (`lease_until > now`; any claim when `now` is None), its lowest fact id."""
    offer = view.offer_msg
    if offer is None:
        return {}
    best: dict[bytes, bytes] = {}
    allow = view.allowlist
    bits = offer.identity_bits
    claim_ids = view.claim_ids
    for cid in sorted(claim_ids):
        f = claim_ids[cid]
        body = f.body
        assert isinstance(body, Claim)
        if now is not None and body.lease_until <= now:
            continue
        signer = f.signer
        # eligible_keys of this one claim, inline (the publisher lists claims on every tick)
        if signer in best or (allow is not None and signer not in allow):
            continue
        if bits and identity_bits(signer, body.identity) < bits:
            continue
        best[signer] = cid
    return best


def eligible_claim_ids(view: JobView, now: int | None = None) -> frozenset[bytes]:
    """One claim per eligible key (its eligible claim with the lowest fact id), all of them.

    `now`: only keys with a claim still live at `now` (`lease_until > now`); that claim is
    taken. A key whose lease lapsed (a worker that left, or stopped waiting) would be selected
    only to be replaced at the next tick. Which of these a round lists is `claims_to_list`."""
    return frozenset(_live_claims(view, now).values())


def list_order(view: JobView, seed: bytes, signer: bytes, claim_id: bytes) -> tuple[bool, int, bytes]:
    """The publisher's order for listing a key's claim (lower first): `require` keys, then
    stronger identity proofs (capped at MAX_TIER, as the claimant cap of docs/protocol.md 4.8),
    then the selection rank under the seed (secret until round 0)."""
    offer = view.offer_msg
    assert offer is not None
    body = view.claim_ids[claim_id].body
    assert isinstance(body, Claim)
    return (
        offer.require is None or signer not in offer.require.keys,
        -claim_tier(signer, body),
        selection_rank(seed, view.job, signer),
    )


def claims_to_list(view: JobView, seed: bytes, now: int, prev: Round | None) -> frozenset[bytes]:
    """The claims the publisher's next round lists: every claim of `prev`, plus new keys.

    New keys are those with an eligible claim live at `now` (one claim each, `eligible_claim_ids`)
    that are not already eligible through a claim `prev` lists (another claim of such a key would
    change nothing). At most MAX_LIST_PER_ROUND of them per round, and MAX_SELECT_CLAIMS claims
    in all, in `list_order`: `require` keys first, then the strongest identity proofs, ties by
    `selection_rank` under the seed. So junk keys cannot fill the list before stronger keys claim
    (they push out only keys no stronger than themselves, and only 256 at a time), a round leaves
    room for later rounds, and which of equally strong keys are listed cannot be aimed at before
    round 0 reveals the seed (unlike fact ids, which the signer of a claim chooses by varying it).
    This is the publisher's own choice: observers check rounds, not which claims were listed."""
    offer = view.offer_msg
    if offer is None:
        return frozenset()
    listed = prev.claims if prev is not None else frozenset()
    room = min(MAX_LIST_PER_ROUND, MAX_SELECT_CLAIMS - len(listed))
    if room <= 0:
        return listed
    done = eligible_keys(view, offer, listed) if listed else set()
    new = [(s, c) for s, c in _live_claims(view, now).items() if s not in done]
    if len(new) > room:
        new.sort(key=lambda sc: list_order(view, seed, sc[0], sc[1]))
        new = new[:room]
    return listed | frozenset(c for _, c in new)


def next_select(view: JobView, seed: bytes, now: int, *, close: bool) -> Select | None:
    """The publisher's next `select` body, or None when no round is due.

    `close`: the claim window is over (or closed early by the caller). Round 0 is
    made once `close` is true and at least one eligible claim is in. A later round is made when a ranked worker is due for
    replacement (`due_replacements`) or places are free and new eligible claims are in.
    The caller signs it, adds it to its board and gossips it.
    """
    offer = view.offer_msg
    if offer is None or hashlib.sha256(seed).digest() != offer.select_commit or now >= offer.deadline:
        return None
    sel = selection(view)
    prev = sel.rounds[-1] if sel.rounds else None
    if prev is None:
        if not close or sel.ignored:
            return None
        claims = claims_to_list(view, seed, now, None)
        if not claims:
            return None  # an empty round 0 would only delay: wait for the first eligible claim
        workers, _, _ = compute_workers(view, offer, seed, claims, None)
        return Select(view.job, 0, seed, max(now, offer.created), tuple(sorted(claims)), workers)
    claims = claims_to_list(view, seed, now, prev)
    drop = due_replacements(view, now)
    workers, ranked, _ = compute_workers(view, offer, seed, claims, prev, drop)
    if workers == prev.workers and not drop:
        return None
    if prev.round >= 255:
        return None
    return Select(view.job, prev.round + 1, seed, max(now, prev.created), tuple(sorted(claims)), workers)


def round_pending(view: JobView, now: int) -> bool:
    """Would the publisher's next round, as anyone can compute it from the facts held, name a
    worker that the latest round does not? (The reveal rule, docs/protocol.md section 5.)

    Once round 0 is out its seed is public, so every observer can run `next_select` exactly as
    the publisher does: a round that adds a worker is due when the latest round has free ranked
    places and an eligible live claim of a key that was never ranked or dropped is held. A worker
    waits for such a round (and for the new worker's commit) before revealing, so that the new
    worker's commit is in its `seen` list: a worker selected after the reveals could never be
    witnessed (it might have copied a revealed digest), and its vote would never count. False
    before round 0 and when no added worker is due (drops of non-committers alone do not count:
    the reveal rule already waits for every worker of the latest round)."""
    sel = selection(view)
    if not sel.rounds or sel.seed is None:
        return False
    body = next_select(view, sel.seed, now, close=True)
    return body is not None and bool(set(body.workers) - set(sel.rounds[-1].workers))


def place_may_fill(view: JobView, now: int) -> bool:
    """Could a later round of the publisher's rule still give a ranked place to a worker that the
    latest round does not name, whatever claims arrive from now on? (The reveal rule's hold after
    an early reveal of another digest, docs/protocol.md section 5 step 5.)

    True before round 0. After it, a place is *open* when fewer than `replicas` ranked workers of
    the latest round have committed without declining or equivocating (`next_select` drops a
    decliner and an equivocator at once and a worker without a commit at its lease end; it never
    drops a committed worker that did neither). An open place can be filled by a key that was
    never ranked nor dropped and holds no `require` place (those are on top of the ranked ones):
    any new key, or with an allowlist one of its other keys. False at or after the offer's
    deadline and once round 255 is out (no select can come). A decline or second commit not held
    yet does not count: a worker that committed and will decline or equivocate chooses when, so
    a hold could not outwait it. (Once a round lists `MAX_SELECT_CLAIMS` claims only those keys
    can fill a place; not checked: True then errs on the side of the hold.)
    """
    offer = view.offer_msg
    if offer is None or now >= offer.deadline:
        return False
    sel = selection(view)
    if not sel.rounds:
        return True
    last = sel.rounds[-1]
    if last.round >= 255:
        return False
    equivocators = view.equivocators
    held = sum(1 for w in last.ranked if w in view.commits and w not in view.declines and w not in equivocators)
    if held >= offer.replicas:
        return False
    taken = last.ranked | last.excluded | _require_keys(offer)
    allow = view.allowlist
    return allow is None or bool(allow - taken)


def select_wakeup(view: JobView, now: int, close_at: int) -> int | None:
    """When the publisher should call `next_select` again at the latest (facts arriving also
    call for it): the window's end `close_at` before round 0, then the lease ends of the
    ranked workers of the latest round that have not committed. None: nothing to wait for
    (only a new fact can make a round due). Never `now` unless a round is due now."""
    offer = view.offer_msg
    if offer is None or now >= offer.deadline:
        return None
    sel = selection(view)
    if not sel.rounds:
        if sel.ignored:
            return None
        if now >= close_at and not eligible_claim_ids(view, now):
            # round 0 is due but nobody eligible claimed yet: nothing to do until a claim
            # arrives (a new fact calls `next_select` again). A wake-up at `now` here would
            # be a hot loop that starves the driver (every eligible worker may be busy).
            return None
        return max(close_at, now)
    if sel.rounds[-1].round >= 255:
        return None  # no further round is possible (`next_select`)
    times = []
    for w in sel.rounds[-1].ranked:
        if w not in view.commits and w not in view.declines:
            end = lease_end(view, sel, w)
            if end is not None:
                times.append(max(end, now))
    return min(times) if times else None


# --------------------------------------------------------------------------
# compatibility with the v1 worker machine (core/worker.py) until it moves to the calls above


def live_claimants(view: JobView, now: int) -> dict[bytes, int]:
    """worker -> lease_until of every allowed claimant whose lease is live at `now`."""
    out: dict[bytes, int] = {}
    offer = view.offer_msg
    if offer is None:
        return out
    allow = view.allowlist
    deadline = offer.deadline
    for worker, claims in view.claims.items():
        if allow is not None and worker not in allow:
            continue
        lease = min(max(c.body.lease_until for c in claims if isinstance(c.body, Claim)), deadline)
        if lease > now:
            out[worker] = lease
    return out


def rank(job: bytes, worker: bytes) -> bytes:
    """The v1 rank sha256(job || worker), kept only for the v1 worker machine's claim decision
    (with `candidates` empty it never changes that decision). Not the selection order."""
    return hashlib.sha256(job + worker).digest()


def candidates(view: JobView, now: int) -> list[bytes]:
    """v2: nobody can rank claimants before the publisher reveals its seed, so no claimant is
    known to be ahead of another: every eligible worker may claim. Always empty."""
    return []


def selected(view: JobView, now: int) -> list[bytes]:
    """The workers of the latest valid `select` round (empty before it): who should build now."""
    return list(selection(view).current)


def is_selected(view: JobView, now: int, worker: bytes) -> bool:
    return worker in selection(view).current
