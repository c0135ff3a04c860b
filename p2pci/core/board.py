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
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal

from p2pci.core.errors import ProtocolError
from p2pci.core.frozen import builder
from p2pci.core.messages import Offer, Reveal, Select
from p2pci.core.signing import MAX_ENVELOPE, Fact, open_envelope

AddStatus = Literal["new", "duplicate", "rejected"]


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
    # how many commit ids were held when the first reveal of the job arrived (None: no reveal
    # yet), and per result digest when the first reveal of that digest arrived: `commit_ids` only
    # grows, in arrival order, so its first n keys are the ids held then (a count, not a copy).
    # Arrival-order dependent, used only for this node's own `seen` list
    seen_at_first_reveal: int | None = None
    seen_at_digest: dict[bytes, int] = field(default_factory=dict)
    # bumped on every new fact: a cheap "did anything change" for caches
    version: int = 0
    # bumped on every new fact that can change the verdict (claims too: they can make a select valid)
    tally_version: int = 0
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
        ids held before the first reveal *of that digest* arrived (all held commits if none has).

        `digest=None` gives the v1 rule (before the first reveal of any digest), which an early
        wrong reveal can freeze: pass the digest being revealed.
        """
        held = self.seen_at_first_reveal if digest is None else self.seen_at_digest.get(digest)
        ids = self.commit_ids.keys() if held is None else islice(self.commit_ids, held)
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
            signer = fact.signer
            mine = self.reveals.get(signer)
            if mine is None:
                self.reveals[signer] = [fact]
            else:
                mine.append(fact)
                self.equivocators.add(signer)
            witnesses = self.witnesses
            for cid in body.seen:
                w = witnesses.get(cid)
                if w is None:
                    witnesses[cid] = {signer}
                else:
                    w.add(signer)
        elif kind == "claim":
            # a claim can make a `select` that lists it verifiable: it may change the verdict
            self.claims.setdefault(fact.signer, []).append(fact)
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
