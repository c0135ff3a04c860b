"""Everything `make demo` shows, asserted, with separate daemon processes.

The demo's three scenarios on a 5-node loopback mesh (1 bootstrap
`--no-build`, 4 workers), with small busybox projects so the test is fast;
`test_make_demo` runs the real `python -m p2pci.demo` (compiled C in the
Debian build-essential image) and is marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.mesh import Mesh, Node, canon, write_project

REPRO = "cp /build/src/hello.txt /out/hello.txt && echo built"
UNREPRO = "cp /build/src/hello.txt /out/ && head -c 32 /dev/urandom > /out/random.bin && echo built"


async def start_five(mesh: Mesh) -> tuple[Node, list[Node]]:
    with trio.fail_after(90):
        boot = await mesh.add("node1", build=False)
        workers: list[Node] = []

        async def add(name: str) -> None:
            workers.append(await mesh.add(name, bootstrap=[boot]))

        async with trio.open_nursery() as n:
            for i in range(2, 6):
                n.start_soon(add, f"node{i}")
        workers.sort(key=lambda w: w.name)
        await mesh.wait_connected(minimum=1)
    return boot, workers


async def test_demo_scenarios(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    boot, workers = await start_five(mesh)
    projects = short_tmp / "projects"
    repro = write_project(projects, "repro", image=busybox_image, script=REPRO, replicas=3, quorum=2)
    unrepro = write_project(projects, "unrepro", image=busybox_image, script=UNREPRO, replicas=3, quorum=2)
    chosen = workers[2]
    trad = write_project(
        projects, "trad", image=busybox_image, script=REPRO, replicas=1, quorum=1, workers=[chosen.peer_id]
    )

    results: dict[str, tuple[int, dict[str, Any]]] = {}
    t0 = time.monotonic()

    async def publish(name: str, project: Path) -> None:
        res = await mesh.cli(boot, "publish", str(project), "--wait", "--json", check=False)
        results[name] = (res.returncode, res.json())
        print(f"[{time.monotonic() - t0:6.1f}s] {name}: {results[name][1]['verdict']}")

    with trio.fail_after(240):
        async with trio.open_nursery() as n:
            n.start_soon(publish, "repro", repro)
            n.start_soon(publish, "unrepro", unrepro)
            n.start_soon(publish, "trad", trad)

    rc, view = results["repro"]
    assert (rc, view["verdict"]) == (0, "REPRODUCED"), view
    assert view["replicas"] == 3 and view["quorum"] == 2
    groups = view["groups"]
    assert isinstance(groups, list) and len(groups[0]["workers"]) >= 2, view
    assert boot.peer_id not in groups[0]["workers"], "a --no-build node voted"

    rc, view = results["unrepro"]
    assert (rc, view["verdict"]) == (1, "DISPUTED"), view

    rc, view = results["trad"]
    assert (rc, view["verdict"]) == (0, "REPRODUCED"), view
    assert [g["workers"] for g in view["groups"]] == [[chosen.peer_id]], view

    jobs = {name: str(v["job"]) for name, (_, v) in results.items()}

    # Every node (bootstrap and workers) ends with the same job object, per job.
    for job in jobs.values():
        with trio.fail_after(60):
            await mesh.wait_verdict(job)
        shown = [(await mesh.cli(n, "show", job, "--json")).json() for n in mesh.running]
        assert all(canon(s) == canon(shown[0]) for s in shown), shown
    listed = (await mesh.cli(workers[0], "jobs", "--json")).json()
    assert {j["job"] for j in listed} >= set(jobs.values())

    print(f"[{time.monotonic() - t0:6.1f}s] all nodes agree")
    # Artifacts of the reproduced job: fetched, verified, the right bytes.
    out = short_tmp / "fetched"
    with trio.fail_after(60):
        await mesh.cli(boot, "fetch", jobs["repro"], "--out", str(out))
    assert (out / "hello.txt").read_text() == "hello from repro\n"

    print(f"[{time.monotonic() - t0:6.1f}s] fetched")
    # The dispute is explained: diffoscope names the differing file.
    with trio.fail_after(300):
        diff = await mesh.cli(boot, "diff", jobs["unrepro"], check=False)
    print(f"[{time.monotonic() - t0:6.1f}s] diffed")
    assert "random.bin" in diff.stdout, diff.stdout + diff.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_make_demo() -> None:
    """`python -m p2pci.demo` exits 0 (all three verdicts as expected) and says so."""
    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="p2pci-demo-") as d:
        env = dict(os.environ, DEMO_DIR=str(Path(d) / "demo"), PYTHONUNBUFFERED="1")
        env.pop("DEMO_KEEP", None)
        cp = subprocess.run(
            [sys.executable, "-m", "p2pci.demo"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert "all three verdicts as expected" in cp.stdout, out
    for verdict in ("REPRODUCED", "DISPUTED"):
        assert verdict in cp.stdout, out
