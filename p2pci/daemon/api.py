"""The control ops: one table from op name to handler (docs/internals.md lists them).

Every handler gets the node's narrow `NodeView` and the request's args (a map
from a local client: checked here, LocalError names what is wrong) and returns
what the client prints. The decisions stay in `p2pci.core` (`NodeMachine`,
`core.offer`); handlers only read, or ask the node to publish.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from p2pci.core.board import JobView
from p2pci.core.errors import LocalError
from p2pci.core.messages import Cancel, Message, Offer
from p2pci.core.node import NodeMachine
from p2pci.core.offer import PublishRequest, check, new_offer
from p2pci.core.signing import Fact, peer_id_of, public_of
from p2pci.daemon import artifacts, logs
from p2pci.daemon.artifacts import BlobFetcher
from p2pci.net.common import blob_counters, fact_counters
from p2pci.store.blobs import BlobStore

if TYPE_CHECKING:
    from p2pci.config import Config
    from p2pci.core.worker import WorkerConfig
    from p2pci.daemon.image_cache import Images
    from p2pci.net.base import Network
    from p2pci.store.facts import FactStore


class NodeView(Protocol):
    """What the control ops may use of a node."""

    machine: NodeMachine
    network: Network
    config: Config
    blobs: BlobStore
    fetcher: BlobFetcher
    images: Images
    peer_id: str
    counters: dict[str, int]

    @property
    def me(self) -> bytes: ...
    @property
    def db(self) -> FactStore: ...
    @property
    def protocol(self) -> WorkerConfig: ...
    def now(self) -> int: ...
    def node_info(self) -> dict[str, Any]: ...
    def peer_list(self) -> list[dict[str, Any]]: ...
    def own_log(self, job: bytes) -> str | None: ...
    async def publish_message(self, body: Message) -> Fact: ...
    async def set_trust(self, keys: frozenset[bytes], *, listed: bool | None = None) -> None: ...

    async def publish_offer(self, offer: Offer, seed: bytes) -> Fact: ...

    async def set_control(self, mode: str) -> None: ...

    async def gc_now(self, *, dry_run: bool = False) -> Any: ...


Handler = Callable[[NodeView, dict[str, Any]], Awaitable[Any]]
Emit = Callable[[dict[str, Any]], None]  # sends one event to the calling client, never blocks
ProgressHandler = Callable[[NodeView, dict[str, Any], Emit], Awaitable[Any]]
TICK_S = 2.0  # a `running` step event this often while a daemon-side step runs (elapsed time)


def _arg(args: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    v = args.get(name, default)
    if v is ...:
        raise LocalError(f"missing argument {name!r}")
    if v is not None and not isinstance(v, kind):
        raise LocalError(f"argument {name!r} must be a {kind.__name__}")
    return v


def _only(args: dict[str, Any], *names: str) -> None:
    extra = set(args) - set(names)
    if extra:
        raise LocalError(f"unexpected argument(s) {', '.join(sorted(extra))[:200]}")


def _job(node: NodeView, args: dict[str, Any]) -> JobView:
    return node.machine.resolve_job(args.get("job"))


async def op_id(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args)
    return {"peer_id": node.peer_id, "addrs": list(node.network.addrs())}


async def op_peers(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args)
    return node.peer_list()


async def op_status(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args)
    return {
        "node": node.node_info(),
        "peers": node.peer_list(),
        "jobs": node.machine.job_list(node.now()),
        "facts": fact_counters(node.network.stats()),  # facts from peers (issue 18)
        "blobs": blob_counters(node.network.stats()),
        "quotas": quota_section(node),
        "storage": storage_section(node),
    }


def storage_section(node: NodeView) -> dict[str, Any]:
    """Blob requests refused (by reason) and what garbage collection freed (docs/operator.md, "Disk")."""
    refusals = dict(getattr(node, "blob_refusals", {}))
    last = getattr(node, "gc_last", None)
    return {
        "blob_refused": {r: int(refusals.get(r, 0)) for r in ("untied", "not_allowed")},
        "gc": dict(getattr(node, "gc_totals", {})),
        "gc_last": None if last is None else last.to_obj(),
    }


async def op_gc(node: NodeView, args: dict[str, Any]) -> Any:
    """`p2pci gc`: collect now; what was freed (or, with dry_run, what would be)."""
    _only(args, "dry_run")
    rep = await node.gc_now(dry_run=bool(_arg(args, "dry_run", bool, False)))
    return rep.to_obj()


def quota_section(node: NodeView) -> dict[str, Any]:
    """What the quotas dropped and why (docs/operator.md, "Quotas"); the same in status and stats."""
    from p2pci.net.quota import REASONS

    quotas = getattr(node.network, "quotas", None)
    out: dict[str, Any] = (
        {"dropped": dict.fromkeys(REASONS, 0), "enabled": False}
        if quotas is None
        else {**quotas.snapshot(), "enabled": True}
    )
    m = node.machine
    out["evicted"] = {r: m.evicted.get(r, 0) for r in ("jobs_per_node", "offers_per_key")}
    out["evicted_facts"] = int(getattr(node, "evicted_facts", 0))
    out["over_limit"] = m.over_limit
    out["refused"] = dict(m.refused)  # per-job admission (docs/protocol.md §4.8)
    out["jobs"] = m.board.job_count()
    out["max_jobs"] = m.cfg.max_jobs
    out["max_offers_per_key"] = m.cfg.max_offers_per_key
    return out


MINE = frozenset({"BUILDING", "BUILT", "COMMITTED", "REVEALED"})  # phases of a job this node built


async def op_jobs(node: NodeView, args: dict[str, Any]) -> Any:
    """Every job (newest first); `mine`: only those this node built or declined after claiming."""
    _only(args, "mine")
    jobs = node.machine.job_list(node.now())
    if not _arg(args, "mine", bool, False):
        return jobs
    out = []
    for obj in jobs:
        job = bytes.fromhex(obj["job"])
        wj = node.machine.jobs.get(job)
        view = node.machine.board.job(job)
        built = wj is not None and wj.phase in MINE
        said = view is not None and (node.me in view.commits or node.me in view.declines or node.me in view.reveals)
        if built or said:
            out.append(obj)
    return out


async def op_show(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job")
    return node.machine.job_obj(_job(node, args).job, node.now())


async def op_stats(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args)
    counters = dict(node.counters)
    if node.machine.errors:
        counters["process_errors"] = node.machine.errors
    return {
        "node": counters,
        "net": node.network.stats(),
        "facts": len(node.machine.board),
        "quotas": quota_section(node),
        "storage": storage_section(node),
        # manifest blobs refused by fetch/diff: not matching the reveal that names them, by reason
        "manifests_refused": dict(sorted(node.fetcher.refused.items())),
    }


class Steps:
    """The `step` events of one publish: what the image thread reports, with each step's elapsed
    time, and a `running` event every TICK_S while a step is under way (docs/cli.md, "Progress").
    Runs in the trio thread; the image thread reaches it through `trio.from_thread.run_sync`."""

    def __init__(self, emit: Emit | None) -> None:
        self.emit = emit
        self.current: tuple[str, str, float] | None = None  # step, its start text, its start time

    def event(self, step: str, state: str, text: str, size: int | None = None) -> None:
        now = trio.current_time()
        if state == "start" or self.current is None or self.current[0] != step:
            self.current = (step, text, now)
        started = self.current[2]
        if state == "done":
            self.current = None
        if self.emit is not None:
            self.emit(
                {"event": "step", "step": step, "state": state, "text": text[:500],
                 "elapsed_ms": int((now - started) * 1000), "bytes": size}
            )

    def from_thread(self, step: str, state: str, text: str, size: int | None = None) -> None:
        trio.from_thread.run_sync(self.event, step, state, text, size)

    async def tick(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            if self.current is not None:
                step, text, _ = self.current
                self.event(step, "running", text)


async def op_publish(node: NodeView, args: dict[str, Any], emit: Emit | None = None) -> Any:
    req = PublishRequest.from_args(args)
    check(req)  # every client, not only the CLI
    if node.blobs.size(req.source.sha256) != req.source.size:
        raise LocalError("the source tarball is not in this node's blob store")
    if req.inputs is not None and node.blobs.size(req.inputs.sha256) != req.inputs.size:
        raise LocalError(
            f"the inputs tarball {req.inputs.sha256.hex()} ({req.inputs.size} bytes) is not in this node's blob store"
        )
    store, blobs = node.db, node.blobs
    steps = Steps(emit)
    failed: Exception | None = None
    async with trio.open_nursery() as nursery:  # the image work runs in a thread: the socket stays free
        if emit is not None:
            nursery.start_soon(steps.tick)
        try:
            image_ref = await trio.to_thread.run_sync(lambda: node.images.publish(req.image, blobs, store, steps.from_thread))
        except Exception as exc:  # raised below, outside the nursery: its own error, not an ExceptionGroup
            failed = exc
        nursery.cancel_scope.cancel()
    if failed is not None:
        raise failed
    steps.event("offer", "start", f"signing and gossiping the offer of {req.project}")
    seed = os.urandom(32)  # protocol v2: the selection seed, persisted before the offer goes out
    offer = new_offer(
                req,
        image=image_ref,
        now=node.now(),
        timing=node.protocol,
        select_commit=hashlib.sha256(seed).digest(),
        identity_bits=node.config.publish.identity_bits,  # [publish] identity_bits: what workers must show
    )
    fact = await node.publish_offer(offer, seed)
    await trio.to_thread.run_sync(store.pin, fact.id)
    steps.event("offer", "done", f"offered job {fact.id.hex()}")
    return node.machine.job_obj(fact.id, node.now())


async def op_cancel(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job")
    view = _job(node, args)
    assert view.offer is not None
    if view.offer.signer != node.me:
        raise LocalError("only the publisher can cancel a job")
    await node.publish_message(Cancel(job=view.job))
    return node.machine.fresh_job_obj(view.job, node.now())  # the clock loop acts on it


async def op_export(node: NodeView, args: dict[str, Any]) -> Any:
    from p2pci.core.evidence import export_bundle

    _only(args, "job")
    view = _job(node, args)
    await trio.to_thread.run_sync(node.db.pin, view.job)
    data: bytes = export_bundle(view)
    return data


async def op_trust_list(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args)
    return sorted(peer_id_of(k) for k in node.machine.trust)


async def _trust(node: NodeView, args: dict[str, Any], add: bool) -> Any:
    _only(args, "peer_id")
    key = public_of(_arg(args, "peer_id", str))
    keys = set(node.machine.trust)
    if add:
        keys.add(key)
    else:
        keys.discard(key)
    await node.set_trust(frozenset(keys))
    return sorted(peer_id_of(k) for k in node.machine.trust)


async def op_trust_count(node: NodeView, args: dict[str, Any]) -> Any:
    """Count every vote the offer allows ("all") or only the trust set ("listed", even empty)."""
    _only(args, "mode")
    mode = args.get("mode")
    if mode not in ("all", "listed"):
        raise LocalError('trust count must be "all" or "listed"')
    await node.set_trust(node.machine.trust, listed=mode == "listed")
    return mode


async def op_trust_add(node: NodeView, args: dict[str, Any]) -> Any:
    return await _trust(node, args, True)


async def op_trust_remove(node: NodeView, args: dict[str, Any]) -> Any:
    return await _trust(node, args, False)


async def op_fetch(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job", "out", "group")
    view = _job(node, args)
    out = _arg(args, "out", str)
    group = _arg(args, "group", int, None)
    verdict = node.machine.verdict(view.job, node.now())
    return await artifacts.fetch_outputs(node.fetcher, view, verdict, out, group)


async def op_logs(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job", "worker")
    view = _job(node, args)
    return await artifacts.logs(node.fetcher, view, node.me, node.own_log, _arg(args, "worker", str, None))


async def op_log_index(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job", "worker")
    return logs.log_index(_job(node, args), _arg(args, "worker", str, None))


async def op_log_range(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job", "worker", "offset", "length")
    view = _job(node, args)
    return await logs.log_range(
        node.fetcher, view, _arg(args, "worker", str), _arg(args, "offset", int, 0), _arg(args, "length", int, logs.MAX_RANGE)
    )


async def op_diff(node: NodeView, args: dict[str, Any]) -> Any:
    _only(args, "job")
    view = _job(node, args)
    return await artifacts.diff(node.fetcher, view, node.machine.verdict(view.job, node.now()))


async def op_worker_control(node: NodeView, args: dict[str, Any]) -> Any:
    """`p2pci worker pause | resume | drain`: the node's state afterwards (its `node` object)."""
    _only(args, "action")
    action = _arg(args, "action", str)
    modes = {"pause": "paused", "resume": "open", "drain": "draining"}
    if action not in modes:
        raise LocalError(f"action must be pause, resume or drain, not {action!r:.40}")
    await node.set_control(modes[action])
    return node.node_info()


