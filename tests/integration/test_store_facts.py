"""FactStore on real SQLite: idempotent insert, reload, pins, prune, kv."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from p2pci.core.messages import Claim, Commit
from p2pci.core.signing import Fact, NodeKey, open_envelope, seal
from p2pci.store.facts import FactStore


class ListBoard:
    def __init__(self) -> None:
        self.facts: dict[bytes, Fact] = {}

    def add_fact(self, fact: Fact) -> bool:
        if fact.id in self.facts:
            return False
        self.facts[fact.id] = fact
        return True


def job(i: int) -> bytes:
    return hashlib.sha256(b"job%d" % i).digest()


def test_put_is_idempotent_and_survives_reopen(tmp_path: Path) -> None:
    key = NodeKey.generate()
    f = seal(key, Claim(job=job(1), lease_until=1000))
    with FactStore(tmp_path / "s.sqlite") as st:
        assert st.put(f, 5) is True
        assert st.put(f, 6) is False
        assert st.count() == 1
    with FactStore(tmp_path / "s.sqlite") as st:
        assert st.get(f.id) == f.raw
        assert st.received_at(f.id) == 5
        assert [x.id for x in st.facts_of(job(1))] == [f.id]
        assert st.facts_of(job(2)) == []


@pytest.mark.slow
def test_ten_thousand_facts_reload_identically(tmp_path: Path) -> None:
    keys = [NodeKey.generate() for _ in range(10)]
    facts = [seal(keys[i % 10], Claim(job=job(i % 500), lease_until=i)) for i in range(10_000)]
    with FactStore(tmp_path / "s.sqlite") as st:
        for f in facts[:100]:
            st.put(f, 1)
        assert st.put_many((f, 2) for f in facts) == 9_900
    board = ListBoard()
    for f in facts:
        board.add_fact(f)
    with FactStore(tmp_path / "s.sqlite") as st:
        again = ListBoard()
        assert st.load_into(again) == 10_000
    assert {i: f.raw for i, f in again.facts.items()} == {i: f.raw for i, f in board.facts.items()}


def test_corrupt_row_is_skipped(tmp_path: Path) -> None:
    key = NodeKey.generate()
    good = seal(key, Commit(job=job(1), hash=b"\x01" * 32))
    with FactStore(tmp_path / "s.sqlite") as st:
        st.put(good, 1)
        st._db.execute(
            "INSERT INTO facts VALUES (?,?,?,?,?,?)", (b"x" * 32, job(1), "commit", b"k" * 32, b"garbage", 2)
        )
        b = ListBoard()
        assert st.load_into(b) == 1
        assert list(b.facts) == [good.id]


def test_pins_prune_and_kv(tmp_path: Path) -> None:
    key = NodeKey.generate()
    old = [seal(key, Claim(job=job(i), lease_until=1)) for i in range(3)]
    new = seal(key, Claim(job=job(9), lease_until=1))
    with FactStore(tmp_path / "s.sqlite") as st:
        for f in old:
            st.put(f, 100)
        st.put(new, 10_000)
        st.pin(job(0))
        assert st.prune(before=5_000, keep=[job(1)]) == 1  # job 2 goes; 0 pinned, 1 kept
        assert st.count() == 3 and st.facts_of(job(2)) == []
        st.kv_put("trust", ["a", "b"])
        st.kv_put("worker/ab", {"salt": b"s" * 16, "n": 3})
        st.kv_put("worker/cd", {"n": 4})
        assert st.kv_get("trust") == ["a", "b"]
        assert st.kv_get("nope", 7) == 7
        assert [k for k, _ in st.kv_items("worker/")] == ["worker/ab", "worker/cd"]
        st.kv_delete("worker/ab")
        assert st.kv_items("worker/") == [("worker/cd", {"n": 4})]
    assert open_envelope(new.raw).id == new.id


def test_a_batch_that_fails_changes_nothing_and_leaves_the_store_usable(tmp_path: Path) -> None:
    """Every batched write (put_many, evict, prune, tie, untie_jobs) is one transaction: a row
    that fails half-way undoes the rows before it, and the connection is not left inside an open
    transaction (the next BEGIN would fail: every later write with it)."""
    key = NodeKey.generate()
    facts = [seal(key, Claim(job=job(i), lease_until=1)) for i in range(2)]
    with FactStore(tmp_path / "s.sqlite") as st:
        st.put_many([(f, 1) for f in facts])
        with pytest.raises(Exception, match="bind|type"):
            st.evict([job(0), object()])  # type: ignore[list-item]  # job 0 goes, then the row fails
        assert st.count() == 2  # job 0's delete undone with the rest
        with pytest.raises(Exception, match="bind|type"):
            st.put_many([(seal(key, Claim(job=job(5), lease_until=1)), 1), (facts[0], object())])  # type: ignore[list-item]
        assert st.count() == 2 and st.facts_of(job(5)) == []
        assert st.evict([job(0)]) == 1 and st.count() == 1  # and the store still writes
        st.tie(job(1), [(b"s" * 32, "source")], served=True, at=1)
        assert st.untie_jobs([job(1)]) == 1


def test_put_many_now_writes_only_when_it_cannot_wait(tmp_path: Path) -> None:
    """put_many_now (the ingest's commit on the event loop) writes a few facts when the lock is
    free, and returns None (nothing written) for a larger batch, a held lock, or once
    NOW_COMMITS commits have gone by without a put_many."""
    from p2pci.store import facts as facts_mod

    key = NodeKey.generate()
    fs = [seal(key, Claim(job=job(i), lease_until=i)) for i in range(facts_mod.NOW_COMMITS + facts_mod.NOW_MAX + 2)]
    with FactStore(tmp_path / "s.sqlite") as st:
        assert st.put_many_now([(fs[0], 1)]) == 1
        assert st.put_many_now([(fs[0], 1)]) == 0  # already there
        assert st.put_many_now([(f, 1) for f in fs[1 : 2 + facts_mod.NOW_MAX]]) is None
        assert st._lock.acquire()
        try:  # another thread holds the connection: never wait for it on the loop
            assert st.put_many_now([(fs[1], 1)]) is None
        finally:
            st._lock.release()
        assert st.count() == 1
        n = 1
        while (got := st.put_many_now([(fs[n], 1)])) is not None:
            assert got == 1
            n += 1
        assert 2 + (n - 1) == facts_mod.NOW_COMMITS  # commits; then a put_many in a thread (it may checkpoint)
        assert st.put_many([(fs[n], 1)]) == 1
        assert st.put_many_now([(fs[n + 1], 1)]) == 1
        assert st.count() == n + 2
    with FactStore(tmp_path / "s.sqlite") as st:
        assert st.count() == n + 2  # committed


def test_put_many_now_never_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit on the event loop never runs a WAL checkpoint (the step that syncs the disk),
    and leaves the connection's autocheckpoint as it was for everyone else."""
    from p2pci.store import facts as facts_mod

    monkeypatch.setattr(facts_mod, "AUTOCHECKPOINT", 1)  # a checkpoint after every other commit
    key = NodeKey.generate()
    fs = [seal(key, Claim(job=job(i), lease_until=i)) for i in range(21)]
    with FactStore(tmp_path / "s.sqlite") as st:
        st._db.execute("PRAGMA wal_autocheckpoint=1")
        assert st.put_many([(fs[0], 1)]) == 1
        for f in fs[1:]:
            assert st.put_many_now([(f, 1)]) == 1
        assert st._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1
        # 20 commits of at least one page each are still in the WAL: none was checkpointed
        busy, frames, _done = st._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames >= 20
        # the control: the same commits through put_many leave the WAL checkpointed every time
        for i in range(20):
            st.put_many([(seal(key, Claim(job=job(100 + i), lease_until=i)), 1)])
        busy, frames, _done = st._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames < 20
