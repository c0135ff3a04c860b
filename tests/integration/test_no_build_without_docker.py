"""A `--no-build` bootstrap node needs no Docker to run, but publishing from it does (issue 16:
docs/operator.md, "A bootstrap node", said the first and not the second). A real daemon process
with no Docker engine reachable."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pci.testing.mesh import open_mesh
from tests.integration.test_daemon_cli import project

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


async def test_a_no_build_node_runs_without_docker_and_publishing_from_it_says_docker(tmp_path: Path) -> None:
    async with open_mesh(tmp_path / "m", env=NO_DOCKER) as mesh:
        with trio.fail_after(60):
            boot = await mesh.add("boot", build=False)  # ready: it started with no Docker at all
            ident = (await mesh.cli(boot, "id", "--json")).json()
            assert ident["peer_id"] == boot.peer_id
            r = await mesh.cli(boot, "publish", str(project(tmp_path)), check=False)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "docker" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr
        assert boot.alive  # the failed publish did not stop the node
        assert (await mesh.cli(boot, "jobs", "--json")).json() == []  # nothing was offered
