"""The node's builds: a service with its own nursery that knows nothing of the node.

    builds = Builds(runner, images, fetch, work_dir, send_log)
    await nursery.start(builds.run)
    builds.start(job, offer, publisher, now)   # the node performs RunBuild
    builds.cancel(job)                          # ... StopBuild
    async for job, event in builds.results: ... # BuildDone / BuildFailed, one per start

A build fetches the source, the pinned inputs (if the offer has any) and the
image archive (if the image is missing) from the publisher by hash, runs in the runner, and keeps its outputs and log
and its manifest blob under `$P2PCI_HOME/work/<job>/` until the reveal
(`serve_outputs` then puts them into the blob store, where anyone may fetch them by hash). While it runs,
its output goes to `send_log` as it is produced (`p2pci.daemon.livelog`).
Every started build reports exactly one result, cancelled ones included.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.core.errors import P2pciError
from p2pci.core.messages import BlobRef, Offer
from p2pci.core.results import PackedManifest, pack_manifest
from p2pci.core.worker import BuildDone, BuildFailed
from p2pci.daemon.livelog import LOG_TAIL, LiveLog, stream
from p2pci.runner.outputs import TOO_MANY_FILES
from p2pci.store.blobs import BlobStore

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from p2pci.daemon.image_cache import Images
    from p2pci.runner.base import Runner

log = logging.getLogger("p2pci.builds")

Fetch = Callable[[BlobRef, list[bytes]], Awaitable[Path]]
Result = tuple[bytes, BuildDone | BuildFailed]
DECLINE_TAIL = 800  # chars of a timed-out build's log carried in its decline (detail <= 1024)


class Builds:
    """Runs builds in its own nursery; results come out of `results` (a trio channel)."""

    def __init__(
        self,
        runner: Runner,
        images: Images,
        blobs: BlobStore,
        fetch: Fetch,
        work_dir: Path,
        send_log: Callable[[bytes, str], None],
    ) -> None:
        self.runner = runner
        self.images = images
        self.blobs = blobs
        self.fetch = fetch
        self.work_dir = work_dir
        self.send_log = send_log
        self.running: dict[bytes, tuple[trio.CancelScope, int, str]] = {}  # job -> (scope, started, project)
        self.live: dict[bytes, LiveLog] = {}  # job -> output of its running build
        self._send, self.results = trio.open_memory_channel[Result](math.inf)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, job: bytes, offer: Offer, publisher: bytes, now: int) -> None:
        assert self._nursery is not None, "Builds.run is not running"
        scope = trio.CancelScope()
        self.running[job] = (scope, now, offer.project)
        self._nursery.start_soon(self._build, job, offer, publisher, scope)

    def cancel(self, job: bytes) -> None:
        b = self.running.get(job)
        if b is not None:
            b[0].cancel()

    def info(self) -> list[dict[str, Any]]:
        return [
            {"job": job.hex(), "project": project, "started": started}
            for job, (_s, started, project) in sorted(self.running.items())
        ]

    def _job_dir(self, job: bytes) -> Path:
        return self.work_dir / job.hex()

    async def _build(self, job: bytes, offer: Offer, publisher: bytes, scope: trio.CancelScope) -> None:
        ev: BuildDone | BuildFailed = BuildFailed("cancelled", code="")  # cancelled: no decline
        step = ["source"]  # what the build was doing (the decline code of a failure)
        try:
            with scope:
                try:
                    ev = await self._run(job, offer, publisher, step)
                except (P2pciError, OSError, trio.TooSlowError) as exc:
                    ev = BuildFailed(f"{type(exc).__name__}: {exc}", code=step[0])
                except Exception as exc:  # a runner bug is this build's failure, not the node's
                    log.exception("build of %s failed", job.hex()[:12])
                    ev = BuildFailed(f"internal error: {type(exc).__name__}: {exc}", code="other")
            if isinstance(ev, BuildFailed) and ev.code:
                log.warning("build of %s failed (%s): %s", job.hex()[:12], ev.code, ev.reason[:200])
        finally:
            self.running.pop(job, None)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                self._send.send_nowait((job, ev))  # unbounded: at most one result per started build

    async def _run(
        self, job: bytes, offer: Offer, publisher: bytes, step: list[str]
    ) -> BuildDone | BuildFailed:
        from p2pci.runner.base import BuildSpec, run_build

        step[0] = "source"
        src = await self.fetch(offer.source, [publisher])
        step[0] = "image"
        image_id = offer.image.id
        if not await trio.to_thread.run_sync(self.images.present, image_id):
            if offer.image.archive is None:
                raise P2pciError(f"image {image_id} is not here and the offer has no archive")
            arch = await self.fetch(offer.image.archive, [publisher])
            await trio.to_thread.run_sync(self.images.load, image_id, arch)
        inputs: Path | None = None
        if offer.inputs is not None:  # fetched by hash like the source; the runner checks the hash again
            try:
                inputs = await self.fetch(offer.inputs, [publisher])
            except (P2pciError, OSError) as exc:
                raise P2pciError(f"inputs {offer.inputs.sha256.hex()} refused or unavailable: {exc}") from None
        spec = BuildSpec(
            image_id=image_id,
            command=offer.command,
            env=offer.env,
            source_date_epoch=offer.source_date_epoch,
            limits=offer.limits,
            inputs_sha256=None if offer.inputs is None else offer.inputs.sha256,
        )
        step[0] = "start_failed"
        live = LiveLog(trio.lowlevel.current_trio_token())
        self.live[job] = live
        streaming = trio.CancelScope()
        assert self._nursery is not None
        self._nursery.start_soon(stream, live, lambda text: self.send_log(job, text), streaming)
        try:
            result = await run_build(self.runner, spec, src, on_log=live.feed, inputs_tar=inputs)
        finally:
            streaming.cancel()
            self.send_log(job, live.take(final=True))
            self.live.pop(job, None)
        try:
            if result.status == "timeout":
                # the donor's evidence: the log's tail in the decline, the whole log served by hash
                ref, tail = await trio.to_thread.run_sync(self._keep_log, result.log_path)
                why = f"timed out after {offer.limits.timeout_s}s"
                return BuildFailed(why, code="timeout", detail=f"{why}; log tail:\n{tail}", log=ref)
            if result.status != "ok" or result.exit_code is None:
                why = result.error or result.status
                if why.startswith(TOO_MANY_FILES) and "files in /out" in why:  # the manifest limit
                    ref, _tail = await trio.to_thread.run_sync(self._keep_log, result.log_path)
                    return BuildFailed(f"outputs cannot be reported: {why}", code="outputs", log=ref)
                return BuildFailed(why, code="start_failed")
            exit_code = result.exit_code
            try:  # the manifest blob: bounded (entries, bytes) before it is made or kept
                packed = await trio.to_thread.run_sync(pack_manifest, exit_code, result.manifest)
            except ValueError as exc:  # a result that cannot be revealed: decline, never loop
                ref, _tail = await trio.to_thread.run_sync(self._keep_log, result.log_path)
                why = f"outputs cannot be reported: {exc}"
                return BuildFailed(why, code="outputs", detail=why, log=ref)
            log_ref = await trio.to_thread.run_sync(
                self._keep_result, job, result.log_path, result.out_dir, packed
            )
            if live.fed == 0:  # a runner that does not stream: the tail, at the end
                tail = self.live_log(job) or ""
                self.send_log(job, tail[-LOG_TAIL:])
            return BuildDone(exit_code, BlobRef(packed.sha256, packed.size), packed.files, packed.digest, log_ref)
        finally:
            await trio.to_thread.run_sync(result.cleanup)

    def _keep_log(self, log_path: Path) -> tuple[BlobRef | None, str]:
        """Put a failed build's log into the blob store: (its ref, its last DECLINE_TAIL chars)."""
        try:
            ref = self.blobs.put_file(log_path)
            with open(log_path, "rb") as fh:
                fh.seek(max(0, ref.size - DECLINE_TAIL * 4))
                tail = fh.read().decode("utf-8", "replace")[-DECLINE_TAIL:]
        except OSError:
            return None, ""
        return ref, tail

    def _keep_result(self, job: bytes, log_path: Path, out_dir: Path | None, packed: PackedManifest) -> BlobRef:
        d = self._job_dir(job)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        shutil.copyfile(log_path, d / "log")
        (d / "manifest").write_bytes(packed.data)  # served (by hash) only from the reveal on
        if out_dir is not None and out_dir.exists():
            shutil.copytree(out_dir, d / "out", symlinks=True)
        else:
            (d / "out").mkdir()
        h = hashlib.sha256()
        size = 0
        with open(d / "log", "rb") as fh:
            while chunk := fh.read(1 << 16):
                h.update(chunk)
                size += len(chunk)
        return BlobRef(h.digest(), size)

    async def serve_outputs(self, job: bytes, manifest: BlobRef) -> None:
        """Put this worker's manifest blob, outputs and log into the blob store (served by hash from
        now on). The outputs are the files the runner wrote under `out/` (exactly the manifest's)."""
        d = self._job_dir(job)
        blobs = self.blobs

        def put() -> None:
            if (d / "log").exists():
                blobs.put_file(d / "log")
            if (d / "manifest").exists() and blobs.size(manifest.sha256) != manifest.size:
                if blobs.put_file(d / "manifest") != manifest:
                    log.warning("job %s: the kept manifest does not match the reveal", job.hex()[:12])
            for root, _dirs, files in os.walk(d / "out"):
                for name in files:
                    p = Path(root) / name
                    if p.is_file() and not p.is_symlink():
                        blobs.put_file(p)

        await trio.to_thread.run_sync(put)

    def live_log(self, job: bytes) -> str | None:
        """This node's log of `job`: the output so far while it builds, else the kept log."""
        live = self.live.get(job)
        if live is not None:
            return live.recent_text()
        p = self._job_dir(job) / "log"
        try:
            return p.read_bytes()[: 1 << 20].decode("utf-8", "replace")
        except OSError:
            return None
