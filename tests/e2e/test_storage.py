"""Issue 14, a worker's disk with daemon processes, real libp2p and real Docker builds: the
outputs of a build are stored once (the runner's /out hard-linked into blobs/), and `p2pci gc`
on the running daemon brings blobs/ + work/ under `[storage] max_gb`, oldest job first."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import trio

from tests.e2e.mesh import Mesh, publish_job, write_project
from tests.integration.test_gc import disk_bytes

BIG = 1 << 20  # bytes of output per job, distinct per job (the project name repeated)


async def test_outputs_stored_once_and_gc_to_a_budget_on_a_real_daemon(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    budget = int(1.5 * BIG)  # room for one job's output
    with trio.fail_after(90):
        boot = await mesh.add("boot", build=False)
        w1 = await mesh.add("w1", config={"storage": {"max_gb": budget / (1 << 30)}})
        await mesh.add("w2")
        await mesh.wait_connected()
    jobs = []
    for i in range(3):  # one after the other: job i is older than job i + 1
        script = f"yes job{i} | head -c {BIG} > /out/big.txt"
        project = write_project(short_tmp / "p", f"big{i}", image=busybox_image, script=script)
        job = await publish_job(mesh, boot, project)
        with trio.fail_after(180):
            view = await mesh.wait_verdict(job)
        assert view["verdict"] == "REPRODUCED", view
        jobs.append(job)

    home = w1.home
    for job in jobs:
        assert not (home / "work" / job / "out").exists()
        log = home / "work" / job / "log"
        sha = hashlib.sha256(log.read_bytes()).hexdigest()
        assert log.stat().st_ino == (home / "blobs" / sha[:2] / sha).stat().st_ino  # the log blob's inode
    held = disk_bytes(home / "blobs", home / "work")
    assert 3 * BIG <= held < 3 * BIG + (256 << 10), held  # once; the old layout kept 2 x 3 MiB
    assert not [p for p in (home / "work" / "runs").iterdir() if p.name.startswith("p2pci-result-")]

    with trio.fail_after(60):
        res = await mesh.cli(w1, "gc", "--json")
    rep = json.loads(res.stdout)
    after = disk_bytes(home / "blobs", home / "work")
    assert rep["by_budget"] == 2 and rep["kept_bytes"] <= budget and after <= budget, (rep, after)
    assert rep["bytes_freed"] >= 2 * BIG
    assert not (home / "work" / jobs[0]).exists() and not (home / "work" / jobs[1]).exists()
    assert (home / "work" / jobs[2] / "log").exists()
    status = json.loads((await mesh.cli(w1, "status", "--json")).stdout)
    assert status["storage"]["gc"]["runs"] == 1 and status["storage"]["gc"]["bytes_freed"] == rep["bytes_freed"]
    # what was let go here is still fetched from the other worker
    with trio.fail_after(60):
        out = short_tmp / "fetched"
        await mesh.cli(boot, "fetch", jobs[0], "--out", str(out))
    assert (out / "big.txt").stat().st_size == BIG
