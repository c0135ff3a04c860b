"""The CI shell recipe (contrib/ci/p2pci-ci.sh) against a running cluster, and the GitHub
Actions example that uses it (docs/ci.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio

from p2pci.testing.cluster import ScriptedRunner, open_cluster
from tests.integration.test_daemon_cli import project

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "contrib" / "ci" / "p2pci-ci.sh"
WORKFLOW = ROOT / "contrib" / "ci" / "github-actions.yml"


def p2pci_on_path(tmp: Path) -> dict[str, str]:
    """An environment whose `p2pci` is this tree's CLI (as an installed one would be)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "p2pci"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from p2pci.cli.main import main; main()" "$@"\n')
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}


async def run_recipe(tmp: Path, home: Path, proj: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**p2pci_on_path(tmp), "P2PCI_HOME": str(home), "P2PCI_RESULT": str(tmp / "result.json")}
    with trio.fail_after(60):
        return await trio.run_process(["sh", str(SCRIPT), str(proj)], env=env, capture_stdout=True,
                                      capture_stderr=True, check=False)


async def test_recipe_acts_on_the_exit_code(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        home = c.nodes[0].paths.home
        p = await run_recipe(tmp_path, home, project(tmp_path))
        assert p.returncode == 0, p.stderr
        final = json.loads((tmp_path / "result.json").read_text())  # one JSON document
        assert final["verdict"] == "REPRODUCED"
        assert p.stdout.decode() == f"p2pci: REPRODUCED: job {final['job']}, digest {final['digest']}\n"


async def test_recipe_fails_a_disputed_build_and_points_at_diff(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner(lie=True)]) as c:
        home = c.nodes[0].paths.home
        p = await run_recipe(tmp_path, home, project(tmp_path))
        assert p.returncode == 1
        job = json.loads((tmp_path / "result.json").read_text())["job"]
        assert p.stdout.decode() == f"p2pci: DISPUTED: job {job}; see why with: p2pci diff {job}\n"


async def test_recipe_without_a_daemon_exits_2(tmp_path: Path) -> None:
    p = await run_recipe(tmp_path, tmp_path / "no-home", project(tmp_path))
    assert p.returncode == 2
    assert "no p2pci daemon" in p.stderr.decode()
    assert p.stdout.decode() == "p2pci: nothing published (exit 2); the error is above\n"


def test_github_actions_example_runs_the_recipe() -> None:
    text = WORKFLOW.read_text()
    assert "\t" not in text  # YAML forbids tabs
    runs = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("run:")]
    assert "run: sh contrib/ci/p2pci-ci.sh ." in runs
    assert "p2pci diff" in text and "if: failure()" in text and "p2pci export" in text
    assert "P2PCI_HOME" in text and "runs-on: [self-hosted, p2pci]" in text
