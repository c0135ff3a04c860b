"""The job board: the grow-only set of verified facts, indexed per job.

`Board.add(raw, now)` is the door for bytes from the network: duplicates are
recognised by fact id before any signature work, bad envelopes are rejected
with the reason (and counted), new facts are indexed into their job's
`JobView`. Facts that arrive before their offer are kept, so the state after
a set of facts does not depend on the order they arrived in.

Per-job indexes (by signer, commit ids, `version`) are kept up to date on
every add so that `tally` and `selection` never re-verify or re-scan.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal

from p2pci.core.errors import ProtocolError
from p2pci.core.frozen import builder
from p2pci.core.identity import identity_bits
from p2pci.core.messages import Claim, Offer, Reveal, Select
from p2pci.core.signing import MAX_ENVELOPE, Fact, commit_hash, open_envelope

AddStatus = Literal["new", "duplicate", "rejected"]

# identity strengths above this count as this in the claimant cap (an offer demands at most 40)
MAX_TIER = 40


def claim_tier(signer: bytes, claim: Claim) -> int:
    """The identity strength a claim shows, capped at MAX_TIER (the claimant cap's tier)."""
    return min(identity_bits(signer, claim.identity), MAX_TIER)


@dataclass(frozen=True, slots=True)
class AddResult:
    status: AddStatus
    fact: Fact | None
    reason: str = ""


_new_result = builder(AddResult)


@dataclass(eq=False)
class JobView:
    """Everything the board holds about one job (keyed by signer key)."""

    job: bytes
    offer: Fact | None = None
    claims: dict[bytes, list[Fact]] = field(default_factory=dict)
    commits: dict[bytes, list[Fact]] = field(default_factory=dict)
    reveals: dict[bytes, list[Fact]] = field(default_factory=dict)
    cancels: list[Fact] = field(default_factory=list)
    # selection rounds (any signer; only the offer's signer's count): round -> facts
    selects: dict[int, list[Fact]] = field(default_factory=dict)
    declines: dict[bytes, list[Fact]] = field(default_factory=dict)
    # claim fact id -> claim fact (a `select` lists claims by id)
    claim_ids: dict[bytes, Fact] = field(default_factory=dict)
    # commit fact id -> commit fact (for the `seen` rule)
    commit_ids: dict[bytes, Fact] = field(default_factory=dict)
    # commit fact id -> signers of reveals whose `seen` lists it (the tally's witness rule)
    witnesses: dict[bytes, set[bytes]] = field(default_factory=dict)
    # signers with two or more distinct commits or reveals for this job
    equivocators: set[bytes] = field(default_factory=set)
    # every fact id of this job
    ids: set[bytes] = field(default_factory=set)
    # claimant keys per identity strength tier: [t] = keys whose first claim held shows strength t
    # (capped at MAX_TIER); the claimant cap of admission counts the keys at least as strong
    claimant_tiers: list[int] = field(default_factory=lambda: [0] * (MAX_TIER + 1))
    # how many commit ids were held when the first reveal of the job arrived (None: no reveal
    # yet), and per result digest when the first reveal of that digest arrived: `commit_ids` only
    # grows, in arrival order, so its first n keys are the ids held then (a count, not a copy).
    # Arrival-order dependent, used only for this node's own `seen` list
    seen_at_first_reveal: int | None = None
    seen_at_digest: dict[bytes, int] = field(default_factory=dict)
    # per result digest, the first reveal of it that arrived: the commit it opens was made before
    # it, so it belongs in the `seen` list even when it arrives later (`seen_commits`)
    first_reveal_of: dict[bytes, Fact] = field(default_factory=dict)
    # bumped on every new fact: a cheap "did anything change" for caches
    version: int = 0
    # bumped on every new fact that can change the verdict (claims too: they can make a select valid)
    tally_version: int = 0
    # bumped on every new fact but a signer's first reveal in this job: while it holds, the
    # tally's votes are updated with the new signers' votes instead of recounted (core.tally)
    base_version: int = 0
    # bumped on every new offer, claim or select: what `selection.selection` depends on
    select_version: int = 0
    # caches owned by p2pci.core.tally (keyed so that they never go stale)
    cache: dict[object, object] = field(default_factory=dict, repr=False)
    _allow: frozenset[bytes] | None = field(default=None, repr=False)

    @property
    def offer_msg(self) -> Offer | None:
        """The offer body, or None while the offer is unknown."""
        return None if self.offer is None else self.offer.body  # type: ignore[return-value]

    @property
    def allowlist(self) -> frozenset[bytes] | None:
        """The offer's allowed worker keys (None: open mode or offer unknown)."""
        return self._allow

    def seen_commits(self, limit: int = 1024, digest: bytes | None = None) -> tuple[bytes, ...]:
        """The `seen` list for this node's reveal of `digest` (protocol v2, per digest): the commit
        ids held before the first reveal *of that digest* arrived (all held commits if none has),
        plus, once held, the commit that this first reveal opens: its signer made it before that
        reveal, whatever order the two arrived in (a reveal that overtook its own commit, as after
        a restart or under load, must not leave its signer without a witness).

        `digest=None` gives the v1 rule (before the first reveal of any digest), which an early
        wrong reveal can freeze: pass the digest being revealed.
        """
        held = self.seen_at_first_reveal if digest is None else self.seen_at_digest.get(digest)
        if held is None:
            return tuple(sorted(self.commit_ids)[:limit])
        ids = set(islice(self.commit_ids, held))
        first = None if digest is None else self.first_reveal_of.get(digest)
        if first is not None:
            rev: Reveal = first.body  # type: ignore[assignment]
            opens = commit_hash(rev.salt, rev.digest, first.signer)
            for c in self.commits.get(first.signer, ()):
                if c.body.hash == opens:  # type: ignore[union-attr]
                    ids.add(c.id)
        return tuple(sorted(ids)[:limit])

    def seen_ids_at_first_reveal(self) -> frozenset[bytes] | None:
        """The commit ids held when the first reveal of the job arrived (None: no reveal yet)."""
        n = self.seen_at_first_reveal
        return None if n is None else frozenset(islice(self.commit_ids, n))

    def facts(self) -> list[Fact]:
        """All facts of this job, offer first, then by kind and id (a stable order)."""
        out: list[Fact] = [] if self.offer is None else [self.offer]
        rest: list[Fact] = list(self.cancels)
        for index in (self.claims, self.commits, self.reveals, self.declines):
            for fs in index.values():
                rest.extend(fs)
        for sfs in self.selects.values():
            rest.extend(sfs)
        rest.sort(key=lambda f: (f.kind, f.id))
        return out + rest

    def _add(self, fact: Fact) -> None:
        kind = fact.kind  # the envelope's kind names the body's class (open_envelope, seal)
        body = fact.body
        if kind == "reveal":
            assert isinstance(body, Reveal)
            if self.seen_at_first_reveal is None:
                self.seen_at_first_reveal = len(self.commit_ids)
            if body.digest not in self.seen_at_digest:
                self.seen_at_digest[body.digest] = len(self.commit_ids)
                self.first_reveal_of[body.digest] = fact
            signer = fact.signer
            mine = self.reveals.get(signer)
            if mine is None:
                self.reveals[signer] = [fact]
            else:
                mine.append(fact)
                self.equivocators.add(signer)
                self.base_version += 1
            witnesses = self.witnesses
            for cid in body.seen:
                w = witnesses.get(cid)
                if w is None:
                    witnesses[cid] = {signer}
                else:
                    w.add(signer)
        elif kind == "claim":
            # a claim can make a `select` that lists it verifiable: it may change the verdict
            assert isinstance(body, Claim)
            mine = self.claims.get(fact.signer)
            if mine is None:
                self.claims[fact.signer] = [fact]
                self.claimant_tiers[claim_tier(fact.signer, body)] += 1
            else:
                mine.append(fact)
            self.claim_ids[fact.id] = fact
        elif kind == "commit":
            mine = self.commits.setdefault(fact.signer, [])
            mine.append(fact)
            if len(mine) > 1:
                self.equivocators.add(fact.signer)
            self.commit_ids[fact.id] = fact
        elif kind == "offer":
            assert isinstance(body, Offer)
            self.offer = fact
            self._allow = body.allowlist
        elif kind == "cancel":
            self.cancels.append(fact)
        elif kind == "select":
            assert isinstance(body, Select)
            self.selects.setdefault(body.round, []).append(fact)
        elif kind == "decline":
            self.declines.setdefault(fact.signer, []).append(fact)
        self.ids.add(fact.id)
        self.version += 1
        self.tally_version += 1
        if kind != "reveal":  # a reveal bumps it above only when it is its signer's second
            self.base_version += 1
        if kind in ("claim", "select", "offer"):
            self.select_version += 1


class Board:
    """The grow-only set of valid facts. Pure: no I/O, no clock."""

    def __init__(self, *, max_size: int = MAX_ENVELOPE) -> None:
        self.facts: dict[bytes, Fact] = {}
        self._jobs: dict[bytes, JobView] = {}
        self.max_size = max_size
        self.rejected = 0  # count of rejected envelopes
        self.duplicates = 0
        # publisher key -> its offers' job ids, in arrival order (the per-key offer quota)
        self.offers_by: dict[bytes, dict[bytes, None]] = {}

    def add(self, raw: bytes, now: int) -> AddResult:
        """Verify and add one envelope. Never raises for bad input."""
        try:
            fid = hashlib.sha256(raw).digest()
        except TypeError:
            self.rejected += 1
            return AddResult("rejected", None, "envelope: expected bytes")
        known = self.facts.get(fid)
        if known is not None:
            self.duplicates += 1
            return AddResult("duplicate", known, "")
        try:
            fact = open_envelope(raw, max_size=self.max_size, fact_id=fid)
        except ProtocolError as exc:
            self.rejected += 1
            return AddResult("rejected", None, str(exc))
        self._index(fact)
        return _new_result("new", fact, "")

    def add_fact(self, fact: Fact) -> bool:
        """Add an already verified fact (e.g. loaded from the store). True if new."""
        if fact.id in self.facts:
            return False
        self._index(fact)
        return True

    def _index(self, fact: Fact) -> None:
        self.facts[fact.id] = fact
        body = fact.body
        job = fact.id if type(body) is Offer else body.job  # type: ignore[union-attr]
        view = self._jobs.get(job)
        if view is None:
            view = self._jobs[job] = JobView(job)
        view._add(fact)
        if type(body) is Offer:
            self.offers_by.setdefault(fact.signer, {})[job] = None

    def remove_job(self, job_id: bytes) -> list[bytes]:
        """Forget a job and every fact of it (quota eviction); the ids that were removed."""
        view = self._jobs.pop(job_id, None)
        if view is None:
            return []
        for fid in view.ids:
            self.facts.pop(fid, None)
        if view.offer is not None:
            mine = self.offers_by.get(view.offer.signer)
            if mine is not None:
                mine.pop(job_id, None)
                if not mine:
                    del self.offers_by[view.offer.signer]
        return sorted(view.ids)

    def has(self, fact_id: bytes) -> bool:
        return fact_id in self.facts

    def job(self, job_id: bytes) -> JobView | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[JobView]:
        """Every job the board knows about (including ones whose offer is still missing), oldest
        first (arrival order)."""
        return list(self._jobs.values())

    def job_count(self) -> int:
        return len(self._jobs)

    def job_fact_ids(self, job_id: bytes) -> set[bytes]:
        view = self._jobs.get(job_id)
        return set() if view is None else set(view.ids)

    def __len__(self) -> int:
        return len(self.facts)


# --------------------------------------------------------------------------- admission
# What the board takes in from the network, per job (docs/protocol.md section 4.8).
# A refused fact is not stored and not remembered as seen: sync offers it again later (a commit
# that came before its claim is taken once the claim is held). None of these rules can change a
# verdict: only selected keys vote, and a valid round selects only keys whose listed claims are
# held and eligible.

MIN_RENEW_MS = 250  # a worker renews its claim at most this often (half a lease of >= 500 ms)
CLAIM_SLACK = 16  # claims per (job, signer) on top of one per MIN_RENEW_MS of the job's life
MAX_DECLINE_SIGNERS = 256  # keys with no claim in a job whose (one) decline is stored
# claimant keys per job at least as strong (identity proof, capped at MAX_TIER) as a new one: a
# new claimant is taken while fewer than this many keys with a proof at least as strong as its own
# hold claims in the job (so free keys crowd out only each other; at most 256 per tier are stored)
MAX_CLAIMANTS = 256
MAX_ORPHAN_FACTS = 1024  # facts of a job whose offer is not held yet
# distinct commits (and reveals) of one key per job: two already make it an equivocator, whose
# votes all drop (p2pci.core.tally), so a third changes nothing but the size of the job
MAX_VOTES_PER_SIGNER = 2
REFUSALS = (
    "unclaimed",
    "equivocation",
    "weak_identity",
    "not_allowed",
    "claims_per_signer",
    "claimants",
    "declines_per_signer",
    "decline_signers",
    "not_publisher",
    "orphan",
)
# the order a batch is admitted in: the offer, then claims, then what needs them
_RANK = {"offer": 0, "claim": 1}


def claim_cap(offer: Offer) -> int:
    """Claims of one key stored per job: more than a worker renewing every MIN_RENEW_MS over the
    job's whole life (created to deadline) can make."""
    return (offer.deadline - offer.created) // MIN_RENEW_MS + CLAIM_SLACK


def _listed(view: JobView | None, publisher: bytes, claim_id: bytes) -> bool:
    """Does a select of the publisher list this claim? (then it is taken whatever the cap: a
    round that names it must be verifiable on every board)"""
    if view is None:
        return False
    for facts in view.selects.values():
        for f in facts:
            body = f.body
            if f.signer == publisher and isinstance(body, Select):
                i = bisect_left(body.claims, claim_id)
                if i < len(body.claims) and body.claims[i] == claim_id:
                    return True
    return False


def admit(board: Board, facts: Sequence[Fact]) -> tuple[list[Fact], list[tuple[Fact, str]]]:
    """Split a batch of verified, new facts from the network into those the board takes (in the
    order to store and index them: offers, then claims, then the rest) and those it refuses, with
    the reason (one of REFUSALS). Pure; the board is not changed. Facts of our own and facts
    reloaded from the store do not pass here (`Board.add_fact`).

    * commit, reveal: the signer must hold a claim in the job, and fewer than
      MAX_VOTES_PER_SIGNER commits (reveals) in it: two already make it an equivocator;
    * claim (offer held): the signer must be in the allowlist (if any), show at least the
      offer's `identity_bits`, and hold fewer than `claim_cap(offer)` claims in the job; a key
      with no claim in the job yet is taken only while fewer than MAX_CLAIMANTS claimant keys with
      an identity proof at least as strong as its own hold claims in it. A claim a select of the
      publisher lists is taken whatever these caps;
    * decline: a key holding claims keeps at most one more decline than claims; a key with no
      claim keeps one, and at most MAX_DECLINE_SIGNERS such keys per job;
    * select, cancel (offer held): only the offer's signer's;
    * any fact of a job whose offer is not held: at most MAX_ORPHAN_FACTS per job."""
    order = sorted(facts, key=lambda f: _RANK.get(f.kind, 2))
    ok: list[Fact] = []
    refused: list[tuple[Fact, str]] = []
    offers: dict[bytes, Fact] = {}
    per_job: dict[bytes, int] = {}
    claims_in: dict[tuple[bytes, bytes], int] = {}
    declines_in: dict[tuple[bytes, bytes], int] = {}
    decliners_in: dict[bytes, set[bytes]] = {}
    claimants_in: dict[bytes, list[int]] = {}  # job -> new claimant keys taken, per tier (as claimant_tiers)
    votes_in: dict[tuple[bytes, bytes, str], int] = {}
    for f in order:
        job, signer, kind = f.job, f.signer, f.kind
        view = board.job(job)
        why = None
        if kind != "offer":
            offer_fact = offers.get(job) if view is None or view.offer is None else view.offer
            held = 0 if view is None else len(view.ids)
            if offer_fact is None and held + per_job.get(job, 0) >= MAX_ORPHAN_FACTS:
                why = "orphan"
            else:
                why = _refusal(view, offer_fact, f, claims_in, declines_in, decliners_in, claimants_in, votes_in)
        if why is not None:
            refused.append((f, why))
            continue
        ok.append(f)
        per_job[job] = per_job.get(job, 0) + 1
        if kind == "offer":
            offers[job] = f
        elif kind == "claim":
            if not claims_in.get((job, signer)) and (view is None or signer not in view.claims):
                tiers = claimants_in.setdefault(job, [0] * (MAX_TIER + 1))
                tiers[claim_tier(signer, f.body)] += 1  # type: ignore[arg-type]
            claims_in[job, signer] = claims_in.get((job, signer), 0) + 1
        elif kind in ("commit", "reveal"):
            votes_in[job, signer, kind] = votes_in.get((job, signer, kind), 0) + 1
        elif kind == "decline":
            declines_in[job, signer] = declines_in.get((job, signer), 0) + 1
            decliners_in.setdefault(job, set()).add(signer)
    return ok, refused


def _refusal(
    view: JobView | None,
    offer_fact: Fact | None,
    f: Fact,
    claims_in: dict[tuple[bytes, bytes], int],
    declines_in: dict[tuple[bytes, bytes], int],
    decliners_in: dict[bytes, set[bytes]],
    claimants_in: dict[bytes, list[int]],
    votes_in: dict[tuple[bytes, bytes, str], int],
) -> str | None:
    job, signer, kind = f.job, f.signer, f.kind
    offer = None if offer_fact is None else offer_fact.body
    assert offer is None or isinstance(offer, Offer)
    claims = (0 if view is None else len(view.claims.get(signer, ()))) + claims_in.get((job, signer), 0)
    if kind in ("commit", "reveal"):
        if not claims:
            return "unclaimed"
        index = None if view is None else (view.commits if kind == "commit" else view.reveals)
        held = (0 if index is None else len(index.get(signer, ()))) + votes_in.get((job, signer, kind), 0)
        return "equivocation" if held >= MAX_VOTES_PER_SIGNER else None
    if kind == "claim":
        if offer is None or offer_fact is None:
            return None  # an orphan (bounded by MAX_ORPHAN_FACTS)
        body = f.body
        assert isinstance(body, Claim)
        allow = offer.allowlist
        if allow is not None and signer not in allow:
            return "not_allowed"
        if offer.identity_bits and identity_bits(signer, body.identity) < offer.identity_bits:
            return "weak_identity"
        if claims >= claim_cap(offer):
            return None if _listed(view, offer_fact.signer, f.id) else "claims_per_signer"
        if not claims:  # a new claimant key
            tier = claim_tier(signer, body)
            stronger = sum(claimants_in.get(job, ())[tier:])
            if view is not None:
                stronger += sum(view.claimant_tiers[tier:])
            if stronger >= MAX_CLAIMANTS and not _listed(view, offer_fact.signer, f.id):
                return "claimants"
        return None
    if kind == "decline":
        mine = (0 if view is None else len(view.declines.get(signer, ()))) + declines_in.get((job, signer), 0)
        if claims:
            return None if mine <= claims else "declines_per_signer"
        if mine:
            return "declines_per_signer"
        unclaimed = set() if view is None else {k for k in view.declines if k not in view.claims}
        unclaimed |= {k for k in decliners_in.get(job, ()) if view is None or k not in view.claims}
        return "decline_signers" if len(unclaimed) >= MAX_DECLINE_SIGNERS else None
    if kind in ("select", "cancel") and offer_fact is not None and signer != offer_fact.signer:
        return "not_publisher"
    return None
