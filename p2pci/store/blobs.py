"""Content-addressed blob store on disk (docs/internals.md "p2pci.store").

Layout: ``<dir>/ab/abcdef…`` where ``abcdef…`` is the lowercase hex sha256 of
the content. Every write goes to a temp file under ``<dir>/tmp/``, is hashed
while it is written, fsynced, and only renamed into place when hash and size
are right. A blob therefore appears under its hash complete and correct, or
not at all; a crash mid-write leaves at most a temp file (cleared on open).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import BlobRef

CHUNK = 1 << 16
STALE_TMP_S = 3600


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


class BlobStore:
    """Blobs keyed by sha256 under `dir` (created if missing)."""

    def __init__(self, dir: Path | str) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
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

    def _commit(self, tmp: Path, sha: bytes) -> None:
        final = self.path(sha)
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)  # atomic on one filesystem; an existing copy is identical
        _fsync_dir(final.parent)

    def _tempfile(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="w-")
        return os.fdopen(fd, "wb"), Path(name)

    def put_bytes(self, data: bytes) -> BlobRef:
        """Store `data`; returns its reference (idempotent)."""
        sha = hashlib.sha256(data).digest()
        ref = BlobRef(sha256=sha, size=len(data))
        if self.has(sha):
            return ref
        with self.writer(ref) as w:
            w.write(bytes(data))
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
                self._commit(tmp, sha)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return BlobRef(sha256=sha, size=size)

    @contextmanager
    def writer(self, expect: BlobRef) -> Iterator[BlobWriter]:
        """Write a blob announced as `expect` in pieces.

        On a clean exit the content is verified (size and sha256) and renamed
        into place; on a mismatch ProtocolError is raised and nothing is
        stored. On any exception inside the block the temp file is removed.
        """
        _hex(expect.sha256)
        if expect.size < 0:
            raise ProtocolError("negative blob size")
        fh, tmp = self._tempfile()
        w = BlobWriter(fh, expect)
        try:
            with fh:
                yield w
                w._check()
                fh.flush()
                os.fsync(fh.fileno())
            if self.has(expect.sha256):
                tmp.unlink()
            else:
                self._commit(tmp, expect.sha256)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def copy_out(self, sha: bytes, dest: Path | str) -> None:
        """Copy a stored blob to `dest` (LocalError if we do not hold it)."""
        src = self.path(sha)
        if not src.is_file():
            raise LocalError(f"no blob {_hex(sha)}")
        shutil.copyfile(src, dest)

    def adopt(self, path: Path | str) -> BlobRef:
        """Store the file at `path` without a second copy of its bytes: hashed, then hard-linked
        into place (the file must not change afterwards: the store and `path` share one inode).

        Falls back to a copy when `path` is on another filesystem. The link's mode is made
        read-only (0o444) so that the shared inode is not written through `path` by mistake."""
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
        sha = h.digest()
        if self.has(sha):
            return BlobRef(sha256=sha, size=size)
        tmp = self._tmp / f"l-{os.getpid()}-{sha.hex()[:16]}-{time.monotonic_ns()}"
        try:
            os.link(path, tmp)
        except OSError:
            return self.put_file(path)
        try:
            os.chmod(tmp, 0o444)
            self._commit(tmp, sha)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return BlobRef(sha256=sha, size=size)

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
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
