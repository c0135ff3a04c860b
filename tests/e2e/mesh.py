"""Helpers for end-to-end tests and benchmarks: a mesh of daemon processes.

The process orchestration itself lives in `p2pci.testing.mesh` (`make demo`
and bench use it too); this module adds what tests need on top: short-lived project
directories, test-only adversary processes, and container clean-up.

    async with open_mesh(root) as mesh:          # every process killed on exit
        boot = await mesh.add("boot", build=False)
        w1 = await mesh.add("w1")                 # bootstraps from the first node
        view = await mesh.wait_verdict(job)       # all running nodes agree
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import trio

from p2pci.demo import set_allowlist
from p2pci.testing.mesh import (
    FAST_TIMING,
    FINAL,
    READY,
    CliResult,
    Mesh,
    MeshError,
    Node,
    canon,
    open_mesh,
    p2pci_argv,
    short,
    wait_for,
)

__all__ = [
    "FAST_TIMING",
    "FINAL",
    "READY",
    "Adversary",
    "CliResult",
    "Mesh",
    "MeshError",
    "Node",
    "canon",
    "open_mesh",
    "p2pci_argv",
    "publish_job",
    "build_runs",
    "remove_containers",
    "set_allowlist",
    "short",
    "start_adversary",
    "wait_for",
    "write_project",
]

ADVERSARY = Path(__file__).with_name("adversary.py")
ADVERSARY_READY = "adversary ready:"


def write_project(
    root: Path,
    name: str,
    *,
    image: str,
    script: str,
    replicas: int = 2,
    quorum: int = 2,
    workers: Sequence[str] | None = None,
    timeout_s: int = 120,
    files: dict[str, str] | None = None,
    require: tuple[Sequence[str], int] | None = None,
) -> Path:
    """A small project directory with a `p2pci.toml` running `sh -c SCRIPT` in `image`.

    `require`: (peer IDs, min) for `[trust] require`."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for rel, text in (files or {"hello.txt": f"hello from {name}\n"}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    ws = '"open"' if workers is None else "[" + ", ".join(f'"{w}"' for w in workers) + "]"
    req = ""
    if require is not None:
        keys = ", ".join(f'"{k}"' for k in require[0])
        req = f"require = {{ keys = [{keys}], min = {require[1]} }}\n"
    (d / "p2pci.toml").write_text(
        f"""[project]
name = "{name}"

[build]
image = "{image}"
command = ["sh", "-c", {_q(script)}]
timeout = {timeout_s}
memory = "256m"
cpus = 1

[trust]
replicas = {replicas}
quorum = {quorum}
workers = {ws}
{req}"""
    )
    return d


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def publish_job(mesh: Mesh, node: Node, project: Path, *args: str) -> str:
    """`p2pci publish DIR --json` without waiting; returns the job id (hex)."""
    res = await mesh.cli(node, "publish", str(project), "--json", *args)
    view = res.json()
    job = view["job"] if isinstance(view, dict) else None
    if not isinstance(job, str):
        raise MeshError(f"publish printed no job id: {res.stdout}")
    return job


@dataclass
class Adversary:
    """A test-only peer process (tests/e2e/adversary.py) and its log."""

    name: str
    home: Path
    proc: trio.Process
    log: IO[bytes]
    peer_id: str = ""

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def log_text(self) -> str:
        try:
            return (self.home / "adversary.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await self.proc.wait()
        self.log.close()


async def start_adversary(mesh: Mesh, name: str, mode: str, *args: str) -> Adversary:
    """Start `adversary.py --mode MODE` dialing every running node; wait until it is ready.

    It is killed when the mesh stops (registered with `mesh.on_stop`).
    """
    home = mesh.root / name
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(ADVERSARY), "--mode", mode, "--home", str(home)]
    for node in mesh.running:
        argv += ["--peer", node.dial_addr()]
    argv += list(args)
    log = _open(home / "adversary.log")
    proc = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=mesh.env,
    )
    adv = Adversary(name, home, proc, log)
    mesh.on_stop.append(adv.stop)

    async def ready() -> str | None:
        for line in adv.log_text().splitlines():
            if line.startswith(ADVERSARY_READY):
                return line[len(ADVERSARY_READY) :].strip()
        if not adv.alive:
            raise MeshError(f"adversary {name} exited:\n{adv.log_text()[-3000:]}")
        return None

    adv.peer_id = await wait_for(ready, f"adversary {name} to be ready")
    return adv


def _open(path: Path) -> IO[bytes]:
    return open(path, "ab")  # noqa: SIM115 - closed by Adversary.stop


def build_runs(under: Path) -> set[str]:
    """`p2pci.run` ids of build containers whose source bind mount lies under `under`."""
    import docker

    api: Any = docker.from_env().api
    prefix = str(under.resolve()) + os.sep
    runs: set[str] = set()
    for c in api.containers(all=True, filters={"label": "p2pci"}):
        if any(str(m.get("Source", "")).startswith(prefix) for m in (c.get("Mounts") or [])):
            run = (c.get("Labels") or {}).get("p2pci.run")
            if run:
                runs.add(run)
    return runs


def remove_containers(under: Path) -> int:
    """Force-remove the build containers (and their /out holder and volume) of homes under `under`.

    A daemon killed with SIGKILL cannot clean up its build. Only runs whose
    build container bind-mounts a source under `under` are touched (other
    tests run at the same time); the holder container and the volume of such
    a run share its `p2pci.run` label. The low-level list carries mounts and
    labels: no per-container inspect racing with others' removals.
    """
    import docker

    api: Any = docker.from_env().api
    n = 0
    prefix = str(under.resolve()) + os.sep
    runs = build_runs(under)
    for c in api.containers(all=True, filters={"label": "p2pci"}):  # ready /out holders, idle
        labels = c.get("Labels") or {}
        if labels.get("p2pci.work", "").startswith(prefix) and labels.get("p2pci.run"):
            runs.add(labels["p2pci.run"])
    for run in sorted(runs):
        for c in api.containers(all=True, filters={"label": f"p2pci.run={run}"}):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(c["Id"], force=True)
                n += 1
        with contextlib.suppress(docker.errors.APIError):
            api.remove_volume(f"p2pci-out-{run}", force=True)
    return n
