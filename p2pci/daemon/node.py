"""The node: core + net + runner + store under one trio nursery (design.md sections 3 and 6).

    node = Node(home, config, network=net, runner=runner, key=key)
    await nursery.start(node.run)

Tasks in the node's nursery: the network, the control server, the ingest
loop (facts from the network), and the clock loop that drives the pure core
(verdicts and the worker state machine) with `now` and performs the actions
it returns. Every accepted fact is committed to SQLite before it is acted
on; bad input from the network is dropped and counted, never raised.

Decide, then act: `_process(job)` is the one place where a job's state
moves. New facts and finished builds only mark the job dirty and wake the
clock loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.config import Config, Paths
from p2pci.core.board import Board, JobView
from p2pci.core.errors import BuildError, LocalError, P2pciError, ProtocolError
from p2pci.core.messages import BlobRef, Cancel, Claim, Limits, Message, Offer, Require, Reveal
from p2pci.core.results import ManifestEntry
from p2pci.core.selection import next_select, select_wakeup
from p2pci.core.signing import Fact, NodeKey, open_envelope, peer_id_of, public_of, seal
from p2pci.core.tally import ObserverPolicy, Verdict, tally, verdict_json
from p2pci.daemon.control import DaemonLock, serve_control
from p2pci.daemon.images import DockerImages, Images
from p2pci.store.blobs import BlobStore
from p2pci.store.facts import FactStore

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from p2pci.net.base import Network
    from p2pci.runner.base import Runner

log = logging.getLogger("p2pci.node")

MAX_LOG_TEXT = 1 << 20
SUB_BUFFER = 1024
INGEST_BUFFER = 4096
RETENTION_EVERY_S = 6 * 3600
INGEST_BATCH = 512
RECENT_WINDOW_MS = 24 * 3600 * 1000  # finished jobs still offered to anti-entropy


# Sources up to this size are fetched as soon as we claim (see Node._prefetch_source).
PREFETCH_MAX = 16 << 20


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def validate_fact(raw: bytes) -> bytes:
    """The network's validator: the fact id of a valid envelope, else ProtocolError."""
    return open_envelope(raw).id


def load_key(paths: Paths) -> NodeKey:
    try:
        seed = paths.key.read_bytes()
    except FileNotFoundError:
        raise LocalError(f"no node key in {paths.home}: run `p2pci init` first") from None
    return NodeKey.from_seed(seed)


@dataclass
class Building:
    job: bytes
    project: str
    started: int
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)


