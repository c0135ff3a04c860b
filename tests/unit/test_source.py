"""Deterministic source packing and hostile-tar-safe unpacking."""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.errors import BuildError
from p2pci.runner.source import pack_source, unpack_source
from tests.unit.test_source_tree import git


def make_tree(root: Path) -> None:
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "a.c").write_text("int main(){return 0;}\n")
    (root / "src" / "deep" / "b.txt").write_text("b\n")
    (root / "build.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "build.sh", 0o700)
    (root / "README").write_text("readme\n")
    os.chmod(root / "README", 0o600)
    os.symlink("src/a.c", root / "link")
    (root / ".git").mkdir()
    (root / ".git" / "junk").write_text("x")
    (root / ".p2pci").mkdir()
    (root / ".p2pci" / "cache").write_text("x")


def members(tar: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar) as t:
        return t.getmembers()


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    make_tree(a)
    make_tree(b)
    os.utime(b / "README", (1, 1))  # mtimes, umask and location do not matter
    os.chmod(b / "README", 0o640)
    da = pack_source(a, tmp_path / "a.tar")
    db = pack_source(b, tmp_path / "b.tar")
    assert da == db
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    ms = members(tmp_path / "a.tar")
    names = [m.name for m in ms]
    assert names == ["README", "build.sh", "link", "src", "src/a.c", "src/deep", "src/deep/b.txt"]
    by = {m.name: m for m in ms}
    assert by["README"].mode == 0o644 and by["build.sh"].mode == 0o755 and by["src"].mode == 0o755
    assert by["link"].issym() and by["link"].linkname == "src/a.c"
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in ms)
    assert pack_source(a, tmp_path / "c.tar", mtime=1700000000) != da


def test_order_seed_permutes_but_keeps_content(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    make_tree(tmp_path / "t")
    base = pack_source(tmp_path / "t", tmp_path / "0.tar")
    orders = set()
    for seed in range(8):
        pack_source(tmp_path / "t", tmp_path / f"s{seed}.tar", order_seed=seed)
        ms = members(tmp_path / f"s{seed}.tar")
        orders.add(tuple(m.name for m in ms))
        names = [m.name for m in ms]
        for m in ms:  # parents first
            if "/" in m.name:
                assert names.index(m.name.rpartition("/")[0]) < names.index(m.name)
        assert sorted(names) == sorted(m.name for m in members(tmp_path / "0.tar"))
    assert len(orders) > 1
    assert base[1] > 0


def test_git_archive_of_head(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sub = repo / "proj"
    sub.mkdir(parents=True)
    (sub / "f").write_text("committed\n")
    (repo / "other").write_text("x\n")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        git(repo, *cmd)
    (sub / "f").write_text("dirty\n")
    (sub / "untracked").write_text("u\n")
    pack_source(sub, tmp_path / "g.tar")
    with tarfile.open(tmp_path / "g.tar") as t:
        assert t.getnames() == ["f"]
        fh = t.extractfile("f")
        assert fh is not None and fh.read() == b"committed\n"


def test_roundtrip_unpack(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    make_tree(tmp_path / "t")
    pack_source(tmp_path / "t", tmp_path / "t.tar", order_seed=3)
    unpack_source(tmp_path / "t.tar", tmp_path / "u")
    assert (tmp_path / "u" / "src" / "deep" / "b.txt").read_text() == "b\n"
    assert os.readlink(tmp_path / "u" / "link") == "src/a.c"
    assert (tmp_path / "u" / "build.sh").stat().st_mode & 0o777 == 0o755
    assert not (tmp_path / "u" / ".git").exists()


def hostile(members: list[tuple[str, str, str | bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
                t.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
                t.addfile(ti)
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                t.addfile(ti)
            else:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
    return buf.getvalue()


@pytest.mark.parametrize(
    "members_",
    [
        [("../evil", "file", b"x")],
        [("/etc/evil", "file", b"x")],
        [("a/../../evil", "file", b"x")],
        [("l", "sym", "/tmp"), ("l/evil", "file", b"x")],
        [("f", "file", b"x"), ("f", "file", b"y")],
        [("h", "hard", "/etc/passwd")],
        [("p", "fifo", "")],
        [("f", "file", b"x"), ("f/g", "file", b"y")],
    ],
)
def test_hostile_tars_rejected(tmp_path: Path, members_: list[tuple[str, str, str | bytes]]) -> None:
    (tmp_path / "h.tar").write_bytes(hostile(members_))
    with pytest.raises(BuildError):
        unpack_source(tmp_path / "h.tar", tmp_path / "out")
    assert not (tmp_path / "evil").exists()


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=2048))
def test_garbage_never_crashes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    d = tmp_path_factory.mktemp("g")
    (d / "x.tar").write_bytes(data)
    try:
        unpack_source(d / "x.tar", d / "out")
    except BuildError:
        pass


def test_unpack_applies_the_tar_mtimes(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    make_tree(tmp_path / "t")
    pack_source(tmp_path / "t", tmp_path / "t.tar", order_seed=5, mtime=1700000000)
    unpack_source(tmp_path / "t.tar", tmp_path / "u")
    for p in [tmp_path / "u", *(tmp_path / "u").rglob("*")]:
        assert os.lstat(p).st_mtime_ns == 1700000000 * 10**9, p


def test_uncommitted_changes_are_reported(tmp_path: Path) -> None:
    from p2pci.runner.source import uncommitted_changes

    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "f").write_text("1")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        git(repo, *cmd)
    assert uncommitted_changes(repo) == []
    (repo / "f").write_text("2")
    (repo / "new").write_text("n")
    assert sorted(uncommitted_changes(repo)) == ["f", "new"]
    assert uncommitted_changes(tmp_path) == []  # not a work tree


_names = st.text(alphabet="abcXYZ019_-.é", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..", ".git", ".p2pci")
)
_trees = st.dictionaries(
    st.lists(_names, min_size=1, max_size=3).map(tuple),
    st.tuples(st.binary(max_size=64), st.booleans()),
    max_size=12,
).filter(lambda t: not any(a != b and b[: len(a)] == a for a in t for b in t))  # no name is both file and dir


def _materialise(root: Path, tree: dict[tuple[str, ...], tuple[bytes, bool]], order: list[int]) -> None:
    root.mkdir()
    items = sorted(tree.items())
    for i in order:
        parts, (data, exe) = items[i]
        p = root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o755 if exe else 0o600)


@settings(max_examples=30, deadline=None)
@given(tree=_trees, seed=st.integers(0, 1000), rnd=st.randoms(use_true_random=False))
def test_pack_is_a_function_of_the_tree(
    tmp_path_factory: pytest.TempPathFactory,
    tree: dict[tuple[str, ...], tuple[bytes, bool]],
    seed: int,
    rnd: random.Random,
) -> None:
    d = tmp_path_factory.mktemp("p")
    order = list(range(len(tree)))
    _materialise(d / "a", tree, order)
    rnd.shuffle(order)
    _materialise(d / "b", tree, order)  # the same tree, made in another order
    assert pack_source(d / "a", d / "a.tar") == pack_source(d / "b", d / "b.tar")
    assert (d / "a.tar").read_bytes() == (d / "b.tar").read_bytes()
    # unpacking a shuffled pack and packing again gives the same bytes too
    pack_source(d / "a", d / "s.tar", order_seed=seed)
    unpack_source(d / "s.tar", d / "u")
    assert pack_source(d / "u", d / "u.tar") == pack_source(d / "a", d / "a2.tar")
