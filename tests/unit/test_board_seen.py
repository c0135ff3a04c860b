"""The board's record of the commits held when a digest was first revealed (this node's own `seen`
list): kept as a count of `commit_ids`, which only grows in arrival order (issue 17: no copy of
the commit ids per reveal)."""

from __future__ import annotations

from dataclasses import replace

from p2pci.core.board import Board
from p2pci.core.messages import MAX_SEEN, BlobRef, Commit, Reveal
from p2pci.core.results import ENTRY_MIN_BYTES
from p2pci.core.signing import Fact, commit_hash, seal
from p2pci.core.tally import tally

from .jobgen import SEED, JobSim, h, key, make_offer

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


def test_a_first_reveal_that_overtook_its_own_commit_leaves_that_commit_seen() -> None:
    """The commit a digest's first reveal opens was made before that reveal: it is in the `seen`
    list however late it arrives. Not a later revealer's late commit, nor another commit of the
    first revealer that its reveal does not open."""
    board = Board()
    mine = commit("me")
    d, salt = h("D"), b"t" * 16
    b, c = key("b"), key("c")
    first = seal(b, Reveal(JOB, d, salt, 0, BlobRef(h("m"), 1 + ENTRY_MIN_BYTES), 1, BlobRef(h("l"), 1), ()))
    b_opened = seal(b, Commit(JOB, commit_hash(salt, d, b.public)))
    b_other = seal(b, Commit(JOB, h("b's other commit")))
    c_late = seal(c, Commit(JOB, commit_hash(b"u" * 16, d, c.public)))
    second = seal(c, Reveal(JOB, d, b"u" * 16, 0, BlobRef(h("m"), 1 + ENTRY_MIN_BYTES), 1, BlobRef(h("l"), 1), ()))
    for f in (mine, first, second, b_other, c_late, b_opened):
        assert board.add(f.raw, 0).status == "new"
    view = board.job(JOB)
    assert view is not None
    assert view.seen_commits(digest=d) == tuple(sorted([mine.id, b_opened.id]))
    assert view.seen_commits() == (mine.id,)  # the v1 rule is unchanged


def test_two_workers_agree_when_one_gets_the_others_reveal_before_its_commit() -> None:
    """Seen under two CPU burners (a restarted worker's sync, a memory mesh under load): worker a
    holds b's reveal before b's commit, then reveals. Before, a's `seen` froze at b's reveal and
    lacked b's commit: b had no witness, so a lost its own, and the job could only EXPIRE."""
    offer = replace(make_offer(key("publisher"), replicas=2, quorum=2), select_commit=h(SEED))
    sim = JobSim(offer)
    a, b = key("a"), key("b")
    sim.claim(a)
    sim.claim(b)
    sim.select()
    ba, bb = sim.built(a), sim.built(b)
    ca, cb = sim.commit(a, ba), sim.commit(b, bb)
    rb = sim.reveal(b, bb)  # b saw both commits
    a_board = Board()
    for f in sim.facts:
        if f not in (cb, rb):
            a_board.add_fact(f)
    a_board.add_fact(rb)  # b's reveal overtakes b's commit on a's board
    a_board.add_fact(cb)
    a_view = a_board.job(sim.job)
    assert a_view is not None
    seen = a_view.seen_commits(MAX_SEEN, ba.digest)
    assert seen == tuple(sorted([ca.id, cb.id]))
    sim.reveal(a, ba, seen=seen)
    verdict = tally(sim.view(), offer.created + 10_000)
    assert verdict.state == "REPRODUCED" and verdict.groups[0].workers == tuple(sorted([a.public, b.public]))
