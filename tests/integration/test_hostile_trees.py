"""Hostile trees a peer can send a worker (issue 14): a sparse source tar that would unpack to
1 GiB, and trees 2,000 levels deep, in a source and in /out. Each is a clear BuildError or
OutputError, checked before the disk is written, and nothing is left behind."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from p2pci.config import parse_config
from p2pci.core.errors import BuildError, LocalError
from p2pci.runner.base import BuildSpec
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.outputs import OutputError, read_outputs
from p2pci.runner.source import MAX_TREE_DEPTH, pack_source, unpack_source

SPEC = BuildSpec(image_id="sha256:" + "0" * 64, command=("true",))
DEEP = 2000


def disk_bytes(root: Path) -> int:
    """Blocks really used under `root` (a sparse file counts only what it stores)."""
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*"))


def sparse_tar(tmp: Path) -> Path:
    """A ~2 KiB GNU tar holding one sparse file of 1 GiB."""
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is needed to make a sparse archive")
    d = tmp / "sparse-src"
    d.mkdir()
    with open(d / "big", "wb") as f:
        f.truncate(1 << 30)
    out = tmp / "sparse.tar"
    subprocess.run([tar, "--sparse", "--format=gnu", "-b1", "-cf", str(out), "-C", str(d), "big"], check=True)
    (d / "big").unlink()
    return out


def deep_tar(tmp: Path, *, with_dirs: bool, root: str = "", depth: int = DEEP) -> Path:
    out = tmp / f"deep-{with_dirs}-{root or 'src'}.tar"
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        parts = [root] if root else []
        if root:
            ti = tarfile.TarInfo(root)
            ti.type = tarfile.DIRTYPE
            tar.addfile(ti)
        for _ in range(depth):
            parts.append("d")
            if with_dirs:
                ti = tarfile.TarInfo("/".join(parts))
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
        ti = tarfile.TarInfo("/".join([*parts, "f"]))
        ti.size = 2
        tar.addfile(ti, io.BytesIO(b"x\n"))
    return out


def test_sparse_source_tar_is_refused_by_the_default_worker_policy(tmp_path: Path) -> None:
    tar = sparse_tar(tmp_path)
    assert tar.stat().st_size <= 4096
    work = tmp_path / "work"
    runner = DockerRunner(work_dir=work)  # the default policy: max_source_mb = 256
    with pytest.raises(BuildError, match="max_source_mb"):
        runner.run(SPEC, tar, cancel=threading.Event())
    assert list(work.iterdir()) == []  # nothing left behind
    dest = tmp_path / "unpacked"
    with pytest.raises(BuildError, match=r"max_source_mb \(1 MiB\)"):
        unpack_source(tar, dest, max_bytes=1 << 20)
    assert disk_bytes(dest) < 1 << 20  # refused before a byte of the file was written


def test_max_source_mb_is_a_worker_setting_and_an_eligibility_rule() -> None:
    from dataclasses import replace

    from p2pci.core.messages import BlobRef
    from p2pci.core.worker import eligible
    from tests.unit.jobgen import key, make_offer

    cfg = parse_config({"worker": {"max_source_mb": 8}})
    assert cfg.worker.max_source_mb == 8 and cfg.worker.policy().max_source_mb == 8
    assert parse_config({}).worker.max_source_mb == 256
    with pytest.raises(LocalError, match="max_source_mb"):
        parse_config({"worker": {"max_source_mb": 0}})
    offer = make_offer(key("publisher"))
    big = replace(offer, source=BlobRef(offer.source.sha256, 9 << 20))
    assert eligible(big, cfg.worker.policy()) == "source of 9 MiB exceeds 8 MiB"
    assert eligible(replace(offer, source=BlobRef(offer.source.sha256, 8 << 20)), cfg.worker.policy()) is None


@pytest.mark.parametrize("with_dirs", [False, True])
def test_a_2000_level_source_tree_is_a_build_error_and_is_cleaned_up(tmp_path: Path, with_dirs: bool) -> None:
    tar = deep_tar(tmp_path, with_dirs=with_dirs)
    work = tmp_path / "work"
    runner = DockerRunner(work_dir=work)
    with pytest.raises(BuildError, match=f"deeper than {MAX_TREE_DEPTH} levels"):
        runner.run(SPEC, tar, cancel=threading.Event())
    assert list(work.iterdir()) == []


def test_a_2000_level_out_tree_is_an_output_error_and_can_be_removed(tmp_path: Path) -> None:
    for with_dirs in (False, True):
        tar = deep_tar(tmp_path, with_dirs=with_dirs, root="out")
        dest = tmp_path / f"outputs-{with_dirs}"
        with open(tar, "rb") as fh, pytest.raises(OutputError, match=f"deeper than {MAX_TREE_DEPTH} levels"):
            read_outputs(fh, dest, max_bytes=1 << 20)  # type: ignore[arg-type]
        shutil.rmtree(dest)  # no RecursionError: what was made is shallow enough to remove


@pytest.mark.parametrize("link", [False, True])
def test_outputs_past_the_manifest_entry_limit_are_an_output_error(tmp_path: Path, link: bool) -> None:
    """A result lists at most MAX_MANIFEST_ENTRIES files: the reader stops at the first file past
    the limit (here 3), a hard link counting like a file, instead of building a manifest no reveal
    could carry."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(4):
            ti = tarfile.TarInfo(f"out/f{i}")
            if link and i == 3:
                ti.type, ti.linkname = tarfile.LNKTYPE, "out/f0"
                tar.addfile(ti)
            else:
                ti.size = 1
                tar.addfile(ti, io.BytesIO(b"x"))
    buf.seek(0)
    with pytest.raises(OutputError, match="more than 3 files in /out"):
        read_outputs(buf, tmp_path / "o", max_bytes=1 << 20, max_files=3)  # type: ignore[arg-type]
    buf.seek(0)
    assert len(read_outputs(buf, tmp_path / "p", max_bytes=1 << 20, max_files=4)) == 4  # type: ignore[arg-type]


