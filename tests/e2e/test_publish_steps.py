"""A real daemon process reports publish's long steps (issue 16): `publish` (here without
`--wait`, so no worker is needed) prints the daemon's image and export steps and the offer on
stderr, in order, and `--json` stays one document on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.e2e.mesh import Mesh, write_project


async def test_a_daemon_process_reports_the_image_and_export_steps(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    node = await mesh.add("pub", build=False)
    project = write_project(short_tmp / "p", "steps", image="busybox", script="true")
    with trio.fail_after(120):
        res = await mesh.cli(node, "publish", str(project), "--json")
    job = json.loads(res.stdout)  # the whole of stdout: one document
    assert job["verdict"] == "PENDING"
    err = res.stderr.splitlines()

    def at(prefix: str) -> int:
        return next(i for i, line in enumerate(err) if line.startswith(prefix))

    resolved = at(f"image: image busybox: {busybox_image}")
    assert at("packing ") < at("image: resolving the image busybox") < resolved
    # a fresh home has no archive of it yet: exported and stored, with its size
    assert resolved < at("export: exporting ") < at("export: image archive sha256 ") < at(f"offer: offered job {job['job']}")
    with trio.fail_after(120):
        again = await mesh.cli(node, "publish", str(project), "--json")
    assert not any(line.startswith("export:") for line in again.stderr.splitlines())  # cached now


async def test_publish_wait_on_a_no_build_node_prints_a_remote_workers_live_lines(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    """`publish --wait` on a `--no-build` publisher shows the remote worker's build log as it runs
    (/p2pci/logtail/1), before that worker commits: the line is printed while the build sleeps."""
    from p2pci.cli.progress import short

    with trio.fail_after(90):
        pub = await mesh.add("pub", build=False)
        worker = await mesh.add("w", bootstrap=[pub])
        await mesh.wait_connected(minimum=1)
    script = "echo live-line-one; sleep 6; cp /build/src/hello.txt /out/ && echo finished"
    project = write_project(
        short_tmp / "p", "tail", image="busybox", script=script, replicas=1, quorum=1, workers=[worker.peer_id]
    )
    with trio.fail_after(180):
        res = await mesh.cli(pub, "publish", str(project), "--wait", "--events")
    events = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    logs = [e for e in events if e.get("event") == "log"]
    assert logs and all(e["worker"] == worker.peer_id for e in logs), events
    first = next(i for i, e in enumerate(events) if e.get("event") == "log" and "live-line-one" in e["text"])
    committed = [
        i for i, e in enumerate(events)
        if e.get("event") == "job" and any(w.get("phase") in ("committed", "revealed") for w in e["job"]["workers"])
    ]
    assert committed and first < committed[0]  # live: before the build ended
    assert events[-1]["job"]["verdict"] == "REPRODUCED"
    with trio.fail_after(180):
        plain = await mesh.cli(pub, "publish", str(project), "--wait")
    assert f"{short(worker.peer_id)} | live-line-one" in plain.stderr + plain.stdout
