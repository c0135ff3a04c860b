"""The node: the driver of one `p2pci.core.node.NodeMachine` (docs/internals.md, "Daemon").

    node = Node(home, config, network=net, runner=runner, key=key)
    await nursery.start(node.run)

The machine decides; the node performs. Tasks in the node's nursery: the
network, the control server (ops in `p2pci.daemon.api`), the builds service
(`p2pci.daemon.builds`, its own nursery), the ingest loop (verify, store,
then `machine.receive_facts`), the results loop (`machine.build_finished`),
the clock loop (`_perform(machine.tick(now))`, then sleep until
`machine.next_wakeup()` or new input) and retention. `_perform(effects)` is
the one place where effects become I/O. Every fact is committed to SQLite
before it is gossiped; bad input from the network is dropped and counted,
never raised.

One clock: `now()` is milliseconds since the epoch read from trio's clock
(its offset taken once per run), so a test under trio's MockClock runs a
whole cluster in virtual time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.config import Config, Paths
from p2pci.control.server import DaemonLock, serve_control
from p2pci.core.board import Board, JobView
from p2pci.core.errors import BuildError, LocalError, P2pciError, ProtocolError
from p2pci.core.messages import BlobRef, Claim, Commit, Decline, Message, Offer, Require, Reveal
from p2pci.core.node import (
    PREFETCH_MAX,
    SEED_KEY,
    TRUST_KEY,
    TRUST_MODE_KEY,
    WORKER_KEY,
    Effect,
    JobChanged,
    NodeChanged,
    NodeConfig,
    NodeMachine,
    Persist,
    Prefetch,
    Publish,
    RunBuild,
    ServeOutputs,
    StopBuild,
)
from p2pci.core.results import parse_manifest
from p2pci.core.selection import selected
from p2pci.core.signing import Fact, NodeKey, open_envelope, public_of
from p2pci.core.worker import WorkerConfig, WorkerJob
from p2pci.daemon import api
from p2pci.daemon.artifacts import BlobFetcher
from p2pci.daemon.builds import Builds
from p2pci.daemon.gc import GcReport
from p2pci.daemon.gc import collect as gc_collect
from p2pci.daemon.image_cache import DockerImages, Images
from p2pci.daemon.logtail import RemoteTail
from p2pci.identity_home import load_identity
from p2pci.store.blobs import BlobStore
from p2pci.store.facts import FactStore
from p2pci.textsafe import safe_text

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from p2pci.net.base import Network
    from p2pci.runner.base import Runner

log = logging.getLogger("p2pci.node")


def offer_blobs(offer: Offer | Any) -> list[tuple[bytes, str]]:
    """The blobs an offer names: (sha256, role) of its source, image archive and inputs."""
    out = [(offer.source.sha256, "source")]
    if offer.image.archive is not None:
        out.append((offer.image.archive.sha256, "image"))
    if offer.inputs is not None:
        out.append((offer.inputs.sha256, "inputs"))
    return out

SUB_BUFFER = 1024
INGEST_BUFFER = 4096
RETENTION_EVERY_S = 6 * 3600
SCHEDULE_EVERY_S = 30  # how often the schedule and the host's load are looked at
INGEST_BATCH = 512
PREFETCH_TRIES = 3  # a prefetch refused (our claim not yet at the publisher) is tried again
PREFETCH_RETRY_S = 0.2

_ORIGIN: tuple[object, float] | None = None  # (trio root task, epoch ms at trio time 0)


def wall_ms() -> int:
    """Milliseconds since the epoch on trio's clock (wall time outside trio)."""
    global _ORIGIN
    try:
        root = trio.lowlevel.current_root_task()
        t = trio.current_time()
    except RuntimeError:
        return time.time_ns() // 1_000_000
    if _ORIGIN is None or _ORIGIN[0] is not root:
        _ORIGIN = (root, time.time() * 1000 - t * 1000)
    return int(_ORIGIN[1] + t * 1000)


