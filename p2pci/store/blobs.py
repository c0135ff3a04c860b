"""Content-addressed blob store on disk (docs/internals.md "p2pci.store").

Layout: ``<dir>/ab/abcdef…`` where ``abcdef…`` is the lowercase hex sha256 of
the content. Every write goes to a temp file under ``<dir>/tmp/``, is hashed
while it is written, its data fsynced, and only renamed into place when hash and size
are right. A blob therefore appears under its hash complete and correct, or
not at all; a crash mid-write leaves at most a temp file (cleared on open).

Durability (docs/internals.md "Durability of the blob store"): a blob's *data* is
durable before its rename; the *rename* is durable after the next `sync()`, which
fsyncs each directory touched since the last one, once. `put_bytes`, `put_file` and
`adopt` sync before they return; `writer` (the network's fetches) does not;
`adopt_many` stores a whole batch with its data fsyncs in parallel and one `sync()`
at the end. Whoever commits a record that names blobs (a tie, a reveal) makes them
durable first. A crash can lose a blob whose rename was not yet synced (a fetch
fetches it again), never leave a wrong one under a hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import BlobRef

CHUNK = 1 << 16
STALE_TMP_S = 3600
PIECE = 1 << 20  # the unit of resumable and parallel transfers (docs/protocol.md §8.4)
KEEP_PARTIALS = 4  # failed downloads whose pieces are kept for a resume
SYNC_THREADS = 16  # fsyncs in flight at once: the filesystem's journal commits them together


def _hex(sha: bytes) -> str:
    if not isinstance(sha, (bytes, bytearray)) or len(sha) != 32:
        raise LocalError("a blob hash is 32 raw bytes")
    return bytes(sha).hex()


class BlobWriter:
    """Streams bytes into a temp file, hashing them; see `BlobStore.writer`."""

    def __init__(self, fh: IO[bytes], expect: BlobRef) -> None:
        self._fh = fh
        self._expect = expect
        self._hash = hashlib.sha256()
        self.written = 0
        self.finished = False

    def write(self, data: bytes | memoryview) -> None:
        """Append `data`; a write past the expected size is a ProtocolError at once."""
        if self.written + len(data) > self._expect.size:
            raise ProtocolError(
                f"blob {_hex(self._expect.sha256)[:12]} longer than its announced {self._expect.size} bytes"
            )
        self._fh.write(data)
        self._hash.update(data)
        self.written += len(data)

    def _check(self) -> None:
        if self.written != self._expect.size:
            raise ProtocolError(
                f"blob {_hex(self._expect.sha256)[:12]} truncated: {self.written} of {self._expect.size} bytes"
            )
        if self._hash.digest() != bytes(self._expect.sha256):
            raise ProtocolError(f"blob {_hex(self._expect.sha256)[:12]} content does not match its hash")

    def finish(self) -> None:
        """Verify size and hash, then make the data durable (one fsync). Blocking: the daemon
        calls it in a thread (`trio.to_thread.run_sync(w.finish)`) so that the event loop never
        waits on the disk; leaving the `writer` block then only renames. Idempotent."""
        if self.finished:
            return
        self._check()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.finished = True


class BlobStore:
    """Blobs keyed by sha256 under `dir` (created if missing)."""

    def __init__(self, dir: Path | str) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._dirty: set[Path] = set()  # directories with renames not yet fsynced (see sync)
        self._dirty_lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one sync at a time: a second waits for the first's fsyncs
        self._tmp = self.dir / "tmp"
        self._tmp.mkdir(exist_ok=True)
        # Leftovers of a crash mid-write. Another process may be writing here right
        # now (the daemon and `p2pci publish` open the same store; publish keeps a
        # temp dir here): only clear plain files nobody touched for an hour.
        cutoff = time.time() - STALE_TMP_S
        for stale in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if stale.is_file() and stale.stat().st_mtime < cutoff:
                    stale.unlink()

    def path(self, sha: bytes) -> Path:
        """Where the blob with hash `sha` lives (whether or not it exists)."""
        h = _hex(sha)
        return self.dir / h[:2] / h

    def has(self, sha: bytes) -> bool:
        return self.path(sha).is_file()

    def size(self, sha: bytes) -> int | None:
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            return None

    def ref(self, sha: bytes) -> BlobRef | None:
        """A BlobRef for a blob we hold, else None."""
        size = self.size(sha)
        return None if size is None else BlobRef(sha256=bytes(sha), size=size)

    def read_bytes(self, sha: bytes) -> bytes:
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            raise LocalError(f"no blob {_hex(sha)}") from None

    def _rename(self, tmp: Path, sha: bytes) -> None:
        """Rename `tmp` (its data already durable) into place; the rename is durable at `sync()`."""
        final = self.path(sha)
        touched = [final.parent]
        if not final.parent.is_dir():
            final.parent.mkdir(exist_ok=True)
            touched.append(self.dir)
        with self._dirty_lock:  # one step for sync(): whoever sees the blob sees its directory pending
            os.replace(tmp, final)  # atomic on one filesystem; an existing copy is identical
            self._dirty.update(touched)

    def sync(self) -> int:
        """Make every rename into this store so far durable: one fsync per directory touched
        since the last sync (in parallel; the top directory last). Returns how many. Blocking:
        call it in a thread from the event loop."""
        with self._sync_lock:
            with self._dirty_lock:
                dirs, self._dirty = self._dirty, set()
            try:
                subs = sorted(d for d in dirs if d != self.dir)
                _parallel(_fsync_dir, subs)
                if self.dir in dirs:
                    _fsync_dir(self.dir)
            except BaseException:
                with self._dirty_lock:
                    self._dirty.update(dirs)
                raise
            return len(dirs)

    def _tempfile(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="w-")
        return os.fdopen(fd, "wb"), Path(name)

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store `data`; returns its reference (idempotent)."""
        sha = hashlib.sha256(data).digest()
        ref = BlobRef(sha256=sha, size=len(data))
        if not self.has(sha):
            with self.writer(ref) as w:
                w.write(bytes(data))
        self.sync()  # also when it was here: a fetch may have renamed it in, not yet synced
        return ref

    def put_file(self, path: Path | str) -> BlobRef:
        """Copy the file at `path` into the store, hashing as it goes."""
        fh, tmp = self._tempfile()
        h = hashlib.sha256()
        size = 0
        try:
            with fh, open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    fh.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            sha = h.digest()
            if self.has(sha):
                tmp.unlink()
            else:
                self._rename(tmp, sha)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.sync()
        return BlobRef(sha256=sha, size=size)

    @contextmanager
    def writer(self, expect: BlobRef) -> Iterator[BlobWriter]:
        """Write a blob announced as `expect` in pieces.

        On a clean exit the content is verified (size and sha256), its data fsynced
        (unless `w.finish()` did both already) and renamed into place; on a mismatch
        ProtocolError is raised and nothing is stored. On any exception inside the block
        the temp file is removed. The rename is durable at the next `sync()`.
        """
        _hex(expect.sha256)
        if expect.size < 0:
            raise ProtocolError("negative blob size")
        fh, tmp = self._tempfile()
        w = BlobWriter(fh, expect)
        try:
            with fh:
                yield w
                w.finish()
            if self.has(expect.sha256):
                tmp.unlink()
            else:
                self._rename(tmp, expect.sha256)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def partial(self, expect: BlobRef) -> PartialBlob:
        """The resumable download of `expect` (docs/protocol.md §8.4): its pieces written so far,
        kept under tmp/ across restarts (a stale one goes after STALE_TMP_S like any temp file)."""
        _hex(expect.sha256)
        if expect.size < 0:
            raise ProtocolError("negative blob size")
        return PartialBlob(self, expect)

    def prune_partials(self, active: frozenset[Path] = frozenset(), keep: int = KEEP_PARTIALS) -> int:
        """Delete all but the `keep` most recently written partial downloads that are not `active`
        (disk stays bounded: a failed download keeps its pieces for a resume, but not forever);
        returns how many went."""
        parts = []
        for f in self._tmp.glob("part-*"):
            if f.suffix == ".have" or f.name.endswith(".bad") or f in active:
                continue
            with contextlib.suppress(OSError):
                parts.append((f.stat().st_mtime, f))
        parts.sort(reverse=True)
        for _mtime, f in parts[keep:]:
            f.unlink(missing_ok=True)
            f.with_name(f.name + ".have").unlink(missing_ok=True)
        return max(0, len(parts) - keep)

    def adopt_verified(self, tmp: Path, sha: bytes) -> None:
        """Rename a verified file (its data fsynced) from tmp/ into the store under `sha` (the caller
        verified it); durable when it returns."""
        if self.has(sha):
            tmp.unlink(missing_ok=True)
        else:
            self._rename(tmp, sha)
        self.sync()

    def copy_out(self, sha: bytes, dest: Path | str) -> None:
        """Copy a stored blob to `dest` (LocalError if we do not hold it)."""
        src = self.path(sha)
        if not src.is_file():
            raise LocalError(f"no blob {_hex(sha)}")
        shutil.copyfile(src, dest)

    def adopt_many(self, paths: Iterable[Path | str]) -> list[BlobRef]:
        """`adopt` every file of `paths` as one batch, all durable when it returns (one ref per path,
        in order): each file hashed and hard-linked (or copied) into tmp/, then the data of all
        fsynced in parallel (SYNC_THREADS at a time), then each renamed into place, then one
        `sync()` (an fsync per touched directory). About one fsync per file instead of two
        serial ones. On an error nothing of the batch is left in tmp/ (blobs already renamed
        stay: each is complete and correct)."""
        refs: list[BlobRef] = []
        pending: dict[bytes, Path] = {}  # sha -> its temp link or copy, not yet in place
        try:
            for path in paths:
                ref, tmp = self._stage(path, pending)
                refs.append(ref)
                if tmp is not None:
                    pending[ref.sha256] = tmp
            _parallel(_fsync_file, list(pending.values()))
            for sha, tmp in list(pending.items()):
                self._rename(tmp, sha)
                del pending[sha]
        finally:
            for tmp in pending.values():
                tmp.unlink(missing_ok=True)
        self.sync()
        return refs

    def _stage(self, path: Path | str, pending: dict[bytes, Path]) -> tuple[BlobRef, Path | None]:
        """Hash `path`; unless the store (or this batch) has it, link it (else copy it) into tmp/,
        read-only, not yet fsynced. (its ref, the temp path or None)."""
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        sha = h.digest()
        ref = BlobRef(sha256=sha, size=size)
        if sha in pending or self.has(sha):
            return ref, None
        tmp = self._tmp / f"l-{os.getpid()}-{sha.hex()[:16]}-{time.monotonic_ns()}"
        try:
            os.link(path, tmp)
        except OSError:  # another filesystem: a copy, checked against the hash read above
            fh, tmp = self._tempfile()
            c = hashlib.sha256()
            try:
                with fh, open(path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        fh.write(chunk)
                        c.update(chunk)
                if c.digest() != sha:
                    raise LocalError(f"{path} changed while it was stored")
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        try:
            os.chmod(tmp, 0o444)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ref, tmp

    def adopt(self, path: Path | str) -> BlobRef:
        """Store the file at `path` without a second copy of its bytes: hashed, then hard-linked
        into place (the file must not change afterwards: the store and `path` share one inode).

        Falls back to a copy when `path` is on another filesystem. The link's mode is made
        read-only (0o444) so that the shared inode is not written through `path` by mistake.
        Durable when it returns (data, then rename); for many files use `adopt_many`."""
        (ref,) = self.adopt_many([path])
        return ref

    def iter_blobs(self) -> Iterator[tuple[bytes, int, float]]:
        """(sha256, size, mtime) of every blob in the store (temp files excluded)."""
        for sub in sorted(self.dir.iterdir()):
            if sub.name == "tmp" or len(sub.name) != 2 or not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                try:
                    sha = bytes.fromhex(f.name)
                    st = f.stat()
                except (ValueError, OSError):
                    continue
                if len(sha) == 32 and f.name.startswith(sub.name):
                    yield sha, st.st_size, st.st_mtime

    def remove(self, sha: bytes) -> None:
        self.path(sha).unlink(missing_ok=True)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except FileNotFoundError:  # removed since (garbage collection): nothing to make durable
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pieces(size: int) -> int:
    """How many PIECE-sized pieces a blob of `size` bytes has (the last may be short)."""
    return (size + PIECE - 1) // PIECE


class PartialBlob:
    """A blob being downloaded in pieces, in any order, from any number of holders.

    Data: ``tmp/part-<hex>`` (sized to the blob); the pieces held: ``tmp/part-<hex>.have``, two
    bitmaps of `pieces(size)` bits (bit i = byte i // 8, mask 0x80 >> i % 8): `have` (written)
    and `direct` (written from a holder of the whole blob: the only pieces this node serves to
    others before the blob is complete and verified). A piece is marked only after its bytes are
    written, so after a crash a marked piece is on disk (a power loss can still lose it: the
    final hash then fails and the download starts again). Nothing here is trusted: `verify`
    hashes the whole file before `commit` puts it into the store.

    The hash is kept as the bytes come (`_hashed`: the file's first `_at` bytes): a write at
    `_at` is hashed from memory as it is written, and `mark` goes on over pieces held after it
    (read back, at most `CATCH_UP` bytes per call), so `verify` has only the rest to read. Any
    write below `_at` (a piece fetched again, whatever its bytes) starts the hash over: the
    running hash is always of what the file holds.
    """

    CATCH_UP = 16 * PIECE  # bytes `mark` reads back to hash, at most per call (the event loop waits)

    def __init__(self, store: BlobStore, expect: BlobRef) -> None:
        self.ref = expect
        self.n = pieces(expect.size)
        nbytes = (self.n + 7) // 8
        name = "part-" + _hex(expect.sha256)
        self.path = store._tmp / name
        self._meta = store._tmp / (name + ".have")
        self._store = store
        self._meta_fd = -1
        self.have = bytearray(nbytes)
        self.direct = bytearray(nbytes)
        self._hashed = hashlib.sha256()
        self._at = 0
        try:
            meta = self._meta.read_bytes()
            if len(meta) == 2 * nbytes and self.path.stat().st_size == expect.size:
                self.have[:] = meta[:nbytes]
                self.direct[:] = meta[nbytes:]
        except OSError:
            pass
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(self._fd, expect.size)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def held(self, i: int) -> bool:
        return bool(self.have[i >> 3] & (0x80 >> (i & 7)))

    def missing(self) -> list[int]:
        return [i for i in range(self.n) if not self.held(i)]

    def complete(self) -> bool:
        return all(self.held(i) for i in range(self.n))

    def count(self) -> int:
        return sum(bin(b).count("1") for b in self.have)

    def span(self, i: int) -> tuple[int, int]:
        """(offset, length) of piece i."""
        off = i * PIECE
        return off, min(PIECE, self.ref.size - off)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset < 0 or offset + len(data) > self.ref.size:
            raise ProtocolError("piece bytes outside the blob")
        view = memoryview(data)
        if offset < self._at:
            self._restart_hash()  # bytes already hashed are written again
        if offset == self._at and view:
            self._hashed.update(view)
            self._at += len(view)
        while view:
            n = os.pwrite(self._fd, view, offset)
            offset += n
            view = view[n:]

    def _restart_hash(self) -> None:
        self._hashed = hashlib.sha256()
        self._at = 0

    def _catch_up(self, budget: int) -> None:
        """Hash on over the held pieces that follow `_at`, reading at most `budget` bytes."""
        size = self.ref.size
        while budget > 0 and self._at < size and self.held(self._at // PIECE):
            end = min((self._at // PIECE + 1) * PIECE, size, self._at + budget)
            chunk = os.pread(self._fd, end - self._at, self._at)
            if len(chunk) != end - self._at:
                return  # the file is shorter than it should be: verify will say so
            self._hashed.update(chunk)
            self._at = end
            budget -= len(chunk)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def mark(self, idx: list[int], direct: bool) -> None:
        for i in idx:
            self.have[i >> 3] |= 0x80 >> (i & 7)
            if direct:
                self.direct[i >> 3] |= 0x80 >> (i & 7)
        os.pwrite(self._fdm(), bytes(self.have) + bytes(self.direct), 0)
        self._catch_up(self.CATCH_UP)

    def _fdm(self) -> int:
        if self._meta_fd < 0:
            self._meta_fd = os.open(self._meta, os.O_RDWR | os.O_CREAT, 0o600)
        return self._meta_fd

    def forget(self, idx: list[int]) -> None:
        """Unmark pieces (bad bytes found after the final hash failed)."""
        for i in idx:
            self.have[i >> 3] &= ~(0x80 >> (i & 7)) & 0xFF
            self.direct[i >> 3] &= ~(0x80 >> (i & 7)) & 0xFF
        os.pwrite(self._fdm(), bytes(self.have) + bytes(self.direct), 0)

    def verify(self) -> bool:
        """Hash the rest of the file after the bytes hashed as they came (call in a thread):
        True if the whole file is the announced blob."""
        h = self._hashed.copy()
        off = self._at
        while off < self.ref.size:
            chunk = os.pread(self._fd, min(8 * PIECE, self.ref.size - off), off)
            if not chunk:
                return False
            h.update(chunk)
            off += len(chunk)
        return off == self.ref.size and h.digest() == bytes(self.ref.sha256)

    def commit(self) -> None:
        """Move the verified file into the store (call only after `verify` returned True)."""
        os.fsync(self._fd)
        self._close_all()
        self._store.adopt_verified(self.path, self.ref.sha256)
        self._meta.unlink(missing_ok=True)

    def discard(self) -> None:
        self._close_all()
        self.path.unlink(missing_ok=True)
        self._meta.unlink(missing_ok=True)

    def _close_all(self) -> None:
        self.close()
        if self._meta_fd >= 0:
            os.close(self._meta_fd)
            self._meta_fd = -1


def _fsync_file(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parallel(fn: Callable[[Path], None], items: list[Path]) -> None:
    """`fn` on every item, SYNC_THREADS at a time (fsyncs wait on the disk, not the CPU); the
    first error is raised after all have run."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(min(SYNC_THREADS, len(items)), thread_name_prefix="p2pci-fsync") as pool:
        for _ in pool.map(fn, items):
            pass
