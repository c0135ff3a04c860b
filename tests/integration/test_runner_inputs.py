"""Pinned inputs in the hardened Docker runner: read-only at /build/inputs, checked by hash."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pci.core.errors import BuildError
from p2pci.runner.base import BuildSpec, Limits
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.dockerutil import client
from p2pci.runner.images import resolve_image
from p2pci.runner.inputs import pack_dir
from p2pci.runner.source import pack_source

pytestmark = pytest.mark.docker

SCRIPT = (
    "cat /build/inputs/dep.txt /build/inputs/sub/more.txt > /out/used.txt; "
    "if touch /build/inputs/new 2>/dev/null; then echo writable > /out/bad; fi; "
    "ls -l /build/inputs/bin/tool | cut -c1-10 > /out/mode.txt; "
    "grep ' /build/inputs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 > /out/mount.txt"
)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[DockerRunner]:
    busybox = resolve_image("busybox")
    tag = uuid.uuid4().hex
    r = DockerRunner(work_dir=tmp_path / "work", holder_image=busybox, labels={"p2pci.test": tag})
    yield r
    r.close()  # the ready /out holder and the background removals
    dc = client()
    assert dc.containers.list(all=True, filters={"label": f"p2pci.test={tag}"}) == []
    assert [p.name for p in (tmp_path / "work").iterdir() if p.name.startswith("p2pci-run-")] == []


def _fixture(tmp_path: Path) -> tuple[Path, Path, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x").write_text("x\n")
    pack_source(src, tmp_path / "src.tar")
    inp = tmp_path / "inputs"
    (inp / "sub").mkdir(parents=True)
    (inp / "bin").mkdir()
    (inp / "dep.txt").write_text("dependency\n")
    (inp / "sub" / "more.txt").write_text("more\n")
    (inp / "bin" / "tool").write_text("#!/bin/sh\n")
    (inp / "bin" / "tool").chmod(0o755)
    sha, _, files = pack_dir(inp, tmp_path / "inputs.tar")
    assert files == 3
    return tmp_path / "src.tar", tmp_path / "inputs.tar", sha


def _spec(sha: bytes | None) -> BuildSpec:
    return BuildSpec(
        image_id=resolve_image("busybox"),
        command=("sh", "-c", SCRIPT),
        limits=Limits(timeout_s=60, memory_mb=128, cpus=1, pids=64, out_mb=4),
        inputs_sha256=sha,
    )


def test_inputs_are_mounted_read_only(tmp_path: Path, runner: DockerRunner) -> None:
    src, inputs, sha = _fixture(tmp_path)
    r = runner.run(_spec(sha), src, cancel=threading.Event(), inputs_tar=inputs)
    try:
        assert r.status == "ok" and r.exit_code == 0, r.log_path.read_text()
        assert r.out_dir is not None
        assert (r.out_dir / "used.txt").read_text() == "dependency\nmore\n"
        assert not (r.out_dir / "bad").exists()  # /build/inputs cannot be written
        assert (r.out_dir / "mount.txt").read_text() == "ro\n"  # and is mounted read-only
        assert (r.out_dir / "mode.txt").read_text() == "-rwxr-xr-x\n"
    finally:
        r.cleanup()


def test_tampered_inputs_are_refused_naming_both_hashes(tmp_path: Path, runner: DockerRunner) -> None:
    src, inputs, sha = _fixture(tmp_path)
    data = bytearray(inputs.read_bytes())
    i = data.index(b"dependency")
    data[i : i + 10] = b"DEPENDENCY"  # same size, other bytes: the tar still parses
    inputs.write_bytes(bytes(data))
    import hashlib

    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(BuildError) as e:
        runner.run(_spec(sha), src, cancel=threading.Event(), inputs_tar=inputs)
    assert sha.hex() in str(e.value) and actual in str(e.value) and "refused" in str(e.value)


def test_pinned_inputs_missing_or_unexpected_are_refused(tmp_path: Path, runner: DockerRunner) -> None:
    src, inputs, sha = _fixture(tmp_path)
    with pytest.raises(BuildError, match=f"pins inputs sha256 {sha.hex()} but none were given"):
        runner.run(_spec(sha), src, cancel=threading.Event())
    with pytest.raises(BuildError, match="pins none"):
        runner.run(_spec(None), src, cancel=threading.Event(), inputs_tar=inputs)