class OpenedFacts:
    """Facts the network's validator has just opened, by fact id, for the ingest to take.

    The validator (`validate_fact`) verifies each new envelope from the network (decode, field
    checks, Ed25519); the ingest loop receives the same bytes a moment later. A `Fact` is a
    pure function of its bytes and its id is sha256 of them, so the ingest takes the validator's
    `Fact` by id instead of opening the envelope a second time. Bounded (entries and bytes,
    oldest dropped first): a fact that is validated but never ingested (dropped for backlog or
    quota) only stays until newer ones push it out, and a miss just opens the envelope again.
    """

    def __init__(self, max_facts: int = 1024, max_bytes: int = 4 << 20) -> None:
        self._facts: dict[bytes, Fact] = {}
        self._bytes = 0
        self.max_facts = max_facts
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._facts)

    def validate(self, raw: bytes) -> bytes:
        """The network's validator: the fact id of a valid envelope, else ProtocolError."""
        fact = open_envelope(raw)
        facts = self._facts
        if fact.id not in facts:
            size = len(fact.raw)
            while facts and (len(facts) >= self.max_facts or self._bytes + size > self.max_bytes):
                self._bytes -= len(facts.pop(next(iter(facts))).raw)
            facts[fact.id] = fact
            self._bytes += size
        return fact.id

    def take(self, fact_id: bytes) -> Fact | None:
        """The fact the validator opened under this id (once), or None."""
        fact = self._facts.pop(fact_id, None)
        if fact is not None:
            self._bytes -= len(fact.raw)
        return fact


# One per process: every network a daemon (or a test cluster) builds with `validate_fact` shares
# it; an entry taken by another node of the same process is only a miss for this one.
OPENED = OpenedFacts()
validate_fact = OPENED.validate


def load_key(paths: Paths) -> NodeKey:
    try:
        seed = paths.key.read_bytes()
    except FileNotFoundError:
        raise LocalError(f"no node key in {paths.home}: run `p2pci init` first") from None
    return NodeKey.from_seed(seed)