def test_outputs_at_the_depth_limit_are_accepted(tmp_path: Path) -> None:
    tar = deep_tar(tmp_path, with_dirs=False, root="out", depth=MAX_TREE_DEPTH - 1)
    with open(tar, "rb") as fh:
        manifest = read_outputs(fh, tmp_path / "o", max_bytes=1 << 20)  # type: ignore[arg-type]
    assert [e.path.count("/") + 1 for e in manifest] == [MAX_TREE_DEPTH]


def test_packing_a_too_deep_tree_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "p"
    d = src
    for _ in range(MAX_TREE_DEPTH + 1):
        d = d / "d"
    d.mkdir(parents=True)
    with pytest.raises(LocalError, match=f"deeper than {MAX_TREE_DEPTH} levels"):
        pack_source(src, tmp_path / "s.tar")
    ok = tmp_path / "ok"
    (ok / "a" / "b").mkdir(parents=True)
    (ok / "a" / "b" / "f").write_text("x")
    (ok / "a" / "g").write_text("y")
    pack_source(ok, tmp_path / "ok.tar")
    with tarfile.open(tmp_path / "ok.tar") as t:
        assert t.getnames() == ["a", "a/b", "a/b/f", "a/g"]


def test_a_2000_level_manifest_path_is_refused_before_fetch_writes_it(tmp_path: Path) -> None:
    import hashlib

    from p2pci.core.errors import ProtocolError
    from p2pci.core.results import ManifestEntry
    from p2pci.daemon.artifacts import copy_checked as _copy_checked
    from p2pci.daemon.artifacts import safe_join as _safe_join

    src = tmp_path / "blob"
    src.write_bytes(b"x")
    deep = "/".join(["d"] * DEEP + ["f"])
    entry = ManifestEntry(deep, 1, 0o644, hashlib.sha256(b"x").digest())
    with pytest.raises(ProtocolError, match=f"deeper than {MAX_TREE_DEPTH} levels"):
        _copy_checked(src, _safe_join(tmp_path / "fetched", deep), entry)
    assert not (tmp_path / "fetched").exists()
