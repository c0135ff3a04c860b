"""FakeRunner: the Docker-free runner daemon tests use."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from p2pci.core.errors import BuildError
from p2pci.core.results import result_digest
from p2pci.runner.base import BuildSpec, run_build
from p2pci.testing.runners import FakeRunner

SPEC = BuildSpec("sha256:" + "0" * 64, ("make",))


def test_same_input_same_digest(tmp_path: Path) -> None:
    (tmp_path / "s.tar").write_bytes(b"source")
    r = FakeRunner(work_dir=tmp_path)
    a = r.run(SPEC, tmp_path / "s.tar", cancel=threading.Event())
    b = r.run(SPEC, tmp_path / "s.tar", cancel=threading.Event())
    assert a.digest == b.digest == result_digest(0, a.manifest)
    assert a.out_dir is not None and (a.out_dir / "result.txt").exists()
    a.cleanup()
    assert not a.log_path.exists() and not a.out_dir.exists()
    bad = FakeRunner(work_dir=tmp_path, outputs=lambda spec, sha: {"x": b"other"}, exit_code=2)
    c = bad.run(SPEC, tmp_path / "s.tar", cancel=threading.Event())
    assert c.exit_code == 2 and c.digest != a.digest and len(r.calls) == 2


async def test_cancel_through_run_build(tmp_path: Path) -> None:
    (tmp_path / "s.tar").write_bytes(b"source")
    gate = threading.Event()
    r = FakeRunner(work_dir=tmp_path, gate=gate)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_build, r, SPEC, tmp_path / "s.tar")
            await trio.to_thread.run_sync(r.started.wait)
            nursery.cancel_scope.cancel()
    assert r.cancelled == 1


def test_cancel_event(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BuildError):
        FakeRunner(work_dir=tmp_path).run(SPEC, tmp_path / "missing.tar", cancel=cancel)
