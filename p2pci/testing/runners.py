"""A fast, deterministic runner for daemon tests (no Docker).

By default the build "outputs" one file, `result.txt`, holding the sha256 of
the source tar and the command, so equal jobs give equal digests. Pass
`outputs` to choose the files (e.g. include the worker's name to simulate an
unreproducible build), `exit_code` for failing builds, and `gate` to hold
builds until the test releases them (cancellation tests). The build's log
goes to `on_log` before the gate is waited on, so it is "live" while held.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from p2pci.core.errors import BuildError
from p2pci.core.results import ManifestEntry, result_digest
from p2pci.runner.base import BuildResult, BuildSpec, OnLog, Status

Outputs = Callable[[BuildSpec, bytes], dict[str, bytes]]


def default_outputs(spec: BuildSpec, source_sha256: bytes) -> dict[str, bytes]:
    return {"result.txt": source_sha256.hex().encode() + b"\n" + "\0".join(spec.command).encode() + b"\n"}


class FakeRunner:
    def __init__(
        self,
        *,
        outputs: Outputs = default_outputs,
        exit_code: int = 0,
        status: Status = "ok",
        gate: threading.Event | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.outputs = outputs
        self.exit_code = exit_code
        self.status: Status = status
        self.gate = gate
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
        self.calls: list[BuildSpec] = []
        self.started = threading.Event()  # set when a build starts
        self.cancelled = 0
        self._lock = threading.Lock()

    def run(
        self,
        spec: BuildSpec,
        source_tar: Path,
        *,
        cancel: threading.Event,
        on_log: OnLog | None = None,
        inputs_tar: Path | None = None,
    ) -> BuildResult:
        from p2pci.runner.inputs import check_inputs

        t0 = time.monotonic()
        check_inputs(spec, inputs_tar)  # the same refusal as the Docker runner
        with self._lock:
            self.calls.append(spec)
        log_text = f"fake build of {' '.join(spec.command)}\n".encode()
        if on_log is not None:
            on_log(log_text)
        self.started.set()
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancel.is_set():
                    break
        if cancel.is_set():
            with self._lock:
                self.cancelled += 1
            raise BuildError("build cancelled")
        source_sha = hashlib.sha256(Path(source_tar).read_bytes()).digest()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        result_dir = Path(tempfile.mkdtemp(prefix="p2pci-result-", dir=self.work_dir))
        log_path = result_dir / "build.log"
        log_path.write_bytes(log_text)
        if self.status != "ok":
            return BuildResult(
                self.status, None, (), None, log_path, None, time.monotonic() - t0, f"fake {self.status}"
            )
        out_dir = result_dir / "out"
        out_dir.mkdir()
        manifest = []
        for rel, data in sorted(self.outputs(spec, source_sha).items()):
            p = out_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            os.chmod(p, 0o644)
            manifest.append(ManifestEntry(rel, len(data), 0o644, hashlib.sha256(data).digest()))
        digest = result_digest(self.exit_code, manifest)
        return BuildResult(
            "ok", self.exit_code, tuple(manifest), digest, log_path, out_dir, time.monotonic() - t0
        )
