"""The Runner protocol, build specs and results, and the trio entry point.

`Runner.run` is blocking (the docker SDK is); the daemon calls it through
`run_build`, which runs it in a worker thread and turns trio cancellation
into the runner's `cancel` event, then waits (shielded) until the runner
has killed and removed its container.
"""

from __future__ import annotations

import inspect
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

import trio

from p2pci.core.messages import Limits as Limits  # re-exported: the one Limits type
from p2pci.core.results import ManifestEntry
from p2pci.core.worker import WorkerPolicy

DEFAULT_LOG_CAP = 16 << 20
BUILD_USER = "65534:65534"
BUILD_HOSTNAME = "p2pci-build"
SOURCE_DIR = "/build/src"
OUT_DIR = "/out"


@dataclass(frozen=True)
class RunnerPolicy:
    """The worker's own caps: an offer's limits are clamped to these."""

    max_timeout_s: int = 3600
    max_memory_mb: int = 4096
    max_cpus: int = 4
    max_pids: int = 4096
    max_out_mb: int = 4096
    log_cap: int = DEFAULT_LOG_CAP

    @classmethod
    def for_worker(cls, policy: WorkerPolicy) -> RunnerPolicy:
        """The runner's caps for a donor's `[worker]` policy (pids and log: the runner's own)."""
        return cls(
            max_timeout_s=policy.max_timeout_s,
            max_memory_mb=policy.max_memory_mb,
            max_cpus=policy.max_cpus,
            max_out_mb=policy.max_out_mb,
        )

    def clamp(self, limits: Limits) -> Limits:
        return Limits(
            timeout_s=max(1, min(limits.timeout_s, self.max_timeout_s)),
            memory_mb=max(16, min(limits.memory_mb, self.max_memory_mb)),
            cpus=max(1, min(limits.cpus, self.max_cpus)),
            pids=max(16, min(limits.pids, self.max_pids)),
            out_mb=max(1, min(limits.out_mb, self.max_out_mb)),
        )


@dataclass(frozen=True)
class BuildSpec:
    image_id: str  # "sha256:<64 hex>"
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    source_date_epoch: int | None = None
    limits: Limits = field(default_factory=Limits)
    # Variations for `p2pci try` only (real builds leave them None): the umask the
    # command starts with (needs /bin/sh in the image) and the CPUs it may run on.
    umask: int | None = None
    cpuset: str | None = None


Status = Literal["ok", "timeout", "error"]


@dataclass(frozen=True)
class BuildResult:
    """What one build gave.

    status "ok": the command ran and exited (`exit_code` may be non-zero),
    `manifest` and `digest` describe `/out`. "timeout": killed at the time
    limit. "error": the outputs are unacceptable (`error` names the path) or
    the command could not be started. `out_dir` (the files of the manifest)
    and `log_path` belong to the caller: `cleanup()` removes them.
    """

    status: Status
    exit_code: int | None
    manifest: tuple[ManifestEntry, ...]
    digest: bytes | None
    log_path: Path
    out_dir: Path | None
    duration_s: float
    error: str | None = None

    def cleanup(self) -> None:
        parent = self.log_path.parent
        if parent.name.startswith("p2pci-result-"):
            shutil.rmtree(parent, ignore_errors=True)
        else:
            if self.out_dir is not None:
                shutil.rmtree(self.out_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)


OnLog = Callable[[bytes], None]


class Runner(Protocol):
    def run(
        self, spec: BuildSpec, source_tar: Path, *, cancel: threading.Event, on_log: OnLog | None = None
    ) -> BuildResult:
        """Build; blocking. Raises BuildError when cancelled or when the engine fails.

        `on_log`, when given, is called with each chunk of the build's output as it is
        produced (from a runner thread; it must be quick and must not block). The log
        file gets the same bytes (plus the runner's own notes), capped.
        """
        ...


def accepts_on_log(runner: object) -> bool:
    """Whether `runner.run` takes `on_log` (runners written before it existed do not)."""
    try:
        params = inspect.signature(runner.run).parameters  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
    return "on_log" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


async def run_build(
    runner: Runner, spec: BuildSpec, source_tar: Path, *, on_log: OnLog | None = None
) -> BuildResult:
    """Run a build from trio. Cancelling the caller kills and removes the container.

    `on_log` is passed on to the runner when it accepts it (else silently not used).
    """
    cancel = threading.Event()
    finished = threading.Event()
    box: list[BuildResult] = []
    kw: dict[str, OnLog] = {"on_log": on_log} if on_log is not None and accepts_on_log(runner) else {}

    def work() -> BuildResult:
        try:
            result = runner.run(spec, source_tar, cancel=cancel, **kw)
            box.append(result)
            return result
        finally:
            finished.set()

    try:
        return await trio.to_thread.run_sync(work, abandon_on_cancel=True)  # type: ignore[call-arg]  # trio-stubs is older than trio
    except trio.Cancelled:
        cancel.set()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(partial(finished.wait, 120))
        for result in box:  # finished just as we were cancelled: nobody will use it
            result.cleanup()
        raise
