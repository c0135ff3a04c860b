"""Which tree is built, its recipe from that tree, and `p2pci source-hash`."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.main import cli
from p2pci.core.errors import LocalError
from p2pci.runner.source import pack_source
from p2pci.runner.tree import offer_provenance, pack_tree, read_recipe, refuse_dirty, select_tree

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "GIT_CONFIG_NOSYSTEM": "1",
}
RECIPE = '[build]\nimage = "busybox"\ncommand = "cp hello.txt /out/"\n'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, env=ENV, capture_output=True, text=True
    ).stdout


def repo_with_project(tmp_path: Path) -> tuple[Path, Path]:
    """A repo with the project in proj/; two commits (hello v1, then v2)."""
    repo = tmp_path / "repo"
    proj = repo / "proj"
    proj.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "elsewhere").write_text("not in the project\n")
    (proj / "p2pci.toml").write_text(RECIPE)
    (proj / "hello.txt").write_text("v1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    (proj / "hello.txt").write_text("v2\n")
    (proj / "tool.sh").write_text("#!/bin/sh\n")
    (proj / "tool.sh").chmod(0o755)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "two")
    return repo, proj


def files(tar: Path) -> dict[str, bytes]:
    out = {}
    with tarfile.open(tar) as t:
        for m in t:
            if m.isreg():
                fh = t.extractfile(m)
                assert fh is not None
                out[m.name] = fh.read()
    return out


def sha_of(args: list[str]) -> str:
    r = CliRunner().invoke(cli, ["source-hash", *args])
    assert r.exit_code == 0, r.output
    return r.stdout.split()[0]


def test_source_hash_is_what_publish_packs(tmp_path: Path) -> None:
    repo, proj = repo_with_project(tmp_path)
    sha, _ = pack_source(proj, tmp_path / "p.tar")  # the historical packer: HEAD of proj/
    assert sha_of([str(proj)]) == sha.hex()
    assert sha_of([str(proj), "--rev", "HEAD"]) == sha.hex()
    t = select_tree(proj)
    assert t.mode == "git" and t.path == "proj" and t.commit == git(repo, "rev-parse", "HEAD").strip()
    assert t.tree == git(repo, "rev-parse", "HEAD:proj").strip()
    assert pack_tree(t, tmp_path / "t.tar")[0] == sha

    # An older commit: its own bytes.
    old = sha_of([str(proj), "--rev", "HEAD~1"])
    assert old != sha.hex()
    pack_tree(select_tree(proj, rev="HEAD~1"), tmp_path / "old.tar")
    assert files(tmp_path / "old.tar") == {"hello.txt": b"v1\n", "p2pci.toml": RECIPE.encode()}

    # A clone elsewhere, with other timestamps and another umask: the same hash.
    clone = tmp_path / "clone"
    old_umask = os.umask(0o077)
    try:
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, env=ENV)
    finally:
        os.umask(old_umask)
    os.utime(clone / "proj" / "hello.txt", (1, 1))
    assert sha_of([str(clone / "proj")]) == sha.hex()

    r = CliRunner().invoke(cli, ["source-hash", str(proj), "--json"])
    obj = json.loads(r.stdout)
    assert obj["sha256"] == sha.hex() and obj["git_commit"] == t.commit and obj["git_tree"] == t.tree
    assert obj["mode"] == "git" and obj["dirty"] is False
    assert offer_provenance(t) == {"commit": t.commit, "tree": t.tree}


def test_dirty_working_copy(tmp_path: Path) -> None:
    repo, proj = repo_with_project(tmp_path)
    clean = sha_of([str(proj)])
    (proj / "hello.txt").write_text("v3 uncommitted\n")
    (proj / "p2pci.toml").write_text(RECIPE.replace("cp hello.txt", "cp -v hello.txt"))
    (proj / "new.txt").write_text("untracked\n")
    (proj / ".gitignore").write_text("ignored.log\n")
    (proj / "ignored.log").write_text("junk\n")
    (proj / "tool.sh").unlink()

    t = select_tree(proj)
    assert sorted(t.changes) == [
        f"proj/{n}" for n in (".gitignore", "hello.txt", "new.txt", "p2pci.toml", "tool.sh")
    ]
    with pytest.raises(LocalError) as e:
        refuse_dirty(t)
    msg = str(e.value)
    assert "uncommitted changes" in msg and "hello.txt" in msg and "--dirty" in msg and t.commit[:12] in msg  # type: ignore[index]
    # Without --dirty the committed recipe and files, whatever the working copy says.
    assert read_recipe(t).command == ("sh", "-c", "cp hello.txt /out/")
    assert sha_of([str(proj)]) == clean
    r = CliRunner().invoke(cli, ["source-hash", str(proj)])
    assert "5 uncommitted change(s) are not included" in r.stderr

    # --dirty: the working tree as git sees it (untracked yes, ignored and deleted no).
    d = select_tree(proj, dirty=True)
    assert d.mode == "working-tree"
    assert offer_provenance(d) == {"commit": None, "tree": None}  # no false claim about a commit
    assert read_recipe(d).command == ("sh", "-c", "cp -v hello.txt /out/")
    pack_tree(d, tmp_path / "d.tar")
    assert sorted(files(tmp_path / "d.tar")) == [".gitignore", "hello.txt", "new.txt", "p2pci.toml"]
    assert files(tmp_path / "d.tar")["hello.txt"] == b"v3 uncommitted\n"
    dirty = sha_of([str(proj), "--dirty"])
    assert dirty != clean
    # Committing exactly that working tree gives the same hash from git.
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "three")
    assert sha_of([str(proj)]) == dirty


def test_not_git_and_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "p2pci.toml").write_text(RECIPE)
    sha, _ = pack_source(plain, tmp_path / "p.tar")
    assert sha_of([str(plain)]) == sha.hex()
    assert select_tree(plain).mode == "dir"
    r = CliRunner().invoke(cli, ["source-hash", str(plain), "--rev", "HEAD"])
    assert r.exit_code == 2 and "--rev needs a git work tree" in r.stderr
    _, proj = repo_with_project(tmp_path)
    r = CliRunner().invoke(cli, ["source-hash", str(proj), "--rev", "nope"])
    assert r.exit_code == 2 and "no commit 'nope'" in r.stderr
    r = CliRunner().invoke(cli, ["source-hash", str(proj), "--rev", "--upload-pack=x"])
    assert r.exit_code == 2 and "bad revision" in r.stderr
    r = CliRunner().invoke(cli, ["source-hash", str(proj), "--rev", "HEAD", "--dirty"])
    assert r.exit_code == 2 and "exclude each other" in r.stderr


def test_publish_refuses_a_dirty_tree_before_anything_else(tmp_path: Path) -> None:
    _, proj = repo_with_project(tmp_path)
    (proj / "hello.txt").write_text("changed\n")
    home = tmp_path / "h"  # no daemon, no key: the refusal comes first
    r = CliRunner().invoke(cli, ["--home", str(home), "publish", str(proj)])
    assert r.exit_code == 2
    assert "uncommitted changes (proj/hello.txt)" in r.stderr and "--dirty" in r.stderr
    assert not (home / "blobs").exists()  # nothing packed
    r = CliRunner().invoke(cli, ["--home", str(home), "publish", str(proj), "--dirty"])
    assert r.exit_code == 2 and "uncommitted" not in r.stderr  # got past the check: now no daemon


def test_publish_reads_the_recipe_of_the_commit(tmp_path: Path) -> None:
    repo, proj = repo_with_project(tmp_path)
    (proj / "p2pci.toml").unlink()
    git(repo, "commit", "-qam", "no recipe")
    (proj / "p2pci.toml").write_text(RECIPE)  # only in the working copy
    t = select_tree(proj, rev="HEAD")
    with pytest.raises(LocalError, match="no p2pci.toml in commit .* commit it, or pass --dirty"):
        read_recipe(t)