OPS: dict[str, Handler] = {
    "id": op_id,
    "peers": op_peers,
    "status": op_status,
    "jobs": op_jobs,
    "show": op_show,
    "stats": op_stats,
    "publish": op_publish,
    "cancel": op_cancel,
    "export": op_export,
    "trust_list": op_trust_list,
    "trust_add": op_trust_add,
    "trust_count": op_trust_count,
    "trust_remove": op_trust_remove,
    "fetch": op_fetch,
    "logs": op_logs,
    "log_index": op_log_index,
    "log_range": op_log_range,
    "diff": op_diff,
    "worker_control": op_worker_control,
    "gc": op_gc,
}
PROGRESS_OPS: dict[str, ProgressHandler] = {"publish": op_publish}  # may send `step` events first


async def call(node: NodeView, op: Any, args: Any, emit: Emit | None = None) -> Any:
    """Run one op; `emit` (a client that asked for progress) gets the op's `step` events, if any."""
    handler = OPS.get(op) if isinstance(op, str) else None
    if handler is None:
        raise LocalError(f"unknown op {op!r:.40}")
    if not isinstance(args, dict):
        raise LocalError("args must be a map")
    streaming = PROGRESS_OPS.get(op)
    if emit is not None and streaming is not None:
        return await streaming(node, args, emit)
    return await handler(node, args)
