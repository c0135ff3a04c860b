"""BlobStore: content addressing, atomic verified writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.errors import ProtocolError
from p2pci.store.blobs import BlobRef, BlobStore, PartialBlob


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


def _partial(tmp_path: Path, data: bytes) -> PartialBlob:
    store = BlobStore(tmp_path / "b")
    return store.partial(BlobRef(sha(data), len(data)))


def test_partial_hashes_the_bytes_as_they_come_and_verify_reads_only_the_rest(tmp_path: Path) -> None:
    """In-order pieces are hashed as they are written, pieces held after the hashed prefix as
    they are marked (read back), so the final check has nothing left to read."""
    from p2pci.store.blobs import PIECE

    data = os.urandom(4 * PIECE + 7)
    part = _partial(tmp_path, data)
    part.write(2 * PIECE, data[2 * PIECE : 3 * PIECE])  # out of order: not hashed yet
    part.mark([2], direct=True)
    assert part._at == 0
    part.write(0, data[:PIECE])
    assert part._at == PIECE  # hashed from memory as written
    part.write(PIECE, data[PIECE : 2 * PIECE])
    part.mark([0, 1], direct=True)
    assert part._at == 3 * PIECE  # and on over the held piece 2, read back
    part.write(3 * PIECE, data[3 * PIECE :])
    part.mark([3, 4], direct=True)
    assert part._at == len(data) and part.verify()


def test_partial_bytes_written_again_over_hashed_ones_are_what_is_verified(tmp_path: Path) -> None:
    """A hostile holder's bytes, hashed as they came, then overwritten by the right ones (a piece
    fetched again), must verify; the right bytes overwritten by wrong ones must not."""
    from p2pci.store.blobs import PIECE

    data = os.urandom(2 * PIECE)
    bad = bytes(PIECE)
    part = _partial(tmp_path, data)
    part.write(0, bad)
    part.write(0, data[:PIECE])
    part.write(PIECE, data[PIECE:])
    part.mark([0, 1], direct=True)
    assert part.verify()
    part.write(0, bad)
    assert not part.verify()
    part.forget([0])
    part.write(0, data[:PIECE])
    part.mark([0], direct=True)
    assert part.verify()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_partial_verify_is_the_hash_of_what_the_file_holds(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """Whatever the order of writes, rewrites (right or wrong bytes), marks and forgets: verify
    is True exactly when the file holds the blob."""
    from p2pci.store import blobs

    piece = 64
    blob = data.draw(st.binary(min_size=1, max_size=5 * piece))
    old = blobs.PIECE
    blobs.PIECE = piece  # small pieces: many of them in a short blob
    try:
        part = _partial(tmp_path_factory.mktemp("p"), blob)
        part.CATCH_UP = data.draw(st.sampled_from([piece // 2, piece, 16 * piece]))
        for _ in range(data.draw(st.integers(1, 25))):
            i = data.draw(st.integers(0, part.n - 1))
            off, n = part.span(i)
            cut = data.draw(st.integers(0, n))
            wrong = data.draw(st.booleans())
            for a, b in ((off, off + cut), (off + cut, off + n)):
                chunk = blob[a:b]
                part.write(a, bytes(len(chunk)) if wrong and chunk else chunk)
            action = data.draw(st.sampled_from(["mark", "mark", "forget", "none"]))
            if action == "mark":
                part.mark([i], direct=True)
            elif action == "forget":
                part.forget([i])
        held = part.path.read_bytes()
        assert part.verify() == (held == blob)
    finally:
        blobs.PIECE = old


# -- durability (docs/internals.md "Durability of the blob store") ------------------------------


class DiskLog:
    """Records, in order, every fsync (by what the descriptor names) and every rename."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []  # ("fsync", path) or ("rename", final path)
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))  # list.append: thread-safe
            real_fsync(fd)

        def replace(src: str | Path, dst: str | Path) -> None:
            real_replace(src, dst)
            self.events.append(("rename", str(dst)))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def fsynced(self) -> list[str]:
        return [p for kind, p in self.events if kind == "fsync"]

    def index(self, kind: str, path: Path | str) -> int:
        return self.events.index((kind, str(path)))


def outputs(root: Path, n: int, dirs: int) -> list[Path]:
    files = []
    for i in range(n):
        p = root / f"d{i % dirs}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"file {i}\n".encode())
        files.append(p)
    return files