def node_config(config: Config, key: NodeKey, *, builds: bool, identity: bytes = b"") -> NodeConfig:
    """The machine's settings from config.toml (the protocol part of [timing], [worker], [trust])."""
    tm = config.timing
    wc = WorkerConfig(
        me=key.public,
        lease_ms=tm.lease_ms,
        claim_window_ms=tm.claim_window_ms,
        policy=config.worker.policy(),
        slack_ms=tm.commit_slack_ms,
        salt_secret=key.seed,
        # v2: claim at once and build on the tick that brings the publisher's select (the offer's
        # window, from claim_window_ms, still bounds how long the publisher waits for claims)
        claim_delay_ms=0,
        settle_ms=0,
    )
    t = config.trust
    require = None
    if t.require_keys and t.require_min > 0:
        with contextlib.suppress(LocalError):
            require = Require(tuple(public_of(p) for p in t.require_keys), t.require_min)
    q = config.quotas
    return NodeConfig(
        key=key,
        worker=wc,
        builds=builds,
        identity=identity,
        require=require,
        max_jobs=q.max_jobs,
        max_offers_per_key=q.max_offers_per_key,
    )


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
        identity: bytes | None = None,
    ) -> None:
        self.paths = Paths(Path(home))
        self.paths.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = config
        self.key = key or load_key(self.paths)
        if identity is None:  # the proof `p2pci init` minted (none: strength 0, offers that demand one are declined)
            stored = load_identity(self.paths, self.key)
            identity = b"" if stored is None else stored.nonce
        self.identity = identity
        self.peer_id = self.key.peer_id
        self.network = network
        self.runner = runner if config.build else None
        self.clock = clock
        self.images: Images = images or DockerImages()
        self.machine = NodeMachine(node_config(config, self.key, builds=self.runner is not None, identity=identity))
        self.store: FactStore | None = None
        self.blobs = BlobStore(self.paths.blobs)
        self.fetcher = BlobFetcher(self.blobs, network, lambda: self.config.timing.blob_timeout_ms / 1000)
        self.builds: Builds | None = None
        if self.runner is not None:
            self.builds = Builds(
                self.runner,
                self.images,
                self.blobs,
                self.fetcher.fetch,
                self.paths.work,
                self._send_log,
                holders=self.holders,
            )
        self.counters: dict[str, int] = {"rejected": 0, "accepted": 0, "duplicate": 0}
        self.evicted_facts = 0  # facts deleted by the board's quotas (status: quotas.evicted_facts)
        self.logtail_refusals = 0  # /p2pci/logtail/1 requests refused (not the job's publisher)
        self.blob_refusals: dict[str, int] = {}  # blob requests refused by reason (status: storage)
        self.gc_totals = {"runs": 0, "bytes_freed": 0, "blobs_removed": 0, "images_removed": 0}
        self.gc_last: GcReport | None = None
        self._gc_lock = trio.Lock()
        self.started_at = 0
        self.ready = trio.Event()
        self.stopped = trio.Event()  # set when run() has returned (store closed, lock released)
        self.changed = trio.Event()  # set (and replaced) whenever facts or verdicts change: for tests
        self.drained = trio.Event()  # set once draining and no build runs (`p2pci worker drain`, SIGTERM)
        self.control_mode = "open"  # the donor's: "open" (resume) | "paused" | "draining"
        self.paused_why = ""  # why new work is not taken ("" while open)
        self._subs: list[trio.MemorySendChannel[dict[str, Any]]] = []
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ NodeView (p2pci.daemon.api)

    @property
    def me(self) -> bytes:
        return self.key.public

    @property
    def board(self) -> Board:
        return self.machine.board

    @property
    def db(self) -> FactStore:
        assert self.store is not None, "the node is not running"
        return self.store

    @property
    def protocol(self) -> WorkerConfig:
        return self.machine.cfg.worker

    def now(self) -> int:
        return self.clock()

    def own_log(self, job: bytes) -> str | None:
        return None if self.builds is None else self.builds.live_log(job)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        lock = DaemonLock(self.paths.home / "daemon.lock")
        lock.acquire()
        try:
            self.store = await trio.to_thread.run_sync(FactStore, self.paths.db)
            await trio.to_thread.run_sync(self._load)
            self.started_at = self.now()
            reap = getattr(self.runner, "reap_orphans", None)
            if reap is not None:  # we hold the lock: what carries our owner label is a dead run's
                await trio.to_thread.run_sync(reap)
            self.network.set_sync_source(self)
            self.network.serve_blobs(self.blobs)
            self.network.set_blob_access(self.blob_access)
            self.network.set_log_source(self.log_source)
            if self.builds is not None:
                self.builds.store = self.store
                self.builds.me = self.me
                images = self.config.worker.images
                self.builds.listed_images = frozenset(images) if isinstance(images, tuple) else frozenset()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.network.run)
                await nursery.start(serve_control, self.paths.control, self)
                if self.builds is not None:
                    await nursery.start(self.builds.run)
                    nursery.start_soon(self._results_loop, self.builds)
                nursery.start_soon(self._ingest_loop)
                nursery.start_soon(self._peer_loop)
                nursery.start_soon(self._clock_loop)
                nursery.start_soon(self._retention_loop)
                nursery.start_soon(self._gc_loop)
                nursery.start_soon(self._schedule_loop)
                nursery.start_soon(self._logtail_loop)
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
        store = self.db
        store.load_into(self.machine.board)
        trust_ids = store.kv_get(TRUST_KEY, None)
        # the kv set, once written, is the whole trust set (config keys seed it; `trust remove` sticks)
        trust: set[bytes] = set()
        for p in list(self.config.trust.keys) if trust_ids is None else list(trust_ids):
            with contextlib.suppress(LocalError):
                trust.add(public_of(p))
        jobs: list[WorkerJob] = []
        for _key, val in store.kv_items(WORKER_KEY):
            try:
                jobs.append(WorkerJob.from_obj(val))
            except (KeyError, TypeError, ValueError):
                continue
        seeds: dict[bytes, bytes] = {}
        for key, val in store.kv_items(SEED_KEY):
            with contextlib.suppress(ValueError, TypeError):
                seeds[bytes.fromhex(key[len(SEED_KEY) :])] = bytes.fromhex(val)
        self._tie_own(store)
        mode = store.kv_get(TRUST_MODE_KEY, None)
        if mode is None:  # never switched: the config says, and a stored non-empty set means listed
            mode = "listed" if self.config.trust.count == "listed" or trust_ids else "all"
        self.machine.load(jobs, trust, trust_listed=mode == "listed", seeds=seeds)

    def _tie_own(self, store: FactStore) -> None:
        """Tie the blobs of our own offers and reveals on the board to their jobs (idempotent; also
        what a p2pci before `blob_refs` stored, so that it is served and kept, not collected)."""
        now = self.clock()
        for v in self.machine.board.jobs():
            refs: list[tuple[bytes, str]] = []
            offer = v.offer_msg
            if offer is not None and v.offer is not None and v.offer.signer == self.me:
                refs += offer_blobs(offer)
            for f in v.reveals.get(self.me, [])[:1]:
                rev = f.body
                if isinstance(rev, Reveal) and self.blobs.size(rev.manifest.sha256) == rev.manifest.size:
                    refs.append((rev.manifest.sha256, "manifest"))
                    with contextlib.suppress(ProtocolError, LocalError):
                        entries = parse_manifest(
                            self.blobs.read_bytes(rev.manifest.sha256),
                            sha256=rev.manifest.sha256,
                            files=rev.files,
                            exit_code=rev.exit_code,
                            digest=rev.digest,
                        )
                        refs += [(e.sha256, "output") for e in entries if self.blobs.has(e.sha256)]
                if isinstance(rev, Reveal) and self.blobs.has(rev.log.sha256):
                    refs.append((rev.log.sha256, "log"))
            if refs:
                store.tie(v.job, refs, served=True, at=now)

    def _write_addrs(self) -> None:
        tmp = self.paths.addrs.with_suffix(".tmp")
        tmp.write_text("".join(a + "\n" for a in self.network.addrs()))
        os.replace(tmp, self.paths.addrs)

    # ------------------------------------------------------------------ inputs

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
        board = self.machine.board
        for raw in raws:
            if not isinstance(raw, (bytes, bytearray)):
                self.counters["rejected"] += 1
                continue
            raw = bytes(raw)
            fid = hashlib.sha256(raw).digest()
            if fid in ids or board.has(fid):
                self.counters["duplicate"] += 1
                continue
            fact = OPENED.take(fid)  # verified by the network's validator moments ago
            if fact is None:
                try:
                    fact = open_envelope(raw, fact_id=fid)
                except ProtocolError:
                    self.counters["rejected"] += 1
                    continue
            ids.add(fid)
            fresh.append(fact)
        fresh, refused = self.machine.admit_facts(fresh)  # per-job admission (docs/protocol.md §4.8)
        if refused:
            forget = getattr(self.network, "forget", None)
            if forget is not None:  # not seen: sync brings it again (a commit once its claim is here)
                forget(refused)
            self._bump()  # the refusal counters changed
        if not fresh:
            return []
        now = self.now()
        rows = [(f, now) for f in fresh]
        # a few facts are committed on the loop (~15 us, no disk sync) when nothing else holds the
        # store: a thread hop per fact was ~7 % of a gossiping daemon's CPU (FactStore.put_many_now)
        if self.db.put_many_now(rows) is None:
            await trio.to_thread.run_sync(self.db.put_many, rows)
        self.counters["accepted"] += self.machine.receive_facts(fresh, now)
        evicted = self.machine.enforce_limits()
        if evicted:  # the board is within its bounds again: the disk follows
            gone = set(evicted)
            fresh = [f for f in fresh if f.job not in gone]
            self.evicted_facts += await trio.to_thread.run_sync(self.db.evict, evicted)
            evicted_ids, self.machine.evicted_ids = self.machine.evicted_ids, []
            forget = getattr(self.network, "forget", None)
            if forget is not None:  # a real job evicted under a flood can come back by sync
                forget(evicted_ids)
        self._poke()
        return fresh

    async def _results_loop(self, builds: Builds) -> None:
        async for job, event in builds.results:
            self.machine.build_finished(job, event, self.now())
            self._poke()

    async def publish_message(self, body: Message) -> Fact:
        """Sign, store, index, then gossip a fact of our own (the clock loop acts on it)."""
        fact, effects = self.machine.publish(body, self.now())
        await self._perform(effects)
        self._poke()
        return fact

    async def set_trust(self, keys: frozenset[bytes], *, listed: bool | None = None) -> None:
        await self._perform(self.machine.set_trust(keys, listed=listed))
        self._poke()

    async def publish_offer(self, offer: Offer, seed: bytes) -> Fact:
        """Our own offer: the seed is persisted before the offer is stored and gossiped."""
        fact, effects = self.machine.publish_offer(offer, seed, self.now())
        await self._perform(effects)
        self._poke()
        return fact

    def _poke(self) -> None:
        """Wake the clock loop (new input for the machine) and tell tests something changed."""
        self._wake.set()
        self._bump()

    def _bump(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    # ------------------------------------------------------------------ the clock loop and effects

    async def _clock_loop(self) -> None:
        while True:
            self._wake = trio.Event()
            await self._perform(self.machine.tick(self.now()))
            if self.machine.drained():
                self.drained.set()
            nxt = self.machine.next_wakeup()
            now = self.now()
            if nxt is not None and nxt <= now:
                # due again at once: yield first, so that a wake-up that makes no progress
                # (a machine bug) slows this loop down instead of starving every other task
                await trio.lowlevel.checkpoint()
                continue
            delay = (nxt - now) / 1000 if nxt is not None else 3600.0
            with trio.move_on_after(delay + 0.001):
                await self._wake.wait()

    async def _perform(self, effects: list[Effect]) -> None:
        """The one place where the machine's effects become I/O, in order."""
        for e in effects:
            match e:
                case Publish(fact=fact):
                    self._log_own(fact)
                    now = self.now()
                    await trio.to_thread.run_sync(self.db.put, fact, now)
                    if isinstance(fact.body, Offer):  # our own offer: its blobs are served for it
                        tie = partial(self.db.tie, fact.id, offer_blobs(fact.body), served=True, at=now)
                        await trio.to_thread.run_sync(tie)
                    self.counters["accepted"] += self.machine.receive_facts([fact], now)
                    self._poke()
                    with contextlib.suppress(ProtocolError):
                        await self.network.publish(fact.raw)
                case Persist(key=key, value=value):
                    await trio.to_thread.run_sync(self.db.kv_put, key, value)
                case RunBuild(job=job, offer=offer, publisher=publisher):
                    log.info("job %s: building (%s)", job.hex()[:12], safe_text(offer.project)[:64])
                    assert self.builds is not None
                    self.builds.start(job, offer, publisher, self.now())
                case StopBuild(job=job):
                    if self.builds is not None:
                        self.builds.cancel(job)
                case ServeOutputs(job=job, manifest=manifest):
                    if self.builds is not None:
                        await self.builds.serve_outputs(job, manifest)
                case Prefetch(ref=ref, publisher=publisher, limits=limits):
                    if limits is not None and self.builds is not None:
                        warm = getattr(self.builds.runner, "warm", None)
                        if warm is not None:
                            warm(limits)  # non-blocking: a /out holder is made while the publisher selects
                    self._prefetch(ref, publisher)
                case JobChanged(obj=obj):
                    self.broadcast({"event": "job", "job": obj})
                    self._bump()
                case NodeChanged():
                    self._bump()
                    self.broadcast({"event": "node", "node": self.node_info()})

    def _log_own(self, fact: Fact) -> None:
        """At INFO, what this node does (docs/operator.md, "Logs"): offers, first claims, commits,
        reveals and declines (a decline's detail may quote a stranger's build log: escaped, one
        bounded line). Lease renewals (a claim again) are not logged."""
        if not log.isEnabledFor(logging.INFO):
            return
        body, job = fact.body, fact.job.hex()[:12]
        if isinstance(body, Offer):
            log.info("job %s: offered %s (%d of %d)", job, safe_text(body.project)[:64], body.quorum, body.replicas)
        elif isinstance(body, Claim):
            view = self.machine.board.job(fact.job)
            if view is None or fact.signer not in view.claims:
                log.info("job %s: claimed", job)
        elif isinstance(body, Commit):
            log.info("job %s: committed", job)
        elif isinstance(body, Reveal):
            log.info("job %s: revealed exit %d digest %s", job, body.exit_code, body.digest.hex()[:16])
        elif isinstance(body, Decline):
            detail = safe_text(" ".join(body.detail.split()))[:200]
            log.info("job %s: declined (%s%s)", job, safe_text(body.reason), f": {detail}" if detail else "")

    def _prefetch(self, ref: BlobRef, publisher: bytes) -> None:
        """Fetch a claimed job's source now, during the settle after claiming, not when the build starts.

        Only sources up to PREFETCH_MAX, and only from the publisher: a claimant that is not
        selected has fetched for nothing. The publisher's blob server serves a claimant once it
        holds the claim (`core.access`), which may be after this request: a refusal is tried again
        a few times, then left to the build (which fetches from the publisher, then anyone). A
        prefetch never asks anyone else, so a refused one ends in well under a second."""
        if (
            self._nursery is None
            or ref.size > PREFETCH_MAX
            or self.fetcher.busy(ref.sha256)
            or self.blobs.size(ref.sha256) == ref.size
        ):
            return

        async def prefetch() -> None:
            for attempt in range(PREFETCH_TRIES):
                if self.fetcher.busy(ref.sha256) or self.blobs.size(ref.sha256) == ref.size:
                    return  # the build is fetching it (or has it) now
                try:  # registered with the fetcher: a build that starts now waits for it, no second copy
                    await self.fetcher.fetch(ref, [publisher], anyone=False)
                    return
                except (P2pciError, OSError, trio.TooSlowError) as exc:
                    if "refused" not in str(exc) or attempt == PREFETCH_TRIES - 1:
                        log.debug("prefetch of %s failed: %r", ref.sha256.hex()[:12], exc)  # the build fetches again
                        return
                await trio.sleep(PREFETCH_RETRY_S)

        self._nursery.start_soon(prefetch)

    def holders(self, job: bytes, publisher: bytes) -> tuple[list[bytes], list[bytes]]:
        """Who holds a job's source, image archive and inputs, learned from the board: the
        workers that committed or revealed (they built it, so they hold all three), then the
        publisher; and the team that fetches them now: the current select round's workers, when
        this node is one of them, in the round's order (docs/protocol.md §8.4)."""
        view = self.board.job(job)
        if view is None:
            return [publisher], []
        built = sorted((set(view.commits) | set(view.reveals)) - {self.me, publisher})
        team = list(selected(view, self.now()))
        return [*built, publisher], team if self.me in team else []

    async def fetch_blob(self, ref: BlobRef, peers: list[bytes] | None) -> Path:
        return await self.fetcher.fetch(ref, peers)

    # ------------------------------------------------------------------ donor controls

    async def set_control(self, mode: str) -> None:
        """`p2pci worker pause | resume | drain` (mode "paused" | "open" | "draining")."""
        if mode not in ("open", "paused", "draining"):
            raise LocalError(f"unknown worker control {mode!r:.40}")
        if self.runner is None:
            raise LocalError("this node does not build (build = false or --no-build): nothing to pause")
        if self.control_mode == "draining" and mode != "draining":
            raise LocalError("the worker is draining: it stops once its running builds are done")
        self.control_mode = mode
        await self._apply_accepting()

    def _scheduled(self) -> str:
        """Why the schedule keeps new work out now ("" when it does not)."""
        from p2pci.core.schedule import in_schedule, parse_schedule

        w = self.config.worker
        if w.schedule:
            t = time.localtime()
            if not in_schedule(parse_schedule(w.schedule), t.tm_wday, t.tm_hour * 60 + t.tm_min):
                return "outside the schedule"
        if w.idle_load > 0:
            try:
                load = os.getloadavg()[0] / (os.cpu_count() or 1)
            except OSError:
                return ""
            if load >= w.idle_load:
                return f"host busy (load {load:.2f} per CPU >= idle_load {w.idle_load:g})"
        return ""

    async def _apply_accepting(self) -> None:
        if self.control_mode != "open":
            mode, why = self.control_mode, f"{self.control_mode} by the donor"
        else:
            why = self._scheduled()
            mode = "paused" if why else "open"
        changed = why != self.paused_why
        self.paused_why = why
        effects = self.machine.set_accepting(mode)
        if changed and not effects:
            effects = [NodeChanged()]
        await self._perform(effects)
        if self.machine.drained():
            self.drained.set()
        self._poke()

    async def _schedule_loop(self) -> None:
        w = self.config.worker
        if self.runner is None or (not w.schedule and w.idle_load <= 0):
            return
        while True:
            await self._apply_accepting()
            await trio.sleep(SCHEDULE_EVERY_S)

    # ------------------------------------------------------------------ blob access

    async def blob_access(self, sha: bytes, peer_id: str) -> str | None:
        """The blob server's question (`Network.set_blob_access`): None to serve `sha` to
        `peer_id`, else why not. Served only when a job it is tied to here (`FactStore.tie`,
        served) allows the requester (`p2pci.core.access.may_fetch`); refusals are counted."""
        from p2pci.core.access import may_fetch

        db = self.db
        ties = await trio.to_thread.run_sync(db.blob_jobs, sha)
        jobs = list(dict.fromkeys(job for job, _role, served in ties if served))
        refused = "this node serves a blob only to peers allowed to build or fetch its job"
        if not jobs:
            self.blob_refusals["untied"] = self.blob_refusals.get("untied", 0) + 1
            return refused
        try:
            requester = public_of(peer_id)
        except LocalError:
            self.blob_refusals["not_allowed"] = self.blob_refusals.get("not_allowed", 0) + 1
            return refused
        now = self.now()
        for job in jobs:
            view = self.machine.board.job(job)
            if view is None or view.offer is None:
                continue
            if may_fetch(view, self.machine.verdict(job, now), requester):
                return None
        self.blob_refusals["not_allowed"] = self.blob_refusals.get("not_allowed", 0) + 1
        return refused

    # ------------------------------------------------------------------ live logs (/p2pci/logtail/1)

    async def log_source(self, job: bytes, peer_id: str, offset: int) -> tuple[str | None, int, bytes, int]:
        """The logtail server's answer (`Network.set_log_source`): this node's own log of `job`
        from `offset`, only to the job's publisher (its key is the offer's signer)."""
        from p2pci.net.wire import LOGTAIL_MAX

        refused = "this node serves a build's log only to the job's publisher"
        view = self.machine.board.job(job)
        try:
            requester = public_of(peer_id)
        except LocalError:
            requester = b""
        if view is None or view.offer is None or requester != view.offer.signer:
            self.logtail_refusals += 1
            return refused, 0, b"", 0
        builds = self.builds
        got = None if builds is None else await trio.to_thread.run_sync(builds.log_bytes, job, offset, LOGTAIL_MAX)
        if got is None:
            return "this node has no log of that job", 0, b"", 0
        start, data, size = got
        return None, start, data, size

    async def _logtail_loop(self) -> None:
        """While a control client listens: the new log lines of each remote worker building one of
        our jobs, as `log` events (p2pci.daemon.logtail)."""
        from p2pci.daemon.logtail import LOGTAIL_EVERY_S

        tails: dict[tuple[bytes, str], RemoteTail] = {}
        while True:
            await trio.sleep(LOGTAIL_EVERY_S)
            if not self._subs:
                continue
            want = self.machine.tail_targets(self.now())
            for key in [k for k in tails if k not in want]:
                self._send_remote_log(key, tails.pop(key).finish())
            if not want:  # nothing to ask (the common case): no peer list, no nursery each second
                continue
            async with trio.open_nursery() as nursery:
                connected = {p.peer_id for p in self.network.peers()}  # a gone worker: not dialled each second
                for key in sorted(want):
                    tail = tails.setdefault(key, RemoteTail())
                    if not tail.done and key[1] in connected:
                        nursery.start_soon(self._tail_one, key, tail)

    async def _tail_one(self, key: tuple[bytes, str], tail: RemoteTail) -> None:
        from p2pci.daemon.logtail import LOGTAIL_BURST, LOGTAIL_TIMEOUT_S
        from p2pci.net.wire import LOGTAIL_MAX

        job, worker = key
        for _ in range(LOGTAIL_BURST):
            try:
                with trio.fail_after(LOGTAIL_TIMEOUT_S):
                    off, data, size = await self.network.fetch_log(worker, job, tail.offset)
            except ProtocolError as exc:
                if exc.reason == "unsupported":  # an older worker: not asked again
                    tail.done = True
                return
            except Exception:  # a stream reset, a timeout, a node stopping: asked again next round
                return
            self._send_remote_log(key, tail.feed(off, data))
            if tail.done or len(data) < LOGTAIL_MAX or tail.offset >= size:
                return

    def _send_remote_log(self, key: tuple[bytes, str], text: str) -> None:
        if text:
            self.broadcast({"event": "log", "job": key[0].hex(), "worker": key[1], "text": text})

    # ------------------------------------------------------------------ garbage collection

    async def _gc_loop(self) -> None:
        while True:
            await trio.sleep(self.config.storage.gc_interval_min * 60)
            try:
                await self.gc_now()
            except (OSError, P2pciError) as exc:
                log.warning("garbage collection failed: %s", exc)

    async def gc_now(self, *, dry_run: bool = False) -> GcReport:
        """Collect now (`p2pci gc`): blobs, work dirs and loaded images no kept job needs, past the
        retention or over `[storage] max_gb` (p2pci.daemon.gc); then the facts (`prune_now`)."""
        async with self._gc_lock:
            keep = set(self.machine.prune_keep(self.now()))
            if self.builds is not None:
                keep |= set(self.builds.running)
            own = {v.job for v in self.machine.board.jobs() if v.offer is not None and v.offer.signer == self.me}
            st = self.config.storage
            db, blobs, work, images = self.db, self.blobs, self.paths.work, self.images
            building = bool(self.builds is not None and self.builds.running)
            now = self.now()
            rep = await trio.to_thread.run_sync(
                lambda: gc_collect(
                    blobs,
                    db,
                    work,
                    images,
                    keep=keep,
                    own=own,
                    now=now,
                    retention_ms=st.retention_days * 86_400_000,
                    budget_bytes=st.max_bytes,
                    dry_run=dry_run,
                    building=building,
                )
            )
            if not dry_run:
                rep.facts_pruned = await self.prune_now()
                self.gc_totals["runs"] += 1
                self.gc_totals["bytes_freed"] += rep.bytes_freed
                self.gc_totals["blobs_removed"] += rep.blobs_removed
                self.gc_totals["images_removed"] += len(rep.images_removed)
                self.gc_last = rep
                self._bump()
            return rep

    # ------------------------------------------------------------------ retention

    async def _retention_loop(self) -> None:
        while True:
            await self.prune_now()
            await trio.sleep(RETENTION_EVERY_S)

    async def prune_now(self) -> int:
        """Delete from disk the facts of jobs decided longer ago than `retention_days`.

        Undecided jobs, our own and exported (pinned) ones are kept; the in-memory board is
        grow-only, so this takes effect at the next start.
        """
        before = self.now() - self.config.retention_days * 86_400_000
        keep = self.machine.prune_keep(self.now())
        store = self.db
        return await trio.to_thread.run_sync(lambda: store.prune(before, keep))

    # ------------------------------------------------------------------ SyncSource

    def live_ids(self) -> list[bytes]:
        return self.machine.live_ids(self.now())

    def get(self, fact_id: bytes) -> bytes | None:
        fact = self.machine.board.facts.get(fact_id)
        return None if fact is None else fact.raw

    # ------------------------------------------------------------------ events out (control subscribers)

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

    def _send_log(self, job: bytes, text: str) -> None:
        if text:
            self.broadcast({"event": "log", "job": job.hex(), "worker": self.peer_id, "text": text})

    def open_subscription(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, recv = trio.open_memory_channel[dict[str, Any]](SUB_BUFFER)
        self._subs.append(send)
        return recv

    def initial_events(self, job: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"event": "node", "node": self.node_info()}, {"event": "peers", "peers": self.peer_list()}]
        if job is not None:  # the object last announced: every later `job` event is newer
            out.append({"event": "job", "job": self.job_obj(self.machine.resolve_job(job))})
        return out

    async def _peer_loop(self) -> None:
        async for _ev in self.network.events():
            self.broadcast({"event": "peers", "peers": self.peer_list()})

    # ------------------------------------------------------------------ views

    def node_info(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addrs": list(self.network.addrs()),
            "slots": self.config.worker.slots if self.runner is not None else 0,
            "busy": 0 if self.builds is None else len(self.builds.running),
            "uptime_s": max(0, (self.now() - self.started_at) // 1000),
            "building": [] if self.builds is None else self.builds.info(),
            "accepting": self.machine.accepting if self.runner is not None else "paused",
            "paused_why": self.paused_why if self.runner is not None else "does not build",
        }

    def peer_list(self) -> list[dict[str, Any]]:
        return [
            {"peer_id": p.peer_id, "addrs": list(p.addrs), "connected_since": p.connected_since, "via": p.via}
            for p in self.network.peers()
        ]

    def job_obj(self, view: JobView) -> dict[str, Any]:
        return self.machine.job_obj(view.job, self.now())

    def fresh_job_obj(self, view: JobView) -> dict[str, Any]:
        """The job object computed now (not the one last broadcast)."""
        return self.machine.fresh_job_obj(view.job, self.now())

    async def control_op(self, op: str, args: dict[str, Any], emit: api.Emit | None = None) -> Any:
        return await api.call(self, op, args, emit)


__all__ = ["Node", "OpenedFacts", "OPENED", "validate_fact", "wall_ms", "load_key", "node_config", "P2pciError", "BuildError"]
