"""Issue 14, the worker's disk: outputs stored once, and garbage collection to a disk budget.

In-process daemons (`Node` on a MemoryNetwork) with real SQLite and real files: 20 jobs, each
with a 256 KiB output, built by two workers; then `p2pci gc` to a budget of about five jobs.
Also: retention in days, loaded images no job needs, a running build never touched, and the
daemon collecting on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import trio
from click.testing import CliRunner, Result

from p2pci.cli.main import cli
from p2pci.config import Config, StorageSettings, WorkerSettings
from p2pci.control.client import acontrol_call
from p2pci.core.results import ManifestEntry, result_digest
from p2pci.core.signing import NodeKey
from p2pci.daemon.builds import IMAGE_LOADED
from p2pci.daemon.node import Node, validate_fact
from p2pci.net.memory import MemoryHub, MemoryNetwork
from p2pci.runner.base import BuildResult, BuildSpec, OnLog
from p2pci.testing.cluster import FAST, open_cluster
from p2pci.testing.images import FakeImages

OUT = 256 * 1024  # bytes of output per job (distinct per job)
JOBS = 20


class BigRunner:
    """A scripted build whose /out holds OUT bytes that depend on the source; results under
    `work_dir` (the daemon's work/runs, as DockerRunner keeps them); `gate` holds a build."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def run(self, spec: BuildSpec, source_tar: Path, *, cancel: threading.Event, on_log: OnLog | None = None) -> BuildResult:
        self.started.set()
        while self.gate is not None and not self.gate.wait(0.02):
            if cancel.is_set():
                from p2pci.core.errors import BuildError

                raise BuildError("cancelled")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="p2pci-result-", dir=self.work_dir))
        out = d / "out"
        out.mkdir()
        seed = hashlib.sha256(Path(source_tar).read_bytes()).digest()
        content = (seed * (OUT // 32 + 1))[:OUT]
        (out / "big.bin").write_bytes(content)
        log = d / "build.log"
        log.write_text(f"built {seed.hex()}\n")
        manifest = (ManifestEntry("big.bin", OUT, 0o644, hashlib.sha256(content).digest()),)
        return BuildResult("ok", 0, manifest, result_digest(0, manifest), log, out, 0.01)


class RecordingImages(FakeImages):
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, image_id: str) -> bool:
        self.removed.append(image_id)
        return True


def disk_bytes(*dirs: Path) -> int:
    """Bytes of the files under `dirs`, each inode counted once (hard links share their bytes)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for d in dirs:
        for root, _dirs, files in os.walk(d):
            for f in files:
                st = os.lstat(os.path.join(root, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


async def run_cli(home: Path, *args: str) -> Result:
    return await trio.to_thread.run_sync(lambda: CliRunner().invoke(cli, ["--home", str(home), *args]))


async def test_twenty_jobs_outputs_stored_once_then_gc_to_a_disk_budget(tmp_path: Path) -> None:
    runners = [BigRunner(tmp_path / f"n{i}" / "work" / "runs") for i in (1, 2)]
    async with open_cluster(tmp_path, 3, runners=[None, *runners], worker=WorkerSettings(slots=2)) as c:  # type: ignore[list-item]
        pub, w1, _w2 = c.nodes
        images = RecordingImages()
        w1.images = images
        jobs: list[str] = []
        with trio.fail_after(120):
            for i in range(JOBS):  # one after the other: job i is older than job i + 1 in every respect
                jobs.append(await c.publish(pub, replicas=2, quorum=2, project=f"p{i}", salt=str(i)))
                objs = await c.wait_converged(jobs[-1])
                assert all(o["verdict"] == "REPRODUCED" for o in objs), objs
        home = w1.paths.home

        # stored once: no work/<job>/out copy; the log in work/<job> is the blob's inode
        for job in jobs:
            d = home / "work" / job
            assert not (d / "out").exists()
            assert (d / "log").stat().st_nlink == 2
        outputs = disk_bytes(home / "blobs", home / "work")
        assert JOBS * OUT <= outputs < JOBS * OUT * 1.2, outputs  # twice (the old layout) would be >= 2x
        assert not list((home / "work" / "runs").iterdir())  # the runner's result dirs are gone

        # a build held while gc runs: its source must stay, and it is never let go
        runners[0].gate = threading.Event()
        runners[1].gate = runners[0].gate
        runners[0].started.clear()
        held = await c.publish(pub, replicas=2, quorum=2, project="held", salt="held")
        held_b = bytes.fromhex(held)
        assert await trio.to_thread.run_sync(runners[0].started.wait, 30)  # w1 builds it (its gate holds it)
        assert held_b in w1.builds.running  # type: ignore[union-attr]
        held_src = pub.board.job(held_b).offer_msg.source.sha256  # type: ignore[union-attr]
        assert w1.blobs.has(held_src)

        # images p2pci loaded: one for an old job (goes), one for the held job (stays)
        old_image, held_image = "sha256:" + "1" * 64, "sha256:" + "2" * 64
        w1.db.kv_put(IMAGE_LOADED + old_image, [jobs[0]])
        w1.db.kv_put(IMAGE_LOADED + held_image, [held])

        # a dry run deletes nothing
        budget = 5 * OUT + OUT // 2  # room for about five jobs' outputs
        w1.config = replace(w1.config, storage=StorageSettings(max_gb=budget / (1 << 30)))
        before = disk_bytes(home / "blobs", home / "work")
        r = await run_cli(home, "gc", "--dry-run", "--json")
        assert r.exit_code == 0, r.output
        dry = json.loads(r.stdout)
        assert dry["dry_run"] and dry["bytes_freed"] > 0 and disk_bytes(home / "blobs", home / "work") == before
        r = await run_cli(home, "gc", "--json")
        assert r.exit_code == 0, r.output
        rep = json.loads(r.stdout)
        after = disk_bytes(home / "blobs", home / "work")
        assert rep["by_budget"] == rep["jobs_dropped"] >= JOBS - 5
        assert rep["kept_bytes"] <= budget and after <= budget, (rep, after)
        assert before - after >= rep["bytes_freed"] - 4096 and rep["bytes_freed"] >= (JOBS - 6) * OUT
        assert rep == {**dry, "dry_run": False, "facts_pruned": 0, "images_removed": rep["images_removed"]}
        # the oldest went, the newest stayed; the held build's source is untouched
        def kept(job: str) -> bool:
            """Whether w1 still holds the job's output (BigRunner's bytes follow from the source)."""
            v = pub.board.job(bytes.fromhex(job))
            assert v is not None and v.offer_msg is not None
            seed = hashlib.sha256(pub.blobs.read_bytes(v.offer_msg.source.sha256)).digest()
            return w1.blobs.has(hashlib.sha256((seed * (OUT // 32 + 1))[:OUT]).digest())

        assert not kept(jobs[0]) and not (home / "work" / jobs[0]).exists()
        assert kept(jobs[-1]) and (home / "work" / jobs[-1] / "log").exists()
        assert [kept(j) for j in jobs] == sorted(kept(j) for j in jobs)  # a prefix went, a suffix stayed
        assert w1.blobs.has(held_src)
        assert images.removed == [old_image] and rep["images_removed"] == [old_image]
        assert w1.db.kv_get(IMAGE_LOADED + held_image) == [held]
        # the human report says what was freed
        r = await run_cli(home, "gc")
        assert r.exit_code == 0 and r.stdout.startswith("freed ") and "kept:" in r.stdout
        st = await acontrol_call(home, "status")
        assert st["storage"]["gc"]["runs"] == 2 and st["storage"]["gc"]["bytes_freed"] == rep["bytes_freed"]

        # retention 0 days: every decided job goes; the held build still stays
        w1.config = replace(w1.config, storage=StorageSettings(retention_days=0, max_gb=0))
        rep = await w1.gc_now()
        assert not any(kept(j) for j in jobs)
        assert w1.blobs.has(held_src) and held_image not in images.removed
        assert not [p for p in (home / "work").iterdir() if p.name in jobs]
        runners[0].gate.set()
        with trio.fail_after(30):
            (obj,) = await c.wait_verdict(held, [w1])
        assert obj["verdict"] == "REPRODUCED"


async def test_the_daemon_collects_on_its_own(tmp_path: Path) -> None:
    """gc_interval_min: the daemon's loop deletes an old blob no job ties, and keeps a fresh one."""
    key = NodeKey.from_seed(b"g" * 32)
    cfg = Config(build=False, timing=FAST, storage=StorageSettings(gc_interval_min=0.002))  # ~0.12 s
    net = MemoryNetwork(MemoryHub(), key.peer_id, validate=validate_fact)
    node = Node(tmp_path / "n", cfg, network=net, key=key, images=FakeImages())
    old = node.blobs.put_bytes(b"a fetched copy nobody ties" * 100)
    fresh = node.blobs.put_bytes(b"a blob being published right now")
    os.utime(node.blobs.path(old.sha256), (1, 1))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.fail_after(20):
            while node.gc_totals["runs"] < 2:
                await node.changed.wait()
        nursery.cancel_scope.cancel()
    assert not node.blobs.has(old.sha256) and node.blobs.has(fresh.sha256)
    assert node.gc_totals["blobs_removed"] == 1


