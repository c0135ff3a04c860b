"""Test helpers: keys and signed facts for one job, as honest or hostile workers would make them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from p2pci.core.board import Board, JobView
from p2pci.core.messages import (
    BlobRef,
    Cancel,
    Claim,
    Commit,
    Decline,
    ImageRef,
    Limits,
    Offer,
    Require,
    Reveal,
    Select,
)
from p2pci.core.results import ManifestEntry, result_digest
from p2pci.core.selection import compute_workers, selection
from p2pci.core.signing import Fact, NodeKey, commit_hash, seal

IMAGE = "sha256:" + "ab" * 32
SEED = hashlib.sha256(b"test seed").digest()


def key(name: str) -> NodeKey:
    return NodeKey.from_seed(hashlib.sha256(name.encode()).digest())


def h(data: bytes | str) -> bytes:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).digest()


def manifest_for(content: bytes) -> tuple[ManifestEntry, ...]:
    return (
        ManifestEntry("bin/hello", len(content), 0o755, h(content)),
        ManifestEntry("share/readme.txt", 5, 0o644, h(b"hello")),
    )


def make_offer(
    publisher: NodeKey,
    *,
    replicas: int = 3,
    quorum: int = 2,
    workers: Literal["open"] | tuple[bytes, ...] = "open",
    require: Require | None = None,
    created: int = 1_000_000,
    deadline: int = 2_000_000,
    timeout_s: int = 60,
    project: str = "hello",
    seed: bytes = SEED,
    identity_bits: int = 0,
) -> Offer:
    return Offer(
        project=project,
        source=BlobRef(h(b"source"), 1234),
        image=ImageRef(IMAGE, None),
        command=("sh", "-c", "make"),
        env=(("LANG", "C"),),
        source_date_epoch=1_700_000_000,
        limits=Limits(timeout_s, 512, 1, 256, 64),
        replicas=replicas,
        quorum=quorum,
        workers=workers,
        require=require,
        created=created,
        deadline=deadline,
        select_commit=hashlib.sha256(seed).digest(),
        identity_bits=identity_bits,
    )


@dataclass
class Built:
    exit_code: int
    manifest: tuple[ManifestEntry, ...]
    salt: bytes

    @property
    def digest(self) -> bytes:
        return result_digest(self.exit_code, self.manifest)


@dataclass
class JobSim:
    """One job and the facts its workers sign, in the order they were made."""

    offer: Offer
    publisher: NodeKey = field(default_factory=lambda: key("publisher"))
    facts: list[Fact] = field(default_factory=list)
    seed: bytes = SEED

    def __post_init__(self) -> None:
        self.offer_fact = seal(self.publisher, self.offer)
        self.job = self.offer_fact.id
        self.facts.append(self.offer_fact)
        self.commit_of: dict[bytes, Fact] = {}

    def _add(self, f: Fact) -> Fact:
        self.facts.append(f)
        return f

    def claim(self, k: NodeKey, lease_until: int | None = None, identity: bytes = b"") -> Fact:
        lease = self.offer.created + 30_000 if lease_until is None else lease_until
        return self._add(seal(k, Claim(self.job, lease, identity)))

    def view(self) -> JobView:
        """A fresh board holding every fact made so far."""
        board = Board()
        for f in self.facts:
            board.add_fact(f)
        view = board.job(self.job)
        assert view is not None
        return view

    def select_body(self, drop: tuple[bytes, ...] = (), claims: tuple[bytes, ...] | None = None) -> Select:
        """The next honest selection round over every claim held (or `claims`), dropping `drop`."""
        view = self.view()
        sel = selection(view)
        prev = sel.rounds[-1] if sel.rounds else None
        listed = frozenset(view.claim_ids if claims is None else claims)
        if prev is not None:
            listed |= prev.claims
        workers, _, _ = compute_workers(view, self.offer, self.seed, listed, prev, frozenset(drop))
        rnd = 0 if prev is None else prev.round + 1
        created = self.offer.created + 2000 + rnd
        return Select(self.job, rnd, self.seed, created, tuple(sorted(listed)), workers)

    def select(self, drop: tuple[bytes, ...] = (), claims: tuple[bytes, ...] | None = None) -> Fact:
        return self._add(seal(self.publisher, self.select_body(drop, claims)))

    def decline(self, k: NodeKey, reason: str = "image", detail: str = "") -> Fact:
        return self._add(seal(k, Decline(self.job, reason, detail, None)))

    def built(self, k: NodeKey, content: bytes = b"good", exit_code: int = 0) -> Built:
        return Built(exit_code, manifest_for(content), h(k.public + content)[:16])

    def commit(self, k: NodeKey, b: Built) -> Fact:
        f = self._add(seal(k, Commit(self.job, commit_hash(b.salt, b.digest, k.public))))
        self.commit_of.setdefault(k.public, f)
        return f

    def reveal(self, k: NodeKey, b: Built, seen: tuple[bytes, ...] | None = None) -> Fact:
        if seen is None:  # every commit made so far
            seen = tuple(self.commit_of[w].id for w in sorted(self.commit_of))
        return self._add(
            seal(k, Reveal.of(self.job, b.digest, b.salt, b.exit_code, b.manifest, BlobRef(h(b"log"), 3), seen))
        )

    def cancel(self, k: NodeKey | None = None) -> Fact:
        return self._add(seal(k or self.publisher, Cancel(self.job)))

    def honest_round(self, workers: list[tuple[NodeKey, bytes, int]]) -> None:
        """Each worker claims, the publisher selects, each builds `content` with `exit_code` and
        commits; then all reveal."""
        built = []
        for k, _, _ in workers:
            self.claim(k)
        self.select()
        for k, content, code in workers:
            b = self.built(k, content, code)
            self.commit(k, b)
            built.append((k, b))
        for k, b in built:
            self.reveal(k, b)
