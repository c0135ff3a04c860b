"""The node's builds: a service with its own nursery that knows nothing of the node.

    builds = Builds(runner, images, fetch, work_dir, send_log)
    await nursery.start(builds.run)
    builds.start(job, offer, publisher, now)   # the node performs RunBuild
    builds.cancel(job)                          # ... StopBuild
    async for job, event in builds.results: ... # BuildDone / BuildFailed, one per start

A build fetches the source, the pinned inputs (if the offer has any) and the
image archive by hash from whoever holds them (`holders`: the workers that built the job
already, then the publisher; the other selected workers share the source and inputs piece by
piece while they fetch, p2pci.net.pieces), runs in the runner, and moves its
outputs, log and manifest blob into the blob store once, by hard link (`BlobStore.adopt_many`:
one batch, durable before the tie; the log is also linked at `$P2PCI_HOME/work/<job>/log`). Each
blob is tied to the job in the store (`FactStore.tie`): the source and inputs before they are
fetched (so that the pieces that arrive are served to the other selected workers at once), the
outputs unserved until the reveal (`serve_outputs` marks them served; the blob server then serves
them under the job's access rule, `p2pci.core.access`). While it runs, its output goes to
`send_log` as it is produced (`p2pci.daemon.livelog`). Every started build
reports exactly one result, cancelled ones included.

Images (`check_image`): a worker runs only an image the donor lists in `[worker]
images`, one built here from a deterministic recipe (`busybox`, `debian:…`), or
one that arrived as this publisher's archive (from any holder: its hash is the one the
publisher signed); never any other local image.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.core.errors import P2pciError
from p2pci.core.messages import BlobRef, Offer
from p2pci.core.results import ManifestEntry, PackedManifest, pack_manifest
from p2pci.core.worker import BuildDone, BuildFailed
from p2pci.daemon.livelog import LOG_TAIL, LiveLog, stream
from p2pci.runner.outputs import TOO_MANY_FILES
from p2pci.store.blobs import BlobStore
from p2pci.textsafe import safe_text

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from p2pci.daemon.image_cache import Images
    from p2pci.runner.base import Runner
    from p2pci.store.facts import FactStore

log = logging.getLogger("p2pci.builds")

Fetch = Callable[[BlobRef, list[bytes], list[bytes]], Awaitable[Path]]
Holders = Callable[[bytes, bytes], tuple[list[bytes], list[bytes]]]
"""`holders(job, publisher) -> (peers, sharers)`: who holds a job's source, image and inputs (keys
in order of preference, the publisher last) and who fetches them now (the selected workers)."""


def publisher_only(job: bytes, publisher: bytes) -> tuple[list[bytes], list[bytes]]:
    return [publisher], []
Result = tuple[bytes, BuildDone | BuildFailed]
DECLINE_TAIL = 800  # chars of a timed-out build's log carried in its decline (detail <= 1024)
IMAGE_BY = "image/by/"  # kv: image id -> publisher keys (hex) whose archive brought it here
IMAGE_LOADED = "image/loaded/"  # kv: image id -> jobs (hex) of an image p2pci itself loaded (gc removes it)
IMAGE_JOBS_KEPT = 64  # jobs remembered per loaded image (the newest)


class ImageRefused(P2pciError):
    """The offer's image is not one this worker may run (the decline reason `image`)."""


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
        holders: Holders = publisher_only,
    ) -> None:
        self.runner = runner
        self.holders = holders
        self.images = images
        self.blobs = blobs
        self.fetch = fetch
        self.work_dir = work_dir
        self.send_log = send_log
        self.store: FactStore | None = None  # set by the node once its store is open (ties, image records)
        self.me = b""  # this node's key (its own offers may use its own images)
        self.listed_images: frozenset[str] = frozenset()  # `[worker] images` (resolved IDs): run without archive
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
                # the reason may quote peers (a holder's refusal, a source's file names): escaped
                log.warning("build of %s failed (%s): %s", job.hex()[:12], ev.code, safe_text(ev.reason[:200]))
        finally:
            self.running.pop(job, None)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                self._send.send_nowait((job, ev))  # unbounded: at most one result per started build

    async def _run(
        self, job: bytes, offer: Offer, publisher: bytes, step: list[str]
    ) -> BuildDone | BuildFailed:
        from p2pci.runner.base import BuildSpec, run_build

        step[0] = "source"
        peers, sharers = self.holders(job, publisher)
        # tied (served) before the fetch: the pieces that arrive are served to the team at once
        await self._tie(job, [(offer.source.sha256, "source")], served=True)
        src = await self.fetch(offer.source, peers, sharers)
        step[0] = "image"
        image_id = offer.image.id
        need = await trio.to_thread.run_sync(self.check_image, image_id, publisher, offer.image.archive)
        if need:
            assert offer.image.archive is not None
            was_here = await trio.to_thread.run_sync(self.images.present, image_id)
            # no team: a selected worker that has the image never fetches its archive
            arch = await self.fetch(offer.image.archive, peers, [])
            await trio.to_thread.run_sync(self.images.load, image_id, arch)
            await trio.to_thread.run_sync(self._record_image, image_id, publisher, job, was_here)
            await self._tie(job, [(offer.image.archive.sha256, "image")], served=True)
        inputs: Path | None = None
        if offer.inputs is not None:  # fetched by hash like the source; the runner checks the hash again
            await self._tie(job, [(offer.inputs.sha256, "inputs")], served=True)  # before: as the source
            try:
                inputs = await self.fetch(offer.inputs, peers, sharers)
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
                if ref is not None:
                    await self._tie(job, [(ref.sha256, "log")], served=True)
                why = f"timed out after {offer.limits.timeout_s}s"
                return BuildFailed(why, code="timeout", detail=f"{why}; log tail:\n{tail}", log=ref)
            if result.status != "ok" or result.exit_code is None:
                why = result.error or result.status
                if why.startswith(TOO_MANY_FILES) and "files in /out" in why:  # the manifest limit
                    ref, _tail = await trio.to_thread.run_sync(self._keep_log, result.log_path)
                    if ref is not None:
                        await self._tie(job, [(ref.sha256, "log")], served=True)
                    return BuildFailed(f"outputs cannot be reported: {why}", code="outputs", log=ref)
                return BuildFailed(why, code="start_failed")
            exit_code = result.exit_code
            try:  # the manifest blob: bounded (entries, bytes) before it is made or kept
                packed = await trio.to_thread.run_sync(pack_manifest, exit_code, result.manifest)
            except ValueError as exc:  # a result that cannot be revealed: decline, never loop
                ref, _tail = await trio.to_thread.run_sync(self._keep_log, result.log_path)
                if ref is not None:
                    await self._tie(job, [(ref.sha256, "log")], served=True)
                why = f"outputs cannot be reported: {exc}"
                return BuildFailed(why, code="outputs", detail=why, log=ref)
            log_ref = await trio.to_thread.run_sync(
                self._keep_result, job, result.log_path, result.out_dir, packed, result.manifest
            )
            if live.fed == 0:  # a runner that does not stream: the tail, at the end
                tail = self.live_log(job) or ""
                self.send_log(job, tail[-LOG_TAIL:])
            return BuildDone(exit_code, BlobRef(packed.sha256, packed.size), packed.files, packed.digest, log_ref)
        finally:
            await trio.to_thread.run_sync(result.cleanup)

    # ------------------------------------------------------------------ images

    def check_image(self, image_id: str, publisher: bytes, archive: BlobRef | None) -> bool:
        """Whether this worker may run `image_id` for `publisher`: False when it may run the local
        image as it is, True when the publisher's archive must be fetched and loaded first.
        Raises ImageRefused when it may not run it at all (blocking: call it in a thread).

        The local image may be run when the donor lists it (`[worker] images`), when it was
        built here from a deterministic recipe (the recipe label p2pci's image builder sets),
        or when it arrived here as this same publisher's archive. Anything else (a donor's own
        image, or one loaded for another publisher) needs this publisher's archive; an archive
        already here that arrived for another publisher does not count (naming a hash is not
        holding the image)."""
        present = self.images.present(image_id)
        if publisher == self.me:  # our own offer: our own image, or our own archive
            return not present
        if present:
            if image_id in self.listed_images or self.images.recipe(image_id):
                return False
            if publisher.hex() in self._image_publishers(image_id):
                return False
        if archive is None:
            what = "a local image this worker does not run for others" if present else "not here"
            raise ImageRefused(
                f"image {image_id} is {what}, and the offer has no archive "
                "(a worker runs only the publisher's archive, a recipe image built here, or an image "
                "its donor lists in [worker] images)"
            )
        if self.blobs.has(archive.sha256) and publisher.hex() not in self._image_publishers(image_id):
            raise ImageRefused(
                f"image {image_id}: its archive is here for another publisher; this publisher did not send it"
            )
        return True

    def _image_publishers(self, image_id: str) -> list[str]:
        if self.store is None:
            return []
        got = self.store.kv_get(IMAGE_BY + image_id, [])
        return [p for p in got if isinstance(p, str)] if isinstance(got, list) else []

    def _record_image(self, image_id: str, publisher: bytes, job: bytes, was_here: bool) -> None:
        """The archive of `publisher` brought `image_id` (and, unless the image was here before,
        p2pci loaded it: garbage collection may remove it once no job of `jobs` needs it)."""
        if self.store is None:
            return
        pubs = self._image_publishers(image_id)
        if publisher.hex() not in pubs:
            self.store.kv_put(IMAGE_BY + image_id, [*pubs, publisher.hex()][-IMAGE_JOBS_KEPT:])
        loaded = self.store.kv_get(IMAGE_LOADED + image_id, None)
        if loaded is None and was_here:
            return  # the donor's own (or built here): never ours to remove
        jobs = [j for j in (loaded or []) if isinstance(j, str) and j != job.hex()]
        self.store.kv_put(IMAGE_LOADED + image_id, [*jobs, job.hex()][-IMAGE_JOBS_KEPT:])

    # ------------------------------------------------------------------ results

    async def _tie(self, job: bytes, refs: list[tuple[bytes, str]], *, served: bool) -> None:
        store, blobs = self.store, self.blobs
        if store is not None:
            now = int(time.time() * 1000)

            def tie() -> None:
                blobs.sync()  # a fetched blob's rename is durable before a record names it
                store.tie(job, refs, served=served, at=now)

            await trio.to_thread.run_sync(tie)

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

    def _keep_result(
        self,
        job: bytes,
        log_path: Path,
        out_dir: Path | None,
        packed: PackedManifest,
        manifest: tuple[ManifestEntry, ...] = (),
    ) -> BlobRef:
        """Move the log and the outputs into the blob store (one copy: hard links), with the manifest
        blob, all tied to `job` and not served before the reveal. The log is also linked at
        work/<job>/log."""
        d = self._job_dir(job)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        outputs: list[Path] = []
        if out_dir is not None:
            for e in manifest:
                p = out_dir / e.path
                if p.is_file() and not p.is_symlink():
                    outputs.append(p)
        manifest_ref = self.blobs.put_bytes(packed.data)
        # one batch: every blob durable (data fsyncs in parallel, one fsync per directory) before
        # the tie below, and so before the reveal that names them (docs/internals.md "Durability")
        log_ref, *out_refs = self.blobs.adopt_many([log_path, *outputs])
        refs: list[tuple[bytes, str]] = [(log_ref.sha256, "log"), (manifest_ref.sha256, "manifest")]
        refs += [(r.sha256, "output") for r in out_refs]
        try:
            os.link(self.blobs.path(log_ref.sha256), d / "log")
        except OSError:
            shutil.copyfile(log_path, d / "log")
        if self.store is not None:
            self.store.tie(job, refs, served=False, at=int(time.time() * 1000))
        return log_ref

    async def serve_outputs(self, job: bytes, manifest: BlobRef) -> None:
        """The reveal is out: this worker's manifest blob, outputs and log are served (under the
        job's access rule). A result kept by an older p2pci under work/<job>/ is moved in first."""
        d = self._job_dir(job)
        blobs, store = self.blobs, self.store

        def serve() -> None:
            refs: list[tuple[bytes, str]] = []
            if (d / "log").exists():
                refs.append((blobs.adopt(d / "log").sha256, "log"))
            older: list[Path] = []
            if (d / "manifest").exists() and blobs.size(manifest.sha256) != manifest.size:
                if blobs.put_file(d / "manifest") != manifest:
                    log.warning("job %s: the kept manifest does not match the reveal", job.hex()[:12])
            if blobs.size(manifest.sha256) == manifest.size:
                refs.append((manifest.sha256, "manifest"))
            for root, _dirs, files in os.walk(d / "out"):  # an older p2pci's copy of the outputs
                for name in files:
                    p = Path(root) / name
                    if p.is_file() and not p.is_symlink():
                        older.append(p)
            refs.extend((r.sha256, "output") for r in blobs.adopt_many(older))  # durable before the tie
            if store is not None:
                store.tie(job, refs, served=True, at=int(time.time() * 1000))
                store.serve_job_blobs(job)

        await trio.to_thread.run_sync(serve)

    def log_bytes(self, job: bytes, offset: int, limit: int) -> tuple[int, bytes, int] | None:
        """This node's log of `job` from `offset` (/p2pci/logtail/1): `(start, data, size)` of
        the running build's output, else of the kept log of a finished one; None if neither.
        Blocking (a file read): call it in a thread."""
        live = self.live.get(job)
        if live is not None:
            return live.read(offset, limit)
        p = self._job_dir(job) / "log"
        try:
            with p.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = min(offset, size)
                f.seek(start)
                return start, f.read(limit), size
        except OSError:
            return None

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
