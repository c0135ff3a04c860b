"""Which tree is built, its recipe from that same tree, and its source hash.

`select_tree(dir)` decides what `publish`, `try` and `source-hash` pack:

* `git`: DIR is (inside) a git work tree whose commit contains it: the commit
  (HEAD, or `rev`) is packed with `git archive COMMIT:<path>`, and p2pci.toml
  is read from that commit too, never from the working copy. The uncommitted
  changes under DIR are listed (`changes`): `publish` refuses to go on while
  there are some, unless `--dirty`.
* `working-tree` (`--dirty`): the files git would commit from DIR as they are
  on disk: tracked and untracked-but-not-ignored files (`git ls-files
  --cached --others --exclude-standard`), deleted ones left out.
* `dir`: not a git work tree (or no commit yet): a sorted walk of DIR.

Every mode writes the same deterministic tar format as `pack_source` (which is
exactly the `git` mode at HEAD, or the `dir` mode): so `p2pci source-hash DIR`
prints the SHA-256 that `p2pci publish DIR` offers, and anyone with the same
commit can compare.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from p2pci.core.errors import LocalError
from p2pci.recipe import RECIPE_FILE, Recipe, load_recipe, parse_recipe
from p2pci.runner.source import (
    SKIP_DIRS,
    _Entry,
    _git,
    _git_entries,
    _write,
    pack_source,
    uncommitted_changes,
)

Mode = Literal["git", "working-tree", "dir"]


@dataclass(frozen=True)
class SourceTree:
    dir: Path
    mode: Mode
    commit: str | None = None  # git: the commit packed (hex)
    tree: str | None = None  # git: the tree object of DIR in that commit (hex)
    path: str = ""  # git: DIR relative to the top of the work tree ("" at the top)
    top: Path | None = None  # git: the top of the work tree
    changes: tuple[str, ...] = ()  # uncommitted changes under DIR (vs HEAD)

    def describe(self) -> str:
        if self.mode == "git":
            where = f" path {self.path}" if self.path else ""
            return f"git commit {self.commit} (tree {self.tree}{where})"
        if self.mode == "working-tree":
            base = f" on top of commit {self.commit}" if self.commit else ""
            return f"the working tree as it is on disk{base}, {len(self.changes)} uncommitted change(s)"
        return "a directory walk (not a git work tree)"


def _git_out(dir: Path, *args: str) -> str | None:
    try:
        r = _git(dir, *args)
    except FileNotFoundError:  # no git installed
        return None
    if r.returncode != 0:
        return None
    return r.stdout.decode(errors="replace").strip()


def select_tree(dir: Path, *, rev: str | None = None, dirty: bool = False) -> SourceTree:
    """The tree to pack for DIR. `rev` (git only) picks a commit; `dirty` the working tree."""
    dir = Path(dir)
    if not dir.is_dir():
        raise LocalError(f"not a directory: {dir}")
    if rev is not None and dirty:
        raise LocalError("--rev and --dirty exclude each other")
    if rev is not None and (rev.startswith("-") or "\x00" in rev):
        raise LocalError(f"bad revision {rev!r}")
    inside = _git_out(dir, "rev-parse", "--is-inside-work-tree") == "true"
    head = _git_out(dir, "rev-parse", "--verify", "-q", "HEAD^{commit}") if inside else None
    if not inside or (head is None and rev is None):
        if rev is not None:
            raise LocalError(f"--rev needs a git work tree: {dir} is not in one")
        return SourceTree(dir=dir, mode="dir")
    top = Path(_git_out(dir, "rev-parse", "--show-toplevel") or dir)
    prefix = (_git_out(dir, "rev-parse", "--show-prefix") or "").rstrip("/")
    changes = tuple(uncommitted_changes(dir)) if rev is None else ()
    if dirty:
        return SourceTree(dir=dir, mode="working-tree", commit=head, path=prefix, top=top, changes=changes)
    commit = _git_out(dir, "rev-parse", "--verify", "-q", f"{rev or 'HEAD'}^{{commit}}")
    if commit is None:
        raise LocalError(f"no commit {rev!r} in {top}")
    tree = _git_out(
        top, "rev-parse", "--verify", "-q", f"{commit}:{prefix}" if prefix else f"{commit}^{{tree}}"
    )
    if tree is None:
        if rev is None:  # HEAD does not contain DIR yet: pack_source walks it, and so do we
            return SourceTree(dir=dir, mode="dir")
        raise LocalError(f"commit {commit[:12]} has no directory {prefix!r}")
    return SourceTree(dir=dir, mode="git", commit=commit, tree=tree, path=prefix, top=top, changes=changes)


def refuse_dirty(t: SourceTree) -> None:
    """`publish` without --dirty: the working copy must be the commit that is built."""
    if t.mode == "git" and t.changes:
        shown = ", ".join(t.changes[:5]) + (f", … ({len(t.changes)} in all)" if len(t.changes) > 5 else "")
        raise LocalError(
            f"{t.dir} has uncommitted changes ({shown}): publish builds commit {(t.commit or '')[:12]} "
            f"and reads {RECIPE_FILE} from it, so these would not be built. Commit them, or pass "
            "--dirty to build the working tree as it is"
        )


def read_recipe(t: SourceTree) -> Recipe:
    """p2pci.toml from the tree that is built."""
    if t.mode != "git":
        return load_recipe(t.dir)
    assert t.top is not None and t.commit is not None
    name = f"{t.path}/{RECIPE_FILE}" if t.path else RECIPE_FILE
    try:
        r = _git(t.top, "cat-file", "blob", f"{t.commit}:{name}")
    except FileNotFoundError:
        raise LocalError("git is not installed") from None
    if r.returncode != 0:
        raise LocalError(
            f"no {RECIPE_FILE} in commit {t.commit[:12]} ({t.dir}): commit it, or pass --dirty to "
            "build the working tree"
        )
    try:
        text = r.stdout.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LocalError(f"{RECIPE_FILE} in commit {t.commit[:12]} is not UTF-8: {e}") from None
    return parse_recipe(text, t.dir)


def pack_tree(t: SourceTree, dest: Path, *, order_seed: int | None = None) -> tuple[bytes, int]:
    """Pack the selected tree into `dest`; (sha256, size) of `dest`."""
    if t.mode == "dir":
        return pack_source(t.dir, dest, order_seed=order_seed)
    if t.mode == "git":
        assert t.top is not None and t.commit is not None
        with tempfile.TemporaryDirectory(prefix="p2pci-pack-") as tmp:
            archive = Path(tmp) / "git.tar"
            treeish = f"{t.commit}:{t.path}" if t.path else t.commit
            r = _git(t.top, "archive", "--format=tar", "-o", str(archive), treeish)
            if r.returncode != 0:
                raise LocalError(
                    f"git archive failed in {t.dir}: {r.stderr.decode(errors='replace').strip()}"
                )
            with tarfile.open(archive, "r:") as src:
                return _write(list(_git_entries(src)), dest, order_seed, 0, src)
    return _write(list(_working_entries(t.dir)), dest, order_seed, 0, None)


def _working_entries(dir: Path) -> list[_Entry]:
    r = _git(dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if r.returncode != 0:
        raise LocalError(f"git ls-files failed in {dir}: {r.stderr.decode(errors='replace').strip()}")
    entries: dict[str, _Entry] = {}
    for raw in r.stdout.split(b"\0"):
        if not raw:
            continue
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LocalError(f"file name is not UTF-8: {raw!r}") from None
        parts = path.split("/")
        if any(p in SKIP_DIRS for p in parts) or path in entries:
            continue
        host = dir / path
        try:
            st = os.lstat(host)
        except FileNotFoundError:  # deleted in the working tree
            continue
        if stat.S_ISLNK(st.st_mode):
            entry = _Entry(path, "symlink", linkname=os.readlink(host))
        elif stat.S_ISREG(st.st_mode):
            entry = _Entry(path, "file", executable=bool(st.st_mode & 0o111), size=st.st_size, host_path=host)
        elif stat.S_ISDIR(st.st_mode):
            continue  # a submodule: git archive leaves them out too
        else:
            raise LocalError(f"cannot pack {host}: not a regular file, directory or symlink")
        entries[path] = entry
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            entries.setdefault(parent, _Entry(parent, "dir"))
    return list(entries.values())


def provenance(t: SourceTree, sha256: bytes, size: int) -> dict[str, Any]:
    """What a verdict is about, as far as the source goes (JSON-ready)."""
    return {
        "source_sha256": sha256.hex(),
        "source_size": size,
        "mode": t.mode,
        "git_commit": t.commit,
        "git_tree": t.tree if t.mode == "git" else None,
        "git_path": t.path if t.mode != "dir" else None,
        "dirty": t.mode == "working-tree",
    }


def offer_provenance(t: SourceTree) -> dict[str, str | None]:
    """The offer's `provenance` commit and tree: only when exactly that commit is built.

    A `--dirty` build names no commit (its base commit would be a false claim).
    """
    if t.mode != "git":
        return {"commit": None, "tree": None}
    return {"commit": t.commit, "tree": t.tree}
