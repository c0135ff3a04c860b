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
