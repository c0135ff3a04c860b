"""Reading `/out` of a finished build from a tar stream, never following links.

The stream is what `container.get_archive("/out")` returns: members named
`out`, `out/a`, ... Only directories and regular files are accepted; a
symlink, a hard link to something outside `/out`, a device, a fifo, a
setuid/setgid file, a sparse member, a negative size, or a name with a NUL byte
or a part over 255 bytes is an `OutputError` naming the path, and so is
anything tarfile raises on a hostile header. Regular files are
copied to a host directory (created by us, so nothing is written through a
link) and hashed on the way; the total is capped, and so is the depth
(MAX_TREE_DEPTH levels, checked before a directory is made; the walk is
iterative, so a deep /out is an OutputError, never a RecursionError).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from p2pci.core.results import MAX_MANIFEST_ENTRIES, ManifestEntry
from p2pci.runner.source import MAX_TREE_DEPTH, too_deep

_CHUNK = 1 << 20
_NAME_MAX = 255  # bytes in one path component (Linux NAME_MAX)


class OutputError(Exception):
    """The outputs are unacceptable; the message names the path."""


class IterStream(io.RawIOBase):
    """A file object over an iterator of byte chunks (docker's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


TOO_MANY_FILES = "more than"  # how the file-count refusal starts (the worker declines it as `outputs`)


def read_outputs(
    stream: io.RawIOBase | io.BufferedIOBase,
    dest: Path,
    *,
    max_bytes: int,
    root: str = "out",
    max_files: int = MAX_MANIFEST_ENTRIES,
) -> tuple[ManifestEntry, ...]:
    """Copy the regular files of the tar stream to `dest`; return the sorted manifest.
    More than `max_files` files (what a manifest may list) is an OutputError, found while reading."""
    dest.mkdir(mode=0o755, parents=True, exist_ok=False)
    made_dirs: set[str] = {""}
    files: dict[str, ManifestEntry] = {}
    total = 0
    try:
        # tarfile.open already reads the first header: same guard as the rest of the stream
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="strict") as tar:
            for m in tar:
                rel = _relative(m.name, root)
                if rel is None:
                    continue  # the /out directory itself
                shown = "/out/" + rel
                if too_deep(rel):
                    raise OutputError(f"{shown[:80]}... is deeper than {MAX_TREE_DEPTH} levels")
                if m.issym():
                    raise OutputError(
                        f"{shown} is a symlink (to {m.linkname!r}): outputs must be regular files"
                    )
                if m.ischr() or m.isblk():
                    raise OutputError(f"{shown} is a device: outputs must be regular files")
                if m.isfifo():
                    raise OutputError(f"{shown} is a fifo: outputs must be regular files")
                if m.mode & 0o6000:
                    raise OutputError(f"{shown} has the setuid/setgid bit: not allowed in outputs")
                parent = rel.rpartition("/")[0]
                _make_dirs(dest, parent, made_dirs, files)
                if m.isdir():
                    if rel in files:
                        raise OutputError(f"{shown} is both a file and a directory")
                    _make_dirs(dest, rel, made_dirs, files)
                elif (m.islnk() or m.isreg()) and len(files) >= max_files:
                    raise OutputError(
                        f"{TOO_MANY_FILES} {max_files} files in /out: a result lists at most {max_files}"
                    )
                elif m.islnk():
                    target = _relative(m.linkname, root)
                    if target is None or target not in files:
                        raise OutputError(f"{shown} is a hard link to {m.linkname!r}, outside /out")
                    entry = files[target]
                    total += entry.size
                    if total > max_bytes:
                        raise OutputError(f"outputs exceed the /out limit of {max_bytes >> 20} MiB")
                    os.close(_new_file(dest, rel, m, made_dirs, files))
                    shutil.copyfile(dest / target, dest / rel, follow_symlinks=False)
                    files[rel] = ManifestEntry(rel, entry.size, m.mode & 0o777, entry.sha256)
                elif m.isreg():
                    if m.size < 0:  # a pax size=-N would lower the running total
                        raise OutputError(f"{shown} has a negative size")
                    if m.sparse is not None:  # docker never makes one; tarfile trusts their maps
                        raise OutputError(f"{shown} is a sparse file: not allowed in outputs")
                    total += m.size
                    if total > max_bytes:
                        raise OutputError(f"outputs exceed the /out limit of {max_bytes >> 20} MiB")
                    fd = _new_file(dest, rel, m, made_dirs, files)
                    h = hashlib.sha256()
                    src = tar.extractfile(m)
                    assert src is not None
                    with os.fdopen(fd, "wb") as out:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                    files[rel] = ManifestEntry(rel, m.size, m.mode & 0o777, h.digest())
                else:
                    raise OutputError(f"{shown} is not a regular file or directory")
    except UnicodeError:
        raise OutputError("an output file name is not valid UTF-8") from None
    except (tarfile.TarError, EOFError, ValueError, OverflowError) as e:
        # ValueError: tarfile's own int() of hostile pax/sparse numbers (GNU.sparse.map=x);
        # OverflowError: a pax record length beyond ssize_t (its regex.match(buf, pos))
        raise OutputError(f"cannot read /out: {e}") from None
    return tuple(sorted(files.values(), key=lambda e: e.path))


def _relative(name: str, root: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or parts[0] != root:
        raise OutputError(f"unexpected entry {name!r} in the /out archive")
    if any(p == ".." for p in parts):
        raise OutputError(f"unsafe name {name!r} in the /out archive")
    if "\x00" in name or any(len(p.encode("utf-8", "surrogateescape")) > _NAME_MAX for p in parts):
        raise OutputError(
            f"unsafe name {name[:80]!r}... in the /out archive (NUL byte or a part over 255 bytes)"
        )
    rest = "/".join(parts[1:])
    return rest or None


def _make_dirs(dest: Path, rel: str, made: set[str], files: dict[str, ManifestEntry]) -> None:
    """Create `rel` and its missing parents, outermost first. Iterative."""
    missing: list[str] = []
    while rel not in made:
        missing.append(rel)
        rel = rel.rpartition("/")[0]
    for d in reversed(missing):
        if d in files:
            raise OutputError(f"/out/{d} is both a file and a directory")
        os.mkdir(dest / d, 0o755)
        made.add(d)


def _new_file(
    dest: Path, rel: str, m: tarfile.TarInfo, made: set[str], files: dict[str, ManifestEntry]
) -> int:
    if rel in files or rel in made:
        raise OutputError(f"/out/{rel} appears twice in the /out archive")
    mode = (m.mode & 0o777) | 0o600
    return os.open(dest / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
