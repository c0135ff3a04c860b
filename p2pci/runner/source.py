"""Deterministic source tarballs, and their safe extraction on a worker.

`pack_source` gives the same bytes for the same tree on any machine:
git archive of HEAD when the directory is (inside) a git work tree whose
HEAD contains it, else a walk of the directory; names sorted bytewise, every
mtime the same (0 or the given SOURCE_DATE_EPOCH), uid/gid 0, no user or
group names, modes 0644/0755 (symlinks kept as symlinks), no `.git` and no
`.p2pci` directories. `order_seed` permutes the order of the entries inside
each directory (parents still come before children): the build should not
depend on it, and `p2pci try` checks that it does not.

`unpack_source` is the worker side: the tar came from the network, so only
regular files, directories and symlinks are accepted, no name may escape the
destination, nothing is ever written through a symlink, and sizes are capped:
the unpacked total may not exceed the worker's `max_source_mb`, counted at
each file's apparent size (a sparse member counts as the size it declares,
checked before a byte of it is written; within the cap it is still refused:
pack_source never makes one and tarfile follows its map blindly), sizes may not
be negative, and no entry may be deeper than MAX_TREE_DEPTH levels. Whatever
tarfile raises on hostile headers (also from tarfile.open, which reads the first
one) becomes a BuildError. Every walker here is iterative: a peer-chosen depth
never reaches Python's recursion limit.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from p2pci.core.errors import BuildError, LocalError

SKIP_DIRS = frozenset({".git", ".p2pci"})
_CHUNK = 1 << 20
MAX_TREE_DEPTH = 256  # path components of one entry, in a source or in /out
DEFAULT_MAX_SOURCE_BYTES = 256 << 20  # the default [worker] max_source_mb


def check_depth(path: str, where: str = "source tree") -> None:
    """LocalError if `path` has more than MAX_TREE_DEPTH components (the publisher's side)."""
    if too_deep(path):
        raise LocalError(f"{where}: {path[:80]!r}... is deeper than {MAX_TREE_DEPTH} levels")


def too_deep(path: str) -> bool:
    return path.count("/") + 1 > MAX_TREE_DEPTH


@dataclass(frozen=True)
class _Entry:
    path: str  # "/"-separated, relative, no "." or ".." parts
    kind: str  # "file" | "dir" | "symlink"
    executable: bool = False
    linkname: str = ""
    size: int = 0
    host_path: Path | None = None  # walk mode: read from here
    member: tarfile.TarInfo | None = None  # git mode: read from the archive


def pack_source(dir: Path, dest: Path, *, order_seed: int | None = None, mtime: int = 0) -> tuple[bytes, int]:
    """Pack `dir` into the tar file `dest`; returns (sha256, size) of `dest`."""
    dir = Path(dir)
    if not dir.is_dir():
        raise LocalError(f"not a directory: {dir}")
    if mtime < 0:
        raise LocalError("mtime must not be negative")
    with tempfile.TemporaryDirectory(prefix="p2pci-pack-") as tmp:
        archive = _git_archive(dir, Path(tmp) / "git.tar")
        if archive is not None:
            with tarfile.open(archive, "r:") as src:
                entries = list(_git_entries(src))
                return _write(entries, dest, order_seed, mtime, src)
        entries = list(_walk_entries(dir))
        return _write(entries, dest, order_seed, mtime, None)


def _git(dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(dir), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"},
    )


def _git_archive(dir: Path, out: Path) -> Path | None:
    """git archive of HEAD:<dir> into `out`, or None when that is not possible."""
    try:
        treeish = _git_archive_possible(dir)
    except FileNotFoundError:  # no git installed
        return None
    if treeish is None:  # not a work tree, no commit yet, or the dir is not in HEAD: pack the files
        return None
    top = Path(_git(dir, "rev-parse", "--show-toplevel").stdout.decode().strip())
    r = _git(top, "archive", "--format=tar", "-o", str(out), treeish)
    if r.returncode != 0:
        raise LocalError(f"git archive failed in {dir}: {r.stderr.decode(errors='replace').strip()}")
    return out


def uncommitted_changes(dir: Path) -> list[str]:
    """Paths under `dir` that differ from HEAD (what a git-archive pack leaves out)."""
    try:
        if _git_archive_possible(Path(dir)) is None:
            return []
        r = _git(Path(dir), "status", "--porcelain", "--untracked-files=normal", "--", ".")
    except FileNotFoundError:
        return []
    return [line[3:] for line in r.stdout.decode(errors="replace").splitlines() if len(line) > 3]


def _git_archive_possible(dir: Path) -> str | None:
    inside = _git(dir, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != b"true":
        return None
    if _git(dir, "rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        return None
    prefix = _git(dir, "rev-parse", "--show-prefix").stdout.decode().strip()
    treeish = f"HEAD:{prefix}" if prefix else "HEAD"
    if _git(dir, "cat-file", "-e", treeish).returncode != 0:
        return None
    return treeish


def _skipped(parts: list[str]) -> bool:
    return any(p in SKIP_DIRS for p in parts)


def _git_entries(src: tarfile.TarFile) -> Iterator[_Entry]:
    for m in src:
        if m.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
            continue
        path = m.name.rstrip("/")
        if path in ("", "."):
            continue
        parts = path.split("/")
        if _skipped(parts):
            continue
        check_depth(path, "cannot pack the git tree")
        if m.isdir():
            yield _Entry(path, "dir")
        elif m.issym():
            yield _Entry(path, "symlink", linkname=m.linkname)
        elif m.isreg():
            yield _Entry(path, "file", executable=bool(m.mode & 0o111), size=m.size, member=m)
        # git archive produces nothing else (submodules are not included)


def _walk_entries(root: Path) -> Iterator[_Entry]:
    """Depth-first, names sorted bytewise, parents before children; iterative (explicit stack)."""
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        d, rel = stack.pop()
        try:
            names = sorted(os.listdir(d), key=os.fsencode)
        except OSError as e:
            raise LocalError(f"cannot read directory {d}: {e}") from None
        subdirs: list[tuple[Path, str]] = []
        for name in names:
            if name in SKIP_DIRS:
                continue
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise LocalError(f"file name is not UTF-8: {d / name!r}") from None
            p = d / name
            path = f"{rel}/{name}" if rel else name
            check_depth(path, f"cannot pack {root}")
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                yield _Entry(path, "dir")
                subdirs.append((p, path))
            elif stat.S_ISLNK(st.st_mode):
                yield _Entry(path, "symlink", linkname=os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                yield _Entry(path, "file", executable=bool(st.st_mode & 0o111), size=st.st_size, host_path=p)
            else:
                raise LocalError(f"cannot pack {p}: not a regular file, directory or symlink")
        stack.extend(reversed(subdirs))  # `_ordered` sorts again: only the set of entries matters


def _ordered(entries: list[_Entry], order_seed: int | None) -> list[_Entry]:
    """Sorted bytewise; with a seed, siblings shuffled (parents still first)."""
    children: dict[str, list[_Entry]] = {}
    for e in entries:
        parent = e.path.rpartition("/")[0]
        children.setdefault(parent, []).append(e)
    # A file whose parent has no dir entry (cannot happen with git or a walk) still gets packed.
    rng = random.Random(order_seed) if order_seed is not None else None
    out: list[_Entry] = []
    seen_dirs: set[str] = set()

    def kids_of(parent: str) -> list[_Entry]:
        kids = sorted(children.get(parent, []), key=lambda e: e.path.encode())
        if rng is not None:
            rng.shuffle(kids)
        return kids

    # Pre-order, iterative: a stack of sibling lists, each consumed from the front.
    stack: list[list[_Entry]] = [kids_of("")[::-1]]
    while stack:
        top = stack[-1]
        if not top:
            stack.pop()
            continue
        e = top.pop()
        out.append(e)
        if e.kind == "dir":
            seen_dirs.add(e.path)
            stack.append(kids_of(e.path)[::-1])
    orphans = [e for parent, kids in children.items() if parent and parent not in seen_dirs for e in kids]
    out.extend(sorted(orphans, key=lambda e: e.path.encode()))
    return out


class _HashingWriter(io.RawIOBase):
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(b)
        self.f.write(data)
        self.h.update(data)
        self.size += len(data)
        return len(data)


def _write(
    entries: list[_Entry], dest: Path, order_seed: int | None, mtime: int, src: tarfile.TarFile | None
) -> tuple[bytes, int]:
    with open(dest, "wb") as f:
        w = _HashingWriter(f)
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
            for e in _ordered(entries, order_seed):
                ti = tarfile.TarInfo(e.path)
                ti.mtime = mtime
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if e.kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    tar.addfile(ti)
                elif e.kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.mode = 0o777
                    ti.linkname = e.linkname
                    tar.addfile(ti)
                else:
                    ti.type = tarfile.REGTYPE
                    ti.mode = 0o755 if e.executable else 0o644
                    ti.size = e.size
                    if e.host_path is not None:
                        with open(e.host_path, "rb") as fh:
                            tar.addfile(ti, fh)
                    else:
                        assert src is not None and e.member is not None
                        fh2 = src.extractfile(e.member)
                        assert fh2 is not None
                        with fh2:
                            tar.addfile(ti, fh2)
        return w.h.digest(), w.size


def unpack_source(
    tar_path: Path, dest: Path, *, max_bytes: int = DEFAULT_MAX_SOURCE_BYTES, max_entries: int = 1_000_000
) -> None:
    """Extract a (possibly hostile) source tar into the empty directory `dest`.

    Regular files get mode 0644/0755, directories 0755, symlinks are created
    as they are (they are only ever followed inside the build container);
    every entry gets the mtime the tar gives it (the top directory and implicit
    ones: the newest mtime in the tar).
    Raises BuildError naming the offending entry.
    """
    dest = Path(dest)
    dest.mkdir(mode=0o755, exist_ok=True)
    os.chmod(dest, 0o755)
    dirs: set[str] = {""}
    taken: set[str] = set()
    dir_times: dict[str, int] = {}
    newest = 0
    total = 0
    count = 0
    try:
        # tarfile.open already reads the first header: it is as hostile as the rest of the
        # stream, so it is under the same guard (a non-UTF-8 group name in the first header
        # once escaped as a UnicodeDecodeError; docs/testing.md "fuzz findings").
        with tarfile.open(tar_path, mode="r|", encoding="utf-8", errors="strict") as tar:
            for m in tar:
                count += 1
                if count > max_entries:
                    raise BuildError("source archive has too many entries")
                if m.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
                    continue
                path = _safe_rel(m.name)
                if path == "":
                    continue
                if too_deep(path):
                    raise BuildError(
                        f"bad source archive: {path[:60]!r}... is deeper than {MAX_TREE_DEPTH} levels"
                    )
                parent, _, _ = path.rpartition("/")
                _ensure_dirs(dest, parent, dirs, taken)
                if path in taken:
                    if m.isdir() and path in dirs:
                        continue
                    raise BuildError(f"bad source archive: duplicate entry {path!r}")
                target = dest / path
                mtime = int(m.mtime) if 0 <= m.mtime < 1 << 40 else 0
                newest = max(newest, mtime)
                if m.isdir():
                    os.mkdir(target, 0o755)
                    os.chmod(target, 0o755)
                    dirs.add(path)
                    dir_times[path] = mtime
                elif m.issym():
                    if "\x00" in m.linkname:
                        raise BuildError(f"bad source archive: bad link {path!r}")
                    os.symlink(m.linkname, target)
                    os.utime(target, (mtime, mtime), follow_symlinks=False)
                elif m.isreg():
                    if m.size < 0:  # a pax size=-N would lower the running total
                        raise BuildError(f"bad source archive: {path[:80]!r} has a negative size")
                    total += m.size  # the apparent size, also for a sparse member: checked before writing
                    if total > max_bytes:
                        raise BuildError(
                            f"source archive too large when unpacked: more than the worker's "
                            f"max_source_mb ({max_bytes >> 20} MiB) at {path[:80]!r}"
                        )
                    if m.sparse is not None:  # pack_source never makes one; tarfile trusts their maps
                        raise BuildError(f"bad source archive: {path[:80]!r} is a sparse file")
                    mode = 0o755 if m.mode & 0o111 else 0o644
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                    with os.fdopen(fd, "wb") as out:
                        fh = tar.extractfile(m)
                        assert fh is not None
                        while chunk := fh.read(_CHUNK):
                            out.write(chunk)
                    os.chmod(target, mode)
                    os.utime(target, (mtime, mtime), follow_symlinks=False)
                else:
                    raise BuildError(f"bad source archive: {path!r} is not a file, directory or symlink")
                taken.add(path)
        # The tar's mtimes (all equal when pack_source made it), so that make sees the same
        # "nothing is newer" on every worker. Directories last: filling them changed theirs.
        for path in sorted(dirs, key=lambda p: -p.count("/")):
            t = dir_times.get(path, newest)
            os.utime(dest / path if path else dest, (t, t), follow_symlinks=False)
    except (tarfile.TarError, UnicodeError, EOFError, ValueError, OverflowError) as e:
        # ValueError: tarfile's own int() of hostile pax/sparse numbers (GNU.sparse.map=x);
        # OverflowError: a pax record length beyond ssize_t (its regex.match(buf, pos))
        raise BuildError(f"bad source archive: {e}") from None
    except OSError as e:
        raise BuildError(f"cannot unpack source archive: {e}") from None


def _safe_rel(name: str) -> str:
    if "\x00" in name or name.startswith("/"):
        raise BuildError(f"bad source archive: unsafe name {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise BuildError(f"bad source archive: unsafe name {name!r}")
    return "/".join(parts)


def _ensure_dirs(dest: Path, rel: str, dirs: set[str], taken: set[str]) -> None:
    """Create the missing parents of an entry; never through a symlink or file. Iterative."""
    missing: list[str] = []
    while rel not in dirs:
        missing.append(rel)
        rel = rel.rpartition("/")[0]
    for d in reversed(missing):  # outermost first
        if d in taken:
            raise BuildError(f"bad source archive: {d!r} is used as a directory but is not one")
        os.mkdir(dest / d, 0o755)
        dirs.add(d)
        taken.add(d)
