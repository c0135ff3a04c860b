"""Helpers for in-process node tests: a scripted runner and a memory-network cluster.

    async with open_cluster(tmp_path, 5, timing=FAST) as c:
        job = await c.publish(c.nodes[0], replicas=3, quorum=2)
        await c.wait_verdict(job)

`ScriptedRunner` builds nothing: its output is a function of the source
hash and the command (so honest workers agree), `lie=True` changes the
output (a dissenting or lying worker), `fail=True` reports a runner error,
`timeout=True` a build killed at its time limit (with its log),
and `gate` (a threading.Event) holds the build until a test releases it.
`log_lines` are sent to `on_log` one by one before the gate is waited on
(a live log while the build is held) and end up in the log file too.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from p2pci.config import Config, PublishSettings, Timing, WorkerSettings
from p2pci.core.errors import BuildError
from p2pci.core.identity import mint
from p2pci.core.messages import Claim
from p2pci.core.results import ManifestEntry, result_digest
from p2pci.core.signing import Fact, NodeKey, seal
from p2pci.daemon.node import Node, validate_fact
from p2pci.net.memory import MemoryHub, MemoryNetwork
from p2pci.runner.base import BuildResult, BuildSpec, OnLog
from p2pci.testing.images import FakeImages

CLUSTER_IDENTITY_BITS = 8  # every node's identity proof and what its offers demand (~256 hashes)

FAST = Timing(
    claim_window_ms=100,
    lease_ms=1500,
    sync_interval_ms=500,
    commit_slack_ms=3000,
    dial_timeout_ms=2000,
    blob_timeout_ms=5000,
)


@dataclass
class ScriptedRunner:
    lie: bool = False
    lie_tag: str = ""
    fail: bool = False
    timeout: bool = False
    exit_code: int = 0
    gate: threading.Event | None = None
    log_lines: tuple[str, ...] = ()
    started: threading.Event = field(default_factory=threading.Event)
    runs: int = 0

    def run(
        self, spec: BuildSpec, source_tar: Path, *, cancel: threading.Event, on_log: OnLog | None = None
    ) -> BuildResult:
        self.runs += 1
        if on_log is not None:
            for line in self.log_lines:
                on_log(line.encode() + b"\n")
        self.started.set()
        if self.gate is not None:
            while not self.gate.wait(0.02):
                if cancel.is_set():
                    raise BuildError("cancelled")
        if cancel.is_set():
            raise BuildError("cancelled")
        d = Path(tempfile.mkdtemp(prefix="p2pci-result-"))
        out = d / "out"
        out.mkdir()
        src = hashlib.sha256(Path(source_tar).read_bytes()).hexdigest()
        content = f"built {src} with {' '.join(spec.command)}\n".encode()
        if self.lie:
            content += f"and something else {self.lie_tag}\n".encode()
        (out / "artifact.txt").write_bytes(content)
        (out / "sub").mkdir()
        (out / "sub" / "empty").write_bytes(b"")
        log = d / "build.log"
        log.write_text("".join(f"{line}\n" for line in self.log_lines) + f"log of a build of {src[:12]}\n")
        if on_log is not None:
            on_log(f"log of a build of {src[:12]}\n".encode())
        if self.fail:
            return BuildResult("error", None, (), None, log, None, 0.0, "scripted failure")
        if self.timeout:
            return BuildResult("timeout", None, (), None, log, None, float(spec.limits.timeout_s))
        manifest = tuple(
            ManifestEntry(p, len(b), 0o644, hashlib.sha256(b).digest())
            for p, b in sorted([("artifact.txt", content), ("sub/empty", b"")])
        )
        return BuildResult(
            "ok", self.exit_code, manifest, result_digest(self.exit_code, manifest), log, out, 0.01
        )


@dataclass
class Cluster:
    hub: MemoryHub
    nodes: list[Node]
    runners: list[ScriptedRunner | None]
    scopes: list[trio.CancelScope]
    nursery: trio.Nursery
    root: Path
    timing: Timing
    worker: WorkerSettings

    async def add_node(
        self, runner: ScriptedRunner | None, *, index: int | None = None, identity: bytes | None = None
    ) -> Node:
        """Start a node (`index`: restart that node on its old home and key; `identity`: its
        identity nonce, default one of CLUSTER_IDENTITY_BITS)."""
        i = len(self.nodes) if index is None else index
        key = NodeKey.from_seed(hashlib.sha256(f"node{i}".encode()).digest())
        # a cheap identity proof, and offers that demand it (the real check, at a test price)
        cfg = Config(
            build=runner is not None,
            timing=self.timing,
            worker=self.worker,
            publish=PublishSettings(identity_bits=CLUSTER_IDENTITY_BITS),
        )
        net = MemoryNetwork(self.hub, key.peer_id, validate=validate_fact, sync_interval=self.timing.sync_interval_ms / 1000)
        node = Node(
            self.root / f"n{i}",
            cfg,
            network=net,
            runner=runner,
            key=key,
            images=FakeImages(),
            identity=mint(key.public, CLUSTER_IDENTITY_BITS) if identity is None else identity,
        )
        scope = trio.CancelScope()
        if index is None:
            self.nodes.append(node)
            self.runners.append(runner)
            self.scopes.append(scope)
        else:
            self.nodes[i], self.runners[i], self.scopes[i] = node, runner, scope
        await self.nursery.start(_run_node, node, scope)
        return node

    async def restart(self, i: int) -> Node:
        """Kill node `i` (if running), wait until it is down, start it again on the same home."""
        self.kill(i)
        old = self.nodes[i]
        await old.stopped.wait()
        return await self.add_node(self.runners[i], index=i)

    async def publish(self, node: Node, *, replicas: int = 3, quorum: int = 2, project: str = "demo", salt: str = "", **kw: Any) -> str:
        data = f"source of {project} {salt}".encode()
        ref = node.blobs.put_bytes(data)
        job = await node.control_op(
            "publish",
            {
                "project": project,
                "source": {"sha256": ref.sha256.hex(), "size": ref.size},
                "image": "busybox",
                "command": ["sh", "-c", "true"],
                "limits": {"timeout_s": 5, "memory_mb": 64, "cpus": 1, "pids": 64, "out_mb": 1},
                "replicas": replicas,
                "quorum": quorum,
                **kw,
            },
        )
        return str(job["job"])

    async def publish_seen(self, node: Node, others: Sequence[Node], **kw: Any) -> str:
        """Publish from `node` (as `publish`) and wait until every node of `others` holds the offer."""
        job = await self.publish(node, **kw)
        with trio.fail_after(20):
            await self.wait_verdict(job, others, final=False)
        return job

    async def wait_verdict(self, job: str, nodes: Sequence[Node] | None = None, *, final: bool = True) -> list[dict[str, Any]]:
        """Poll (on events) until every node has a final verdict for `job`."""
        out = []
        for node in nodes if nodes is not None else self.live_nodes():
            while True:
                view = node.board.job(bytes.fromhex(job))
                if view is not None and view.offer is not None:
                    obj = node.job_obj(view)
                    if not final or obj["verdict"] not in ("PENDING",):
                        out.append(obj)
                        break
                await node.changed.wait()
        return out

    async def wait_converged(self, job: str, nodes: Sequence[Node] | None = None) -> list[dict[str, Any]]:
        """Wait for a final verdict everywhere and for every node to hold the same facts of `job`,
        then return each node's job object (a settled verdict, comparable across nodes)."""
        ns = list(nodes) if nodes is not None else self.live_nodes()
        await self.wait_verdict(job, ns)
        jid = bytes.fromhex(job)
        while len({frozenset(n.board.job_fact_ids(jid)) for n in ns}) != 1:
            await wait_any_change(ns)
        return [n.fresh_job_obj(n.board.job(jid)) for n in ns]  # type: ignore[arg-type]

    def live_nodes(self) -> list[Node]:
        return [n for n, s in zip(self.nodes, self.scopes, strict=True) if not s.cancel_called]

    def kill(self, i: int) -> None:
        self.scopes[i].cancel()


