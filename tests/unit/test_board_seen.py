"""The board's record of the commits held when a digest was first revealed (this node's own `seen`
list): kept as a count of `commit_ids`, which only grows in arrival order (issue 17: no copy of
the commit ids per reveal)."""

from __future__ import annotations

from p2pci.core.board import Board
from p2pci.core.messages import BlobRef, Commit, Reveal
from p2pci.core.results import ENTRY_MIN_BYTES
from p2pci.core.signing import Fact, seal

from .jobgen import h, key

JOB = h("job")


def commit(name: str) -> Fact:
    return seal(key(name), Commit(JOB, h(name)))


def reveal(name: str, digest: bytes) -> Fact:
    return seal(key(name), Reveal(JOB, digest, b"s" * 16, 0, BlobRef(h("m"), 1 + ENTRY_MIN_BYTES), 1, BlobRef(h("l"), 1), ()))


def test_seen_lists_are_the_commits_held_when_each_digest_was_first_revealed() -> None:
    board = Board()
    c1, c2, c3, c4 = (commit(n) for n in ("a", "b", "c", "d"))
    for f in (c1, c2, reveal("a", h("A")), c3, reveal("b", h("A")), reveal("c", h("B")), c4):
        assert board.add(f.raw, 0).status == "new"
    view = board.job(JOB)
    assert view is not None
    assert view.seen_commits(digest=h("A")) == tuple(sorted([c1.id, c2.id]))
    assert view.seen_commits(digest=h("B")) == tuple(sorted([c1.id, c2.id, c3.id]))
    assert view.seen_commits() == tuple(sorted([c1.id, c2.id]))  # v1 rule: the first reveal of any digest
    assert view.seen_commits(digest=h("C")) == tuple(sorted([c1.id, c2.id, c3.id, c4.id]))  # none yet
    assert view.seen_commits(limit=1, digest=h("B")) == tuple(sorted([c1.id, c2.id, c3.id]))[:1]
    assert view.seen_ids_at_first_reveal() == frozenset([c1.id, c2.id])
    assert (view.seen_at_first_reveal, view.seen_at_digest) == (2, {h("A"): 2, h("B"): 3})


def test_before_any_reveal_every_held_commit_is_seen() -> None:
    board = Board()
    c1 = commit("a")
    board.add(c1.raw, 0)
    view = board.job(JOB)
    assert view is not None
    assert view.seen_ids_at_first_reveal() is None
    assert view.seen_commits() == (c1.id,) == view.seen_commits(digest=h("A"))
