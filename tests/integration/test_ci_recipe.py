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


def workflow_steps(text: str) -> list[dict[str, str]]:
    """The steps of the one job of the workflow example, each {key: value} (a `|` block's
    lines dedented): the subset of YAML the example uses, read without a YAML library."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "steps:")
    item = len(lines[start]) - len(lines[start].lstrip()) + 2  # "- " of each step
    steps: list[dict[str, str]] = []
    block: tuple[dict[str, str], str, int] | None = None
    for ln in lines[start + 1:]:
        indent = len(ln) - len(ln.lstrip())
        if block is not None and (not ln.strip() or indent > block[2]):
            step, key, key_indent = block
            step[key] += ln[key_indent + 2:] + "\n"
            continue
        block = None
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        if indent < item:
            break
        if indent == item and s.startswith("- "):
            steps.append({})
            s, indent = s[2:], indent + 2
        if indent == item + 2 and ":" in s:
            key, _, value = s.partition(":")
            value = value.strip()
            steps[-1][key] = "" if value == "|" else value
            if value == "|":
                block = (steps[-1], key, indent)
    return steps


def test_workflow_reader() -> None:
    steps = workflow_steps("jobs:\n  j:\n    steps:\n      - uses: a@v1\n      - name: x\n        if: failure()\n"
                           "        run: |\n          one\n\n          two\n      - run: three\n")
    assert steps == [{"uses": "a@v1"}, {"name": "x", "if": "failure()", "run": "one\n\ntwo\n"}, {"run": "three"}]


async def test_github_actions_example_runs_on_a_disputed_build(tmp_path: Path) -> None:
    """Each `run:` step of the workflow, in order, as the runner would (bash -e, `if:` honoured),
    in a checkout that holds the project and the recipe: the publish step fails on a DISPUTED
    build, the failure step explains it with `p2pci diff`, and the evidence bundle is kept."""
    import re
    import shutil

    text = WORKFLOW.read_text()
    steps = workflow_steps(text)
    assert [s.get("uses", "").split("@")[0] for s in steps if "uses" in s] == [
        "actions/checkout", "actions/upload-artifact"]
    result_name = re.search(r"P2PCI_RESULT: (\S+)", text)
    assert result_name is not None and "P2PCI_HOME: " in text
    checkout = project(tmp_path)
    (checkout / "contrib" / "ci").mkdir(parents=True)
    shutil.copy(SCRIPT, checkout / "contrib" / "ci" / "p2pci-ci.sh")  # docs/ci.md: copied beside the workflow
    async with open_cluster(tmp_path / "c", 3, runners=[None, ScriptedRunner(), ScriptedRunner(lie=True)]) as c:
        env = {**p2pci_on_path(tmp_path), "P2PCI_HOME": str(c.nodes[0].paths.home), "P2PCI_RESULT": result_name[1]}
        failed, ran = False, []
        for step in steps:
            cond = step.get("if")
            if "run" not in step or not (cond == "always()" or (cond == "failure()") == failed):
                continue
            with trio.fail_after(60):
                p = await trio.run_process(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                                           cwd=checkout, env=env, capture_stdout=True, capture_stderr=True, check=False)
            ran.append((step.get("name"), p.returncode, p.stdout.decode()))
            failed = failed or p.returncode != 0
    names = [(name, rc) for name, rc, _ in ran]
    assert names == [("Publish and wait for the verdict", 1), ("Explain a disagreement", 0),
                     ("Keep the result and the evidence", 0)], ran
    job = json.loads((checkout / result_name[1]).read_text())["job"]
    assert ran[0][2] == f"p2pci: DISPUTED: job {job}; see why with: p2pci diff {job}\n"
    explained = ran[1][2]
    if explained.startswith("(no "):  # no diffoscope image yet (test_diff_sandbox builds it): built-in
        explained = explained.split("\n", 1)[1]
    assert explained.startswith("--- ") and "artifact.txt" in explained, ran[1][2]
    bundle = checkout / "p2pci-evidence.bundle"
    r = await trio.run_process([str(tmp_path / "bin" / "p2pci"), "verify", str(bundle), "--json"], env=env,
                               capture_stdout=True, capture_stderr=True, check=False)
    assert r.returncode == 1 and json.loads(r.stdout)["verdict"] == "DISPUTED", r.stderr