async def test_a_store_without_ties_is_tied_at_start_not_collected(tmp_path: Path) -> None:
    """A home written before blob_refs (or with its ties lost): at start the node ties its own
    offers' and reveals' blobs again, so gc keeps them and the blob server serves them."""
    async with open_cluster(tmp_path, 3) as c:
        pub, w1 = c.nodes[0], c.nodes[1]
        job = await c.publish(pub, replicas=3, quorum=2)
        with trio.fail_after(30):
            await c.wait_converged(job)
        jid = bytes.fromhex(job)
        view = w1.board.job(jid)
        assert view is not None and w1.me in view.reveals
        rev = view.reveals[w1.me][0].body
        outputs = [rev.manifest.sha256, rev.log.sha256]  # type: ignore[attr-defined]  # the manifest blob, the log
        for n in (pub, w1):
            n.db.untie_jobs([jid])
        w1 = await c.restart(1)
        pub = await c.restart(0)
        assert all(any(s for _j, _r, s in w1.db.blob_jobs(sha)) for sha in outputs)
        src = pub.board.job(jid).offer_msg.source.sha256  # type: ignore[union-attr]
        assert [(j, r, s) for j, r, s in pub.db.blob_jobs(src)] == [(jid, "source", True)]
        os.utime(pub.blobs.path(src), (1, 1))  # old: collected at once if it were tied to no job
        pub.config = replace(pub.config, storage=StorageSettings(max_gb=0))
        await pub.gc_now()
        assert pub.blobs.has(src)
