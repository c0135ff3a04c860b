"""Helpers for the parts that run real daemons (propagation, overhead, blob).

Daemon processes come from `p2pci.demo.Mesh` (the same orchestration as
`make demo` and tests/e2e/mesh.py). This module adds what a benchmark needs:
the busybox image, a source blob put straight into a node's store, the
control-socket ``publish`` arguments (the same fields `p2pci publish` sends),
and `Watch`, which subscribes to every daemon's event stream and timestamps,
in this process, when each node first shows a job and when it shows a
verdict, so that waits are on events and times come from one clock.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.common import log

FINAL = frozenset({"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"})


def busybox_image() -> str:
    """The deterministic busybox image ID (built from busybox-static when missing)."""
    from p2pci.runner.images import build_busybox

    return build_busybox()


def put_source(home: Path, files: dict[str, str]) -> dict[str, Any]:
    """Pack `files` deterministically into the node's blob store; the offer's `source` field."""
    from p2pci.runner.source import pack_source
    from p2pci.store.blobs import BlobStore

    store = BlobStore(home / "blobs")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "src"
        d.mkdir()
        for rel, text in files.items():
            (d / rel).write_text(text)
        tar = Path(tmp) / "source.tar"
        pack_source(d, tar)
        ref = store.put_file(tar)
    return {"sha256": ref.sha256.hex(), "size": ref.size}


def publish_args(
    source: dict[str, Any],
    image: str,
    script: str,
    *,
    project: str = "bench",
    replicas: int = 3,
    quorum: int = 2,
    timeout_s: int = 60,
) -> dict[str, Any]:
    """Arguments of the control op ``publish`` (what `p2pci publish` sends)."""
    return {
        "project": project,
        "source": source,
        "image": image,
        "command": ["sh", "-c", script],
        "env": {},
        "source_date_epoch": 1700000000,
        "limits": {"timeout_s": timeout_s, "memory_mb": 256, "cpus": 1, "pids": 64, "out_mb": 16},
        "replicas": replicas,
        "quorum": quorum,
        "workers": "open",
        "require": None,
    }


@dataclass
class JobTimes:
    first_seen: dict[str, float] = field(default_factory=dict)  # node -> monotonic time
    verdict: dict[str, tuple[str, float]] = field(default_factory=dict)  # node -> (state, time)
    # (node, time, verdict, reveals counted in groups) of every job event
    events: list[tuple[str, float, str, int]] = field(default_factory=list)
    # node -> [build start, build end] as seen in the worker's `node` events
    builds: dict[str, list[float | None]] = field(default_factory=dict)


class Watch:
    """Subscriptions to many daemons; `await wait(pred)` wakes on every event."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobTimes] = {}
        self._building: dict[str, set[str]] = {}  # node -> jobs it was building at its last event
        self._changed = trio.Event()
        self.errors: list[str] = []

    def job(self, job: str) -> JobTimes:
        return self.jobs.setdefault(job, JobTimes())

    async def follow(self, name: str, home: Path, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Record `name`'s job events until cancelled (started once subscribed)."""
        from p2pci.control.client import subscribe

        async with subscribe(home) as events:
            task_status.started()
            async for ev in events:
                t = time.monotonic()
                if ev.get("event") == "node" and isinstance(ev.get("node"), dict):
                    self._on_node(name, t, ev["node"])
                    continue
                if ev.get("event") != "job" or not isinstance(ev.get("job"), dict):
                    continue
                j = ev["job"]
                jid = j.get("job")
                if not isinstance(jid, str):
                    continue
                jt = self.job(jid)
                jt.first_seen.setdefault(name, t)
                state = str(j.get("verdict"))
                groups = j.get("groups") if isinstance(j.get("groups"), list) else []
                votes = sum(len(g.get("workers", [])) for g in groups if isinstance(g, dict))
                jt.events.append((name, t, state, votes))
                if state in FINAL and name not in jt.verdict:
                    jt.verdict[name] = (state, t)
                self._changed.set()
                self._changed = trio.Event()

    def _on_node(self, name: str, t: float, node: dict[str, Any]) -> None:
        """Build start/end from the `building` list a worker reports on every phase change."""
        now = {b["job"] for b in node.get("building") or [] if isinstance(b, dict) and "job" in b}
        before = self._building.get(name, set())
        for job in now - before:
            self.job(job).builds.setdefault(name, [t, None])
        for job in before - now:
            span = self.job(job).builds.get(name)
            if span is not None and span[1] is None:
                span[1] = t
        self._building[name] = now

    async def wait(self, pred: Callable[[], bool]) -> None:
        """Wait until `pred()` holds (no timeout of its own: the caller's cancel scope)."""
        while not pred():
            await self._changed.wait()

    async def wait_seen(self, job: str, names: Sequence[str]) -> None:
        await self.wait(lambda: all(n in self.job(job).first_seen for n in names))

    async def wait_verdict(self, job: str, name: str) -> str:
        await self.wait(lambda: name in self.job(job).verdict)
        return self.job(job).verdict[name][0]


async def follow_all(nursery: trio.Nursery, watch: Watch, nodes: Sequence[Any]) -> None:
    """Subscribe `watch` to each node (a `p2pci.demo.Node`) not yet followed."""
    for node in nodes:
        await nursery.start(watch.follow, node.name, node.home)
    log(f"watching {len(nodes)} daemon(s)")