async def wait_any_change(nodes: Sequence[Node]) -> None:
    """Return when any of `nodes` changes (a fact or a verdict) after this call.

    Each node's `changed` event is taken here, before the first checkpoint: a task that read it
    only once it ran missed a change made in between (the caller had checked its condition
    before that change, then waited for the next one, which may never come)."""
    events = [n.changed for n in nodes]
    async with trio.open_nursery() as nursery:

        async def one(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(one, event)


async def _run_node(node: Node, scope: trio.CancelScope, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await node.run(task_status=task_status)


@asynccontextmanager
async def open_cluster(
    root: Path,
    n: int,
    *,
    runners: Sequence[ScriptedRunner | None] | None = None,
    timing: Timing = FAST,
    hub: MemoryHub | None = None,
    worker: WorkerSettings | None = None,
) -> AsyncIterator[Cluster]:
    """`n` nodes on one MemoryHub (runner None: an observer that never builds)."""
    hub = hub or MemoryHub()
    rs: list[ScriptedRunner | None] = list(runners) if runners is not None else [ScriptedRunner() for _ in range(n)]
    async with trio.open_nursery() as nursery:
        c = Cluster(hub, [], [], [], nursery, root, timing, worker or WorkerSettings(slots=2))
        for r in rs:
            await c.add_node(r)
        try:
            yield c
        finally:
            nursery.cancel_scope.cancel()


def sealed_claim(key: NodeKey, job: bytes) -> Fact:
    """`key`'s claim in `job`, with an identity proof as strong as the cluster's offers demand: a
    commit or reveal is admitted only from a signer that claimed (docs/protocol.md §4.8)."""
    return seal(key, Claim(job, 2**40, mint(key.public, CLUSTER_IDENTITY_BITS)))


def with_timing(**kw: int) -> Timing:
    return replace(FAST, **kw)