class Node:
    """One p2pci node. Start with `await nursery.start(node.run)`; stop by cancelling."""

    def __init__(
        self,
        home: Path | str,
        config: Config,
        *,
        network: Network,
        runner: Runner | None = None,
        key: NodeKey | None = None,
        clock: Callable[[], int] = wall_ms,
        images: Images | None = None,
    ) -> None:
        self.paths = Paths(Path(home))
        self.paths.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = config
        self.key = key or load_key(self.paths)
        self.me = self.key.public
        self.peer_id = self.key.peer_id
        self.network = network
        self.runner = runner if config.build else None
        self.clock = clock
        self.images: Images = images or DockerImages()
        self.board = Board()
        self.store: FactStore | None = None
        self.blobs = BlobStore(self.paths.blobs)
        self.counters: dict[str, int] = {"rejected": 0, "accepted": 0, "duplicate": 0}
        self.started_at = clock()
        self.ready = trio.Event()
        self.stopped = trio.Event()  # set when run() has returned (store closed, lock released)
        self.changed = trio.Event()  # set (and replaced) whenever facts or verdicts change: for tests
        self._verdicts: dict[bytes, dict[str, Any]] = {}
        self._verdict_state: dict[bytes, Verdict] = {}
        self._subs: list[trio.MemorySendChannel[dict[str, Any]]] = []
        self._dirty: set[bytes] = set()
        self._wakeups: dict[bytes, int] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._trust: set[bytes] = set()
        self._trust_listed = False  # [trust] count = "listed": only _trust counts, even when empty
        self._own_jobs: set[bytes] = set()
        self._seeds: dict[bytes, bytes] = {}  # own job -> selection seed (also in the store: "seed/<job hex>")
        self._fetching: dict[bytes, trio.Event] = {}  # blob sha256 -> set when that fetch ends
        from p2pci.daemon.work import Worker

        self.worker = Worker(self)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        lock = DaemonLock(self.paths.home / "daemon.lock")
        lock.acquire()
        try:
            self.store = await trio.to_thread.run_sync(FactStore, self.paths.db)
            await trio.to_thread.run_sync(self._load)
            reap = getattr(self.runner, "reap_orphans", None)
            if reap is not None:  # we hold the lock: what carries our owner label is a dead run's
                await trio.to_thread.run_sync(reap)
            self.network.set_sync_source(self)
            self.network.serve_blobs(self.blobs)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.network.run)
                await nursery.start(serve_control, self.paths.control, self)
                nursery.start_soon(self._ingest_loop)
                nursery.start_soon(self._peer_loop)
                nursery.start_soon(self._clock_loop)
                nursery.start_soon(self._retention_loop)
                await trio.to_thread.run_sync(self._write_addrs)
                self.ready.set()
                task_status.started()
        finally:
            for ch in self._subs:
                ch.close()
            if self.store is not None:
                self.store.close()
            lock.release()
            self.stopped.set()

    def _load(self) -> None:
        assert self.store is not None
        self.store.load_into(self.board)
        trust = self.store.kv_get("trust", None)
        # the kv set, once written, is the whole trust set (config keys seed it; `trust remove` sticks)
        for p in list(self.config.trust.keys) if trust is None else list(trust):
            with contextlib.suppress(LocalError):  # config keys are checked at load; a bad stored one only narrows
                self._trust.add(public_of(p))
        mode = self.store.kv_get("trust_mode", None)
        if mode is None:  # never switched: the config says, and a stored non-empty set means listed
            mode = "listed" if self.config.trust.count == "listed" or trust else "all"
        self._trust_listed = mode == "listed"
        self._own_jobs = set(self.store.pinned())
        self.worker.load(self.store)
        now = self.clock()
        for view in self.board.jobs():
            self._dirty.add(view.job)
        self.started_at = now

    def _write_addrs(self) -> None:
        tmp = self.paths.addrs.with_suffix(".tmp")
        tmp.write_text("".join(a + "\n" for a in self.network.addrs()))
        os.replace(tmp, self.paths.addrs)

    # ------------------------------------------------------------------ facts in

    async def _ingest_loop(self) -> None:
        send, recv = trio.open_memory_channel[bytes](INGEST_BUFFER)
        async with trio.open_nursery() as nursery:

            async def pump() -> None:
                async with send:
                    async for raw, _peer in self.network.facts():
                        await send.send(raw)

            nursery.start_soon(pump)
            async with recv:
                async for raw in recv:
                    batch = [raw]
                    while len(batch) < INGEST_BATCH:
                        try:
                            batch.append(recv.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    await self.ingest_many(batch)

    async def ingest(self, raw: bytes) -> Fact | None:
        """Verify, store, then index one envelope from the network. Never raises for bad input."""
        got = await self.ingest_many([raw])
        return got[0] if got else None

    async def ingest_many(self, raws: list[bytes]) -> list[Fact]:
        """Verify a batch, commit the new facts to SQLite in one transaction, then index them."""
        fresh: list[Fact] = []
        ids: set[bytes] = set()
        for raw in raws:
            if not isinstance(raw, (bytes, bytearray)):
                self.counters["rejected"] += 1
                continue
            raw = bytes(raw)
            fid = hashlib.sha256(raw).digest()
            if fid in ids or self.board.has(fid):
                self.counters["duplicate"] += 1
                continue
            try:
                fact = open_envelope(raw)
            except ProtocolError:
                self.counters["rejected"] += 1
                continue
            ids.add(fid)
            fresh.append(fact)
        if not fresh:
            return []
        now = self.clock()
        store = self.store
        assert store is not None
        await trio.to_thread.run_sync(store.put_many, [(f, now) for f in fresh])
        for fact in fresh:
            if self.board.add_fact(fact):
                self.counters["accepted"] += 1
            self.mark_dirty(fact.job)
        return fresh

    async def _accept(self, fact: Fact) -> None:
        now = self.clock()
        job = fact.job
        assert self.store is not None
        await trio.to_thread.run_sync(self.store.put, fact, now)
        if self.board.add_fact(fact):
            self.counters["accepted"] += 1
        self.mark_dirty(job)

    async def publish_message(self, body: Message) -> Fact:
        """Sign, store, index, then gossip a fact of our own."""
        fact = seal(self.key, body)
        await self._accept(fact)
        with contextlib.suppress(ProtocolError):
            await self.network.publish(fact.raw)
        if isinstance(body, Claim):
            self._prefetch_source(body.job)
        return fact

    def _prefetch_source(self, job: bytes) -> None:
        """Fetch a claimed job's source now, during the settle after claiming, not when the build starts.

        Only sources up to PREFETCH_MAX: a claimant that is not selected has fetched for nothing.
        """
        view = self.board.job(job)
        if view is None or view.offer is None or view.offer_msg is None or self._nursery is None:
            return
        ref = view.offer_msg.source
        if ref.size > PREFETCH_MAX or ref.sha256 in self._fetching or self.blobs.size(ref.sha256) == ref.size:
            return
        publisher = view.offer.signer

        async def prefetch() -> None:
            try:
                await self.fetch_blob(ref, [publisher])
            except (P2pciError, OSError, trio.TooSlowError) as exc:
                log.debug("prefetch of %s failed: %r", ref.sha256.hex()[:12], exc)  # the build fetches again

        self._nursery.start_soon(prefetch)

    def mark_dirty(self, job: bytes) -> None:
        self._dirty.add(job)
        self._wake.set()
        self._bump()

    def _bump(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def wake_at(self, job: bytes, when: int | None) -> None:
        if when is None:
            return
        old = self._wakeups.get(job)
        if old is None or when < old:
            self._wakeups[job] = when

    async def _retention_loop(self) -> None:
        while True:
            await self.prune_now()
            await trio.sleep(RETENTION_EVERY_S)

    async def prune_now(self) -> int:
        """Delete from disk the facts of jobs decided longer ago than `retention_days`.

        Undecided jobs, our own and exported (pinned) ones are kept; the in-memory board is
        grow-only, so this takes effect at the next start.
        """
        now = self.clock()
        before = now - self.config.retention_days * 86_400_000
        keep = [v.job for v in self.board.jobs() if not (st := self._verdict_state.get(v.job)) or not st.final]
        store = self.store
        assert store is not None
        return await trio.to_thread.run_sync(lambda: store.prune(before, keep))

    # ------------------------------------------------------------------ SyncSource

    def live_ids(self) -> list[bytes]:
        now = self.clock()
        out: list[bytes] = []
        for view in self.board.jobs():
            st = self._verdict_state.get(view.job)
            offer = view.offer_msg
            if st is not None and st.final and offer is not None and now - offer.deadline > RECENT_WINDOW_MS:
                continue
            out.extend(view.ids)
        return out

    def get(self, fact_id: bytes) -> bytes | None:
        fact = self.board.facts.get(fact_id)
        return None if fact is None else fact.raw

    # ------------------------------------------------------------------ the clock loop

    async def _clock_loop(self) -> None:
        while True:
            self._wake = trio.Event()
            now = self.clock()
            due = {j for j, t in self._wakeups.items() if t <= now}
            for j in due:
                del self._wakeups[j]
            todo = self._dirty | due
            self._dirty = set()
            for job in sorted(todo):
                try:
                    await self._process(job, now)
                except (trio.Cancelled, KeyboardInterrupt):
                    raise
                except Exception:  # a bug on one job must not take the node down
                    self.counters["process_errors"] = self.counters.get("process_errors", 0) + 1
                    log.exception("processing job %s failed", job.hex()[:12])
            if self._dirty:
                continue
            nxt = min(self._wakeups.values(), default=None)
            delay = (nxt - self.clock()) / 1000 if nxt is not None else 3600.0
            with trio.move_on_after(max(0.0, delay) + 0.001):
                await self._wake.wait()

    async def _process(self, job: bytes, now: int) -> None:
        view = self.board.job(job)
        if view is None or view.offer is None:
            return
        verdict = tally(view, now, self.policy())
        self._verdict_state[job] = verdict
        obj = verdict_json(view, verdict)
        if self._verdicts.get(job) != obj:
            self._verdicts[job] = obj
            self.broadcast({"event": "job", "job": obj})
            self._bump()
        if verdict.state == "PENDING":
            offer = view.offer_msg
            assert offer is not None
            self.wake_at(job, offer.deadline)
        if job in self._own_jobs and not verdict.final:
            await self._select(view, now)
        await self.worker.process(view, verdict, now)

    async def _select(self, view: JobView, now: int) -> None:
        """Protocol v2, publisher side: sign the selection rounds of this node's own jobs.

        Round 0 once the offer's claim window is over; later rounds when a ranked worker
        declined or did not commit by its lease end (p2pci.core.selection.next_select).
        A bridge in the daemon until the NodeMachine (issue 12) owns this decision.
        """
        offer = view.offer_msg
        assert offer is not None and self.store is not None
        seed = self._seeds.get(view.job)
        if seed is None:
            stored = await trio.to_thread.run_sync(self.store.kv_get, "seed/" + view.job.hex(), None)
            if not isinstance(stored, str):
                return  # not a v2 job of ours, or the seed was lost: workers see EXPIRED at the deadline
            seed = self._seeds[view.job] = bytes.fromhex(stored)
        close_at = offer.created + offer.claim_window
        body = next_select(view, seed, now, close=now >= close_at)
        if body is not None:
            await self.publish_message(body)
        self.wake_at(view.job, select_wakeup(view, now, close_at))

    def policy(self) -> ObserverPolicy:
        t = self.config.trust
        require = None
        if t.require_keys:  # checked when the config was loaded: never silently dropped
            require = Require(tuple(public_of(p) for p in t.require_keys), t.require_min)
        # fail closed: in "listed" mode an empty set counts nobody, it never means "everyone"
        return ObserverPolicy(trust=frozenset(self._trust) if self._trust_listed else None, require=require)

    # ------------------------------------------------------------------ events out

    def broadcast(self, event: dict[str, Any]) -> None:
        keep = []
        for ch in self._subs:
            try:
                ch.send_nowait(event)
                keep.append(ch)
            except trio.WouldBlock:
                ch.close()  # a subscriber that does not read loses its stream
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        self._subs = keep

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, recv = trio.open_memory_channel[dict[str, Any]](SUB_BUFFER)
        self._subs.append(send)
        return recv

    def initial_events(self) -> list[dict[str, Any]]:
        return [{"event": "node", "node": self.node_info()}, {"event": "peers", "peers": self.peer_list()}]

    async def _peer_loop(self) -> None:
        async for _ev in self.network.events():
            self.broadcast({"event": "peers", "peers": self.peer_list()})

    # ------------------------------------------------------------------ views

    def node_info(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.network.addrs()),
            "slots": self.config.worker.slots if self.runner is not None else 0,
            "busy": len(self.worker.building),
            "uptime_s": max(0, (self.clock() - self.started_at) // 1000),
            "building": self.worker.building_info(),
        }

    def peer_list(self) -> list[dict[str, Any]]:
        return [
            {"peer_id": p.peer_id, "addrs": list(p.addrs), "connected_since": p.connected_since}
            for p in self.network.peers()
        ]

    def job_obj(self, view: JobView) -> dict[str, Any]:
        obj = self._verdicts.get(view.job)
        if obj is None:
            obj = verdict_json(view, tally(view, self.clock(), self.policy()))
        return obj

    def fresh_job_obj(self, view: JobView) -> dict[str, Any]:
        """The job object computed now (not the one last broadcast)."""
        return verdict_json(view, tally(view, self.clock(), self.policy()))

    def job_list(self) -> list[dict[str, Any]]:
        views = [v for v in self.board.jobs() if v.offer is not None]
        views.sort(key=lambda v: (-v.offer_msg.created if v.offer_msg else 0, v.job))
        return [self.job_obj(v) for v in views]

    def resolve_job(self, prefix: Any) -> JobView:
        """The job whose id starts with the hex `prefix` (unique, like git)."""
        if not isinstance(prefix, str) or not prefix:
            raise LocalError("a job id (hex prefix) is required")
        p = prefix.lower()
        if any(c not in "0123456789abcdef" for c in p):
            raise LocalError(f"not a hex job id: {prefix!r:.80}")
        matches = [v for v in self.board.jobs() if v.offer is not None and v.job.hex().startswith(p)]
        if not matches:
            raise LocalError(f"no job {prefix}")
        if len(matches) > 1:
            raise LocalError(f"job prefix {prefix} is ambiguous ({len(matches)} jobs)")
        return matches[0]

    # ------------------------------------------------------------------ control ops

    async def control_op(self, op: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise LocalError(f"unknown op {op!r:.40}")
        return await handler(**args)

    async def op_id(self) -> Any:
        return {"peer_id": self.peer_id, "addrs": list(self.network.addrs())}

    async def op_peers(self) -> Any:
        return self.peer_list()

    async def op_status(self) -> Any:
        return {"node": self.node_info(), "peers": self.peer_list(), "jobs": self.job_list()}

    async def op_jobs(self) -> Any:
        return self.job_list()

    async def op_show(self, job: str) -> Any:
        return self.job_obj(self.resolve_job(job))

    async def op_stats(self) -> Any:
        return {"node": dict(self.counters), "net": self.network.stats(), "facts": len(self.board)}

    async def op_publish(
        self,
        project: str,
        source: dict[str, Any],
        image: str,
        command: list[str],
        env: dict[str, str] | None = None,
        source_date_epoch: int | None = None,
        limits: dict[str, int] | None = None,
        replicas: int = 3,
        quorum: int = 2,
        workers: str | list[str] = "open",
        require: dict[str, Any] | None = None,
    ) -> Any:
        sha = bytes.fromhex(source["sha256"]) if isinstance(source.get("sha256"), str) else source["sha256"]
        src = BlobRef(sha256=sha, size=int(source["size"]))
        if self.blobs.size(src.sha256) != src.size:
            raise LocalError("the source tarball is not in this node's blob store")
        assert self.store is not None
        store = self.store
        image_ref = await trio.to_thread.run_sync(lambda: self.images.publish(image, self.blobs, store))
        lim = Limits(**(limits or {"timeout_s": 600, "memory_mb": 2048, "cpus": 2, "pids": 512, "out_mb": 1024}))
        wk: Any = "open" if workers == "open" else tuple(sorted(public_of(p) for p in workers))
        req = None
        if require is not None:
            req = Require(tuple(public_of(p) for p in require["keys"]), int(require["min"]))
        now = self.clock()
        seed = os.urandom(32)
        tm = self.config.timing
        span = tm.claim_window_ms + lim.timeout_s * 1000 + tm.commit_slack_ms
        offer = Offer(
            project=project,
            source=src,
            image=image_ref,
            command=tuple(command),
            env=tuple(sorted((env or {}).items())),
            source_date_epoch=source_date_epoch,
            limits=lim,
            replicas=replicas,
            quorum=quorum,
            workers=wk,
            require=req,
            created=now,
            deadline=now + 2 * span + tm.lease_ms,
            select_commit=hashlib.sha256(seed).digest(),
            claim_window=tm.claim_window_ms,
        )
        fact = seal(self.key, offer)
        # protocol v2: the seed is stored before the offer is published; `_select` reveals it
        await trio.to_thread.run_sync(store.kv_put, "seed/" + fact.id.hex(), seed.hex())
        self._seeds[fact.id] = seed
        await trio.to_thread.run_sync(store.pin, fact.id)
        self._own_jobs.add(fact.id)
        await self.publish_message(offer)
        view = self.board.job(fact.id)
        assert view is not None
        return self.job_obj(view)

    async def op_cancel(self, job: str) -> Any:
        view = self.resolve_job(job)
        assert view.offer is not None
        if view.offer.signer != self.me:
            raise LocalError("only the publisher can cancel a job")
        await self.publish_message(Cancel(job=view.job))
        return self.fresh_job_obj(view)  # the clock loop acts on it (one place moves a job's state)

    async def op_export(self, job: str) -> Any:
        from p2pci.core.evidence import export_bundle

        view = self.resolve_job(job)
        assert self.store is not None
        await trio.to_thread.run_sync(self.store.pin, view.job)
        data: bytes = export_bundle(view)
        return data

    async def op_trust_list(self) -> Any:
        return sorted(peer_id_of(k) for k in self._trust)

    async def _set_trust(self, peer_id: str, add: bool) -> Any:
        key = public_of(peer_id)
        assert self.store is not None
        if add:
            self._trust.add(key)
            if not self._trust_listed:
                self._trust_listed = True
                await trio.to_thread.run_sync(self.store.kv_put, "trust_mode", "listed")
        else:
            self._trust.discard(key)
        await trio.to_thread.run_sync(self.store.kv_put, "trust", sorted(peer_id_of(k) for k in self._trust))
        for view in self.board.jobs():
            self._dirty.add(view.job)
        self._wake.set()
        return await self.op_trust_list()

    async def op_trust_count(self, mode: str) -> Any:
        """Switch the trust mode: "all" (every vote the offer allows) or "listed" (only the set)."""
        if mode not in ("all", "listed"):
            raise LocalError('trust count must be "all" or "listed"')
        assert self.store is not None
        self._trust_listed = mode == "listed"
        await trio.to_thread.run_sync(self.store.kv_put, "trust_mode", mode)
        for view in self.board.jobs():
            self._verdicts.pop(view.job, None)  # `show` recomputes until the clock loop rebroadcasts
            self._dirty.add(view.job)
        self._wake.set()
        return mode

    async def op_trust_add(self, peer_id: str) -> Any:
        return await self._set_trust(peer_id, True)

    async def op_trust_remove(self, peer_id: str) -> Any:
        return await self._set_trust(peer_id, False)

    # ------------------------------------------------------------------ blobs, fetch, logs, diff

    async def fetch_blob(self, ref: BlobRef, peers: list[bytes] | None) -> Path:
        """A blob from our store, else from `peers` (keys), else from anyone."""
        if self.blobs.size(ref.sha256) == ref.size:
            return self.blobs.path(ref.sha256)
        if ref.size == 0:
            self.blobs.put_bytes(b"")
            return self.blobs.path(ref.sha256)
        with trio.fail_after(self.config.timing.blob_timeout_ms / 1000):
            pending = self._fetching.get(ref.sha256)
            if pending is not None:  # the same blob is on its way (a prefetch): wait for it, not a second copy
                await pending.wait()
                if self.blobs.size(ref.sha256) == ref.size:
                    return self.blobs.path(ref.sha256)
            done = self._fetching[ref.sha256] = trio.Event()
            try:
                if peers:
                    try:
                        return await self.network.fetch_blob(ref, self.blobs, [peer_id_of(p) for p in peers])
                    except ProtocolError:
                        pass
                return await self.network.fetch_blob(ref, self.blobs, None)
            finally:
                if self._fetching.get(ref.sha256) is done:
                    del self._fetching[ref.sha256]
                done.set()

    def _agreed(self, view: JobView) -> tuple[Verdict, list[bytes], tuple[ManifestEntry, ...]]:
        verdict = tally(view, self.clock(), self.policy())
        if verdict.digest is None:
            raise LocalError(f"job {view.job.hex()[:12]} has no agreed result (verdict {verdict.state})")
        group = next(g for g in verdict.groups if g.digest == verdict.digest)
        rev = view.reveals[group.workers[0]][0].body
        assert isinstance(rev, Reveal)
        return verdict, list(group.workers), rev.manifest

    async def _materialise(self, manifest: tuple[ManifestEntry, ...], workers: list[bytes], out: Path) -> list[dict[str, Any]]:
        files = []
        for e in manifest:
            src = await self.fetch_blob(BlobRef(e.sha256, e.size), workers)
            dest = _safe_join(out, e.path)
            await trio.to_thread.run_sync(_copy_checked, src, dest, e)
            files.append({"path": e.path, "sha256": e.sha256.hex(), "size": e.size, "mode": e.mode})
        return files

    async def op_fetch(self, job: str, out: str) -> Any:
        view = self.resolve_job(job)
        verdict, workers, manifest = self._agreed(view)
        dest = Path(out)
        await trio.to_thread.run_sync(lambda: dest.mkdir(parents=True, exist_ok=True))
        files = await self._materialise(manifest, workers, dest)
        return {"job": view.job.hex(), "digest": verdict.digest.hex() if verdict.digest else None, "files": files}

    async def op_logs(self, job: str, worker: str | None = None) -> Any:
        view = self.resolve_job(job)
        signers = sorted(view.reveals)
        if worker:
            signers = [s for s in signers if _matches_peer(s, worker)]
            if not signers:
                own = self.worker.live_log(view.job) if _matches_peer(self.me, worker) else None
                if own is not None:
                    return own
                raise LocalError(f"no reveal by a worker matching {worker} for this job")
        if not signers:
            own = self.worker.live_log(view.job)
            if own is not None:
                return own
            return "no worker has revealed a log for this job yet\n"
        parts = []
        for s in signers:
            rev = view.reveals[s][0].body
            assert isinstance(rev, Reveal)
            try:
                path = await self.fetch_blob(rev.log, [s])
                data = await trio.to_thread.run_sync(lambda p=path: p.read_bytes()[:MAX_LOG_TEXT])
                text = data.decode("utf-8", "replace")
            except (ProtocolError, trio.TooSlowError) as exc:
                text = f"(log unavailable: {exc})\n"
            head = f"==> {peer_id_of(s)} exit {rev.exit_code} digest {rev.digest.hex()[:16]} <==\n"
            parts.append(head + text + ("" if text.endswith("\n") else "\n"))
        return "".join(parts)

    async def op_diff(self, job: str) -> Any:
        view = self.resolve_job(job)
        verdict = tally(view, self.clock(), self.policy())
        groups = list(verdict.groups)
        if len(groups) < 2:
            # also compare uncounted reveals: a dispute may involve ignored votes
            seen: dict[bytes, bytes] = {}
            for s, fs in sorted(view.reveals.items()):
                rev = fs[0].body
                assert isinstance(rev, Reveal)
                seen.setdefault(rev.digest, s)
            if len(seen) < 2:
                return f"nothing to compare: {len(seen)} distinct result(s) for job {view.job.hex()[:12]}\n"
            pairs = [(d, [s]) for d, s in seen.items()]
        else:
            pairs = [(g.digest, list(g.workers)) for g in groups]
        with tempfile.TemporaryDirectory(prefix="p2pci-diff-") as tmp:
            dirs: list[Path] = []
            exits: list[int] = []
            for digest, workers in pairs[:2]:
                rev = view.reveals[workers[0]][0].body
                assert isinstance(rev, Reveal)
                d = Path(tmp) / digest.hex()[:12]
                await trio.to_thread.run_sync(lambda d=d: d.mkdir())
                await self._materialise(rev.manifest, workers, d)
                dirs.append(d)
                exits.append(rev.exit_code)
            if exits[0] != exits[1]:
                for d, code in zip(dirs, exits, strict=True):
                    await trio.to_thread.run_sync((d / ".p2pci-exit-code").write_text, f"{code}\n")
            return await trio.to_thread.run_sync(_diff_dirs, dirs[0], dirs[1])


def _matches_peer(key: bytes, text: str) -> bool:
    pid = peer_id_of(key)
    return pid == text or pid.startswith(text) or pid.endswith(text)


def _safe_join(root: Path, rel: str) -> Path:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ProtocolError(f"unsafe manifest path {rel!r:.100}")
    return root.joinpath(*parts)


def _copy_checked(src: Path, dest: Path, entry: ManifestEntry) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".p2pci-tmp")
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        while chunk := fi.read(1 << 16):
            h.update(chunk)
            fo.write(chunk)
    if h.digest() != entry.sha256:
        tmp.unlink()
        raise ProtocolError(f"{entry.path}: content does not match the agreed manifest")
    os.chmod(tmp, entry.mode & 0o777)
    os.replace(tmp, dest)


def _diff_dirs(a: Path, b: Path) -> str:
    if shutil.which("diffoscope"):
        proc = subprocess.run(
            ["diffoscope", "--text", "-", "--no-progress", "--exclude-directory-metadata=recursive", str(a), str(b)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode in (0, 1):
            return proc.stdout or "no differences\n"
    lines = [f"--- {a.name}\n+++ {b.name}\n"]
    fa = {str(p.relative_to(a)): p for p in a.rglob("*") if p.is_file()}
    fb = {str(p.relative_to(b)): p for p in b.rglob("*") if p.is_file()}
    for name in sorted(set(fa) | set(fb)):
        ha = hashlib.sha256(fa[name].read_bytes()).hexdigest() if name in fa else "-"
        hb = hashlib.sha256(fb[name].read_bytes()).hexdigest() if name in fb else "-"
        if ha != hb:
            lines.append(f"{name}: {ha[:16]} != {hb[:16]}\n")
    return "".join(lines)


__all__ = ["Node", "validate_fact", "wall_ms", "load_key", "P2pciError", "BuildError"]
