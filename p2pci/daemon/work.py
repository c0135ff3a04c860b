"""The node's worker: drives `p2pci.core.worker` per job and performs its actions.

`Worker.process(view, verdict, now)` is called by the node's clock loop for
every job that changed or whose wake-up time came. It feeds queued build
events and a `Tick` to `worker_step` and performs the actions: publish
claims, commits and reveals, start and cancel builds. The worker's state
(salt and result included) is written to SQLite before a commit is
published, so a restarted worker can still reveal.

Builds fetch the source (and the image archive if the image is missing)
from the publisher by hash, run in the runner, and keep their outputs and
log under `$P2PCI_HOME/work/<job>/` until the reveal; then they go into the
blob store, where anyone may fetch them by hash.

While a build runs, its output reaches subscribers as it is produced: the
runner's `on_log` callback (a runner thread) appends to a bounded `LiveLog`
and wakes a trio task, which sends `{event: "log", job, worker, text}` at
most every `LOG_INTERVAL` seconds, whole lines only, at most `LOG_EVENT_MAX`
bytes per event (older text of a burst is skipped with a marker). Nothing
here waits on a subscriber: `Node.broadcast` drops a subscriber that lags.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.core.board import JobView
from p2pci.core.errors import P2pciError
from p2pci.core.messages import BlobRef, Claim, Commit, Offer
from p2pci.core.results import ManifestEntry
from p2pci.core.selection import live_claimants, selected
from p2pci.core.signing import peer_id_of
from p2pci.core.tally import Verdict
from p2pci.core.worker import (
    Action,
    BuildDone,
    BuildFailed,
    CancelBuild,
    Event,
    GiveUp,
    PublishClaim,
    PublishCommit,
    PublishReveal,
    StartBuild,
    Tick,
    WorkerConfig,
    WorkerJob,
    next_wakeup,
    worker_step,
)
from p2pci.store.facts import FactStore

if TYPE_CHECKING:
    from p2pci.daemon.node import Node

log = logging.getLogger("p2pci.worker")
LOG_TAIL = 4096  # characters of a finished build's log sent to subscribers (runners without on_log)
LOG_INTERVAL = 0.25  # seconds between two live log events of one build
LOG_EVENT_MAX = 8192  # bytes of log text in one live event
LOG_BUFFER_MAX = 64 << 10  # bytes of not yet sent output kept per build (the newest; up to twice that)
LOG_RECENT_MAX = 1 << 20  # bytes of a running build's output kept for `p2pci logs`


class LiveLog:
    """One running build's output on its way to subscribers.

    `feed(chunk)` is the runner's `on_log`: called from any thread, it never blocks on trio
    (the wake-up goes through `TrioToken.run_sync_soon`). `take(final)` (trio side) returns
    the text to send: complete lines only (a line longer than `LOG_EVENT_MAX` is cut), or
    everything left when `final`.
    """

    def __init__(self, token: trio.lowlevel.TrioToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._skipped = 0  # bytes dropped from the front of _buf since the last take
        self._scheduled = False
        self._carry = b""  # an incomplete last line (trio side only)
        self.recent = bytearray()  # the newest LOG_RECENT_MAX bytes, for `p2pci logs` while building
        self.fed = 0
        self.ready = trio.Event()

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        with self._lock:
            self.fed += len(chunk)
            # trimmed to the cap once twice the cap is reached: a chatty build costs no memmove per chunk
            self._buf += chunk
            if len(self._buf) > 2 * LOG_BUFFER_MAX:
                cut = len(self._buf) - LOG_BUFFER_MAX
                del self._buf[:cut]
                self._skipped += cut
            self.recent += chunk
            if len(self.recent) > 2 * LOG_RECENT_MAX:
                del self.recent[: len(self.recent) - LOG_RECENT_MAX]
            wake = not self._scheduled and self._token is not None
            self._scheduled = True
        if wake:
            assert self._token is not None
            try:
                self._token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        self.ready.set()

    async def wait(self) -> None:
        await self.ready.wait()
        self.ready = trio.Event()

    def take(self, *, final: bool = False) -> str:
        with self._lock:
            data, skipped = bytes(self._buf), self._skipped
            self._buf.clear()
            self._skipped = 0
            self._scheduled = False
        if skipped:
            self._carry = b""  # its continuation was skipped
        data = self._carry + data
        if final:
            send, self._carry = data, b""
        else:
            nl = data.rfind(b"\n") + 1
            send, self._carry = data[:nl], data[nl:]
            if len(self._carry) > LOG_EVENT_MAX:  # a very long line (or no newlines at all): send a piece
                send, self._carry = data, b""
        if len(send) > LOG_EVENT_MAX:
            cut = len(send) - LOG_EVENT_MAX
            nl = send.find(b"\n", cut, len(send) - 1)
            cut = nl + 1 if nl >= 0 else cut
            skipped += cut
            send = send[cut:]
        if not send and not skipped:
            return ""
        text = send.decode("utf-8", "replace")
        if text and not text.endswith("\n"):
            text += "\n"
        if skipped:
            text = f"[p2pci: {skipped} bytes of log skipped]\n" + text
        return text

    def recent_text(self) -> str:
        with self._lock:
            return bytes(self.recent[-LOG_RECENT_MAX:]).decode("utf-8", "replace")


# ------------------------------------------------------------------ persistence of WorkerJob


def encode_wj(wj: WorkerJob) -> dict[str, Any]:
    d = asdict(wj)
    d["manifest"] = [e.to_obj() for e in wj.manifest]
    d["log"] = None if wj.log is None else {"sha256": wj.log.sha256, "size": wj.log.size}
    return d


def decode_wj(d: dict[str, Any]) -> WorkerJob:
    d = dict(d)
    d["manifest"] = tuple(ManifestEntry(e["path"], e["size"], e["mode"], bytes(e["sha256"])) for e in d["manifest"])
    if d.get("log") is not None:
        d["log"] = BlobRef(bytes(d["log"]["sha256"]), int(d["log"]["size"]))
    for k in ("job", "salt", "digest", "commit"):
        if d.get(k) is not None:
            d[k] = bytes(d[k])
    return WorkerJob(**d)


class Worker:
    """The build side of a node (inactive when the node has no runner)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        tm = node.config.timing
        self.cfg = WorkerConfig(
            me=node.me,
            lease_ms=tm.lease_ms,
            # protocol v2: claim as soon as the offer is seen; the publisher selects when its
            # claim window (offer.claim_window) is over, nobody can rank before that
            claim_window_ms=0,
            policy=node.config.worker.policy(),
            slack_ms=tm.commit_slack_ms,
            salt_secret=node.key.seed,
        )
        self.jobs: dict[bytes, WorkerJob] = {}
        self.events: dict[bytes, list[Event]] = {}
        self.building: dict[bytes, tuple[trio.CancelScope, int, str]] = {}
        self.live: dict[bytes, LiveLog] = {}  # job -> output of its running build
        self._claimed_at: dict[bytes, int] = {}  # job -> end of the settle time after our first claim
        self.work_dir = node.paths.work

    @property
    def active(self) -> bool:
        return self.node.runner is not None

    def load(self, store: FactStore) -> None:
        for _key, val in store.kv_items("worker/"):
            try:
                wj = decode_wj(val)
            except (KeyError, TypeError, ValueError):
                continue
            if wj.phase == "BUILDING":  # the build died with the old process: build again if still selected
                wj = replace(wj, phase="CLAIMED")
            self.jobs[wj.job] = wj

    def _revealed_by_others(self, view: JobView) -> bool:
        return any(w != self.node.me for w in view.reveals)

    def _slot_freed(self) -> None:
        """A slot may have come free: jobs waiting for one get a tick."""
        for j, w in self.jobs.items():
            if w.phase in ("SEEN", "WAITING", "CLAIMED"):
                self.node.mark_dirty(j)

    async def _persist(self, wj: WorkerJob) -> None:
        store = self.node.store
        assert store is not None
        await trio.to_thread.run_sync(store.kv_put, f"worker/{wj.job.hex()}", encode_wj(wj))

    def _free_slot(self, job: bytes, phase: str, now: int) -> bool:
        """Builds running, plus (for a new claim) claims where we are selected and will build soon.

        A claim where we are not selected is a stand-by and holds no slot: otherwise workers
        waiting in case someone vanishes would starve every other job.
        """
        slots = self.node.config.worker.slots
        view = self.node.board.job(job)
        if view is not None and view.offer_msg is not None:
            # A build that starts after someone revealed can never be in a `seen` list: useless.
            # A new claim on a job already staffed (M commits of others) would only add late builds.
            if phase in ("SEEN", "WAITING", "CLAIMED") and self._revealed_by_others(view):
                return False
            others = [w for w in view.commits if w != self.node.me]
            if phase in ("SEEN", "WAITING") and len(others) >= view.offer_msg.replicas:
                return False
        busy = sum(1 for j in self.building if j != job)
        if phase in ("SEEN", "WAITING"):
            for j, w in self.jobs.items():
                if j != job and w.phase == "CLAIMED":
                    view = self.node.board.job(j)
                    if view is not None and self.node.me in selected(view, now):
                        busy += 1
        return busy < slots

    async def process(self, view: JobView, verdict: Verdict, now: int) -> None:
        if not self.active or view.offer is None:
            return
        job = view.job
        wj = self.jobs.get(job)
        if wj is None:
            if verdict.final:
                return  # decided before we saw it: nothing to do
            wj = WorkerJob.new(job, now)
            self.jobs[job] = wj
        events = self.events.pop(job, [])
        if wj.terminal and not events:
            return
        settle = self._claimed_at.get(job)
        if wj.phase == "CLAIMED" and settle is not None and now < settle and not events:
            # just claimed: let competing claims of the same window arrive before deciding to build
            self.node.wake_at(job, settle)
            return
        before = wj.phase
        for ev in [*events, Tick(free_slot=self._free_slot(job, wj.phase, now))]:
            wj, actions = worker_step(wj, view, now, self.cfg, ev)
            self.jobs[job] = wj
            for action in actions:
                await self._act(view, wj, action)
            if isinstance(ev, Tick):
                break
        if wj.phase != before and wj.phase not in ("SEEN", "WAITING", "SKIPPED"):
            await self._persist(wj)
        if wj.phase != before:
            self.node._bump()
            self.node.broadcast({"event": "node", "node": self.node.node_info()})
            if before in ("CLAIMED", "BUILDING"):
                self._slot_freed()
        self.node.wake_at(job, next_wakeup(wj, view, now))
        if wj.phase == "COMMITTED":
            # a selected worker that vanished before committing stops blocking the reveal when its
            # lease ends: look again then rather than at the reveal deadline
            for w, lease in live_claimants(view, now).items():
                if w not in view.commits:
                    self.node.wake_at(job, lease)

    async def _act(self, view: JobView, wj: WorkerJob, action: Action) -> None:
        node = self.node
        if isinstance(action, PublishClaim):
            if wj.phase == "CLAIMED" and wj.job in self._claimed_at and self._revealed_by_others(view):
                return  # a stand-by that can no longer count: let the lease lapse so others need not wait
            if wj.job not in self._claimed_at:
                self._claimed_at[wj.job] = node.clock() + max(1, self.cfg.claim_window_ms // 2)
            await node.publish_message(Claim(job=wj.job, lease_until=action.lease_until))
        elif isinstance(action, StartBuild):
            assert node._nursery is not None
            scope = trio.CancelScope()
            offer = view.offer_msg
            assert offer is not None and view.offer is not None
            self.building[wj.job] = (scope, node.clock(), offer.project)
            node._nursery.start_soon(self._build, wj.job, offer, view.offer.signer, scope)
        elif isinstance(action, PublishCommit):
            await self._persist(wj)  # salt and result on disk before anyone sees the commit
            await node.publish_message(Commit(job=wj.job, hash=action.hash))
        elif isinstance(action, PublishReveal):
            await self._persist(wj)
            await self._serve_outputs(wj)
            await node.publish_message(action.reveal)
        elif isinstance(action, CancelBuild):
            b = self.building.get(wj.job)
            if b is not None:
                b[0].cancel()
        elif isinstance(action, GiveUp):
            log.info("job %s: %s", wj.job.hex()[:12], action.reason)
            b = self.building.get(wj.job)
            if b is not None and wj.phase == "GAVE_UP":
                b[0].cancel()

    # ------------------------------------------------------------------ builds

    def _job_dir(self, job: bytes) -> Path:
        return self.work_dir / job.hex()

    async def _build(self, job: bytes, offer: Offer, publisher: bytes, scope: trio.CancelScope) -> None:
        from p2pci.runner.base import BuildSpec, run_build

        node = self.node
        runner = node.runner
        assert runner is not None
        ev: Event = BuildFailed("cancelled")
        with scope:
            try:
                src = await node.fetch_blob(offer.source, [publisher])
                image_id = offer.image.id
                if not await trio.to_thread.run_sync(node.images.present, image_id):
                    if offer.image.archive is None:
                        raise P2pciError(f"image {image_id} is not here and the offer has no archive")
                    arch = await node.fetch_blob(offer.image.archive, [publisher])
                    await trio.to_thread.run_sync(node.images.load, image_id, arch)
                spec = BuildSpec(
                    image_id=image_id,
                    command=offer.command,
                    env=offer.env,
                    source_date_epoch=offer.source_date_epoch,
                    limits=offer.limits,
                )
                live = LiveLog(trio.lowlevel.current_trio_token())
                self.live[job] = live
                streaming = trio.CancelScope()
                assert node._nursery is not None
                node._nursery.start_soon(self._stream_log, job, live, streaming)
                try:
                    result = await run_build(runner, spec, src, on_log=live.feed)
                finally:
                    streaming.cancel()
                    self._send_log(job, live.take(final=True))
                    self.live.pop(job, None)
                try:
                    if result.status != "ok" or result.exit_code is None:
                        ev = BuildFailed(result.error or result.status)
                    else:
                        log_ref = await trio.to_thread.run_sync(self._keep_result, job, result.log_path, result.out_dir)
                        ev = BuildDone(result.exit_code, result.manifest, log_ref)
                        if live.fed == 0:  # a runner that does not stream: the tail, at the end
                            tail = self.live_log(job) or ""
                            self._send_log(job, tail[-LOG_TAIL:])
                finally:
                    await trio.to_thread.run_sync(result.cleanup)
            except (P2pciError, OSError, trio.TooSlowError) as exc:
                ev = BuildFailed(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a runner bug is this build's failure, not the node's
                log.exception("build of %s failed", job.hex()[:12])
                ev = BuildFailed(f"internal error: {type(exc).__name__}: {exc}")
        self.building.pop(job, None)
        self.events.setdefault(job, []).append(ev)
        node.mark_dirty(job)
        self._slot_freed()

    async def _stream_log(self, job: bytes, live: LiveLog, scope: trio.CancelScope) -> None:
        """Send a running build's new output, at most every LOG_INTERVAL seconds, until `scope` ends."""
        with scope:
            while True:
                await live.wait()
                if scope.cancel_called:
                    return  # the build ended: its last words went out with the final take
                self._send_log(job, live.take())
                await trio.sleep(LOG_INTERVAL)  # coalesce: what arrives meanwhile goes in the next event

    def _send_log(self, job: bytes, text: str) -> None:
        if text:
            self.node.broadcast({"event": "log", "job": job.hex(), "worker": self.node.peer_id, "text": text})

    def _keep_result(self, job: bytes, log_path: Path, out_dir: Path | None) -> BlobRef:
        d = self._job_dir(job)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        shutil.copyfile(log_path, d / "log")
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

    async def _serve_outputs(self, wj: WorkerJob) -> None:
        """Put this worker's outputs and log into the blob store (served by hash from now on)."""
        d = self._job_dir(wj.job)
        blobs = self.node.blobs

        def put() -> None:
            if (d / "log").exists():
                blobs.put_file(d / "log")
            for e in wj.manifest:
                p = d / "out" / e.path
                if p.is_file() and not p.is_symlink():
                    blobs.put_file(p)

        await trio.to_thread.run_sync(put)

    def building_info(self) -> list[dict[str, Any]]:
        return [
            {"job": job.hex(), "project": project, "started": started}
            for job, (_s, started, project) in sorted(self.building.items())
        ]

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

    def phases(self) -> dict[str, str]:
        return {job.hex(): wj.phase for job, wj in self.jobs.items()}


__all__ = ["Worker", "encode_wj", "decode_wj", "peer_id_of"]