def test_adopt_many_makes_every_blob_durable_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    files = outputs(tmp_path / "out", 60, dirs=3)
    files.append(files[0])  # the same file twice, and a second file with the same content
    dup = tmp_path / "out" / "dup"
    dup.write_bytes(b"file 1\n")
    files.append(dup)
    disk = DiskLog(monkeypatch)
    refs = store.adopt_many(files)

    assert [r.sha256 for r in refs] == [sha(p.read_bytes()) for p in files]
    blobs = {store.path(r.sha256) for r in refs}
    assert len(blobs) == 60
    for r, p in zip(refs, files, strict=True):
        final = store.path(r.sha256)
        assert final.read_bytes() == p.read_bytes()
        assert (final.stat().st_mode & 0o777) == 0o444
    # each blob: its data fsynced (the shared inode: one fsync of its temp link) before its rename
    fsynced, renames = disk.fsynced(), [p for kind, p in disk.events if kind == "rename"]
    assert sorted(renames) == sorted(map(str, blobs))
    data_syncs = [p for p in fsynced if p.startswith(str(store.dir / "tmp") + "/")]
    assert len(data_syncs) == 60  # one per new blob, none for a duplicate
    last_data_sync = max(i for i, (kind, p) in enumerate(disk.events) if kind == "fsync" and p in data_syncs)
    first_rename = min(disk.index("rename", b) for b in blobs)
    assert last_data_sync < first_rename
    # then every touched directory once (each blob's subdirectory, and the top one that gained
    # them), after the last rename: two fsyncs per file become about one
    dir_syncs = [p for p in fsynced if p not in data_syncs]
    touched = {str(b.parent) for b in blobs} | {str(store.dir)}
    assert sorted(dir_syncs) == sorted(touched)
    last_rename = max(disk.index("rename", b) for b in blobs)
    assert all(disk.index("fsync", d) > last_rename for d in touched)
    assert len(fsynced) == 60 + len(touched)
    assert list((store.dir / "tmp").iterdir()) == []
    assert store.sync() == 0  # nothing left pending

    # again: everything is here already, so nothing is written or fsynced
    disk.events.clear()
    assert store.adopt_many(files) == refs
    assert disk.events == []


def test_adopt_many_error_leaves_no_temp_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    files = outputs(tmp_path / "out", 5, dirs=1)
    with pytest.raises(FileNotFoundError):
        store.adopt_many([*files, tmp_path / "missing"])
    assert list((store.dir / "tmp").iterdir()) == []
    assert stored_files(store) == []  # nothing was renamed in: the error came before


def test_adopt_many_copies_across_filesystems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    files = outputs(tmp_path / "out", 4, dirs=2)

    def no_link(src: str | Path, dst: str | Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    disk = DiskLog(monkeypatch)
    refs = store.adopt_many(files)
    for r, p in zip(refs, files, strict=True):
        final = store.path(r.sha256)
        assert final.read_bytes() == p.read_bytes()
        assert final.stat().st_ino != p.stat().st_ino  # a copy
    assert len([p for p in disk.fsynced() if p.startswith(str(store.dir / "tmp") + "/")]) == 4
    assert list((store.dir / "tmp").iterdir()) == []


def test_writer_defers_the_directory_fsync_to_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch (the network's `writer`) fsyncs the data before the rename, and leaves the
    directory fsyncs to the next sync(): once per directory however many blobs landed there."""
    store = BlobStore(tmp_path / "blobs")
    disk = DiskLog(monkeypatch)
    datas = [f"blob {i}".encode() for i in range(40)]
    for data in datas:
        with store.writer(BlobRef(sha(data), len(data))) as w:
            w.write(data)
            w.finish()  # what the network runs in a thread; leaving the block only renames
    assert all(p.startswith(str(store.dir / "tmp")) for p in disk.fsynced())
    assert len(disk.fsynced()) == 40
    for data in datas:
        final = store.path(sha(data))
        assert disk.index("fsync", disk.fsynced()[datas.index(data)]) < disk.index("rename", final)
    touched = {str(store.path(sha(d)).parent) for d in datas} | {str(store.dir)}
    disk.events.clear()
    assert store.sync() == len(touched)
    assert sorted(disk.fsynced()) == sorted(touched)
    assert disk.fsynced()[-1] == str(store.dir)  # the top directory after its subdirectories
    assert store.sync() == 0


def test_put_bytes_of_a_fetched_unsynced_blob_syncs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    with store.writer(BlobRef(sha(b"x"), 1)) as w:
        w.write(b"x")
    disk = DiskLog(monkeypatch)
    store.put_bytes(b"x")  # already here, but its rename is not durable yet: put_bytes promises it is
    assert sorted(disk.fsynced()) == sorted([str(store.path(sha(b"x")).parent), str(store.dir)])


def test_single_puts_are_durable_when_they_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    copied, adopted = tmp_path / "copied", tmp_path / "adopted"
    copied.write_bytes(b"copied")
    adopted.write_bytes(b"adopted")
    disk = DiskLog(monkeypatch)
    for put in (lambda: store.put_bytes(b"bytes"), lambda: store.put_file(copied), lambda: store.adopt(adopted)):
        disk.events.clear()
        ref = put()
        final = store.path(ref.sha256)
        # the data (a temp file or link), then the rename, then the directory: all before returning
        kinds = [kind for kind, _p in disk.events]
        assert kinds[0] == "fsync" and disk.fsynced()[0].startswith(str(store.dir / "tmp") + "/")
        assert disk.index("rename", final) < disk.index("fsync", final.parent)
        assert store.sync() == 0
