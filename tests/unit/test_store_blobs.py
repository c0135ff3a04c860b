"""BlobStore: content addressing, atomic verified writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.errors import ProtocolError
from p2pci.store.blobs import BlobRef, BlobStore


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def stored_files(store: BlobStore) -> list[Path]:
    return [p for p in store.dir.rglob("*") if p.is_file() and p.parent != store.dir / "tmp"]


def test_put_bytes_is_content_addressed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    ref = store.put_bytes(b"hello")
    h = sha(b"hello").hex()
    assert ref == BlobRef(sha256=sha(b"hello"), size=5)
    assert store.path(ref.sha256) == tmp_path / "blobs" / h[:2] / h
    assert store.has(ref.sha256)
    assert store.read_bytes(ref.sha256) == b"hello"
    assert store.put_bytes(b"hello") == ref  # idempotent
    assert len(stored_files(store)) == 1


def test_put_file(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = bytes(range(256)) * 1000
    src.write_bytes(data)
    store = BlobStore(tmp_path / "blobs")
    ref = store.put_file(src)
    assert ref.sha256 == sha(data) and ref.size == len(data)
    assert store.path(ref.sha256).read_bytes() == data
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_writer_in_chunks(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"x" * 200_000
    with store.writer(BlobRef(sha(data), len(data))) as w:
        for i in range(0, len(data), 7000):
            w.write(data[i : i + 7000])
    assert store.read_bytes(sha(data)) == data


@pytest.mark.parametrize(
    "written",
    [b"hello worl", b"hello world!", b"hello WORLD", b""],
    ids=["truncated", "too-long", "corrupt", "empty"],
)
def test_bad_write_never_appears_under_its_hash(tmp_path: Path, written: bytes) -> None:
    store = BlobStore(tmp_path)
    expect = BlobRef(sha(b"hello world"), 11)
    with pytest.raises(ProtocolError), store.writer(expect) as w:
        w.write(written)
    assert not store.has(expect.sha256)
    assert stored_files(store) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_exception_inside_writer_stores_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    expect = BlobRef(sha(b"abc"), 3)
    with pytest.raises(RuntimeError), store.writer(expect) as w:
        w.write(b"abc")
        raise RuntimeError("connection dropped")
    assert not store.has(expect.sha256)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_stale_temp_files_are_cleared_on_open(tmp_path: Path) -> None:
    BlobStore(tmp_path)
    crashed = tmp_path / "tmp" / "w-crashed"
    crashed.write_bytes(b"half")
    os.utime(crashed, (0, 0))  # untouched for ages: a crash leftover
    (tmp_path / "tmp" / "w-writing").write_bytes(b"in progress")  # another process writing now
    (tmp_path / "tmp" / "publish-dir").mkdir()  # `p2pci publish` packs the source here
    BlobStore(tmp_path)
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["publish-dir", "w-writing"]


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(min_value=0, max_value=3000), flip=st.integers(0, 2999))
def test_any_wrong_content_is_rejected(tmp_path_factory: pytest.TempPathFactory, data: bytes, cut: int, flip: int) -> None:
    store = BlobStore(tmp_path_factory.mktemp("b"))
    expect = BlobRef(sha(data), len(data))
    bad = bytearray(data[: min(cut, len(data))])
    if len(bad) == len(data) and bad:
        bad[flip % len(bad)] ^= 0x01
    if bytes(bad) == data:
        return  # nothing wrong with it
    with pytest.raises(ProtocolError), store.writer(expect) as w:
        w.write(bytes(bad))
    assert not store.has(expect.sha256)


def test_partial_pieces_survive_a_reopen_and_only_a_few_failed_partials_are_kept(tmp_path: Path) -> None:
    """PartialBlob: marked pieces are on disk and read back by a new object (a resume after a
    failure or a restart); prune_partials keeps the most recent KEEP_PARTIALS, never an active one."""
    import os as _os
    import time as _time

    from p2pci.store.blobs import KEEP_PARTIALS, PIECE, BlobStore

    store = BlobStore(tmp_path / "b")
    data = _os.urandom(3 * PIECE + 5)
    ref = BlobRef(hashlib.sha256(data).digest(), len(data))
    part = store.partial(ref)
    part.write(PIECE, data[PIECE : 2 * PIECE])
    part.mark([1], direct=True)
    part.close()
    again = store.partial(ref)
    assert [again.held(i) for i in range(4)] == [False, True, False, False] and again.direct[0] == 0x40
    for i in (0, 2, 3):
        off, n = again.span(i)
        again.write(off, data[off : off + n])
    again.mark([0, 2, 3], direct=False)
    assert again.complete() and again.verify()
    again.commit()
    assert store.path(ref.sha256).read_bytes() == data and not list((store.dir / "tmp").glob("part-*"))

    parts = []
    for k in range(KEEP_PARTIALS + 3):
        other = os.urandom(10)
        p = store.partial(BlobRef(hashlib.sha256(other).digest(), 10))
        p.mark([0], direct=False)
        p.close()
        stamp = _time.time() - 1000 + k  # oldest first
        _os.utime(p.path, (stamp, stamp))
        parts.append(p.path)
    assert store.prune_partials(active=frozenset({parts[0]})) == 2
    left = sorted(f for f in (store.dir / "tmp").glob("part-*") if f.suffix != ".have")
    assert left == sorted([parts[0], *parts[-KEEP_PARTIALS:]])  # the active one, and the newest
    assert all(f.with_name(f.name + ".have").exists() for f in left)
    assert not parts[1].with_name(parts[1].name + ".have").exists()
