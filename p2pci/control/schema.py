"""The objects the daemon sends on the control socket (results and events), as TypedDicts.

The daemon builds them (`core.tally.verdict_json` for a job, `daemon.node.Node.node_info` /
`peer_list` for the rest); the TUI model reads them; test fakes must produce exactly these keys
(`tests/integration/test_tui_helpers.py` is checked against a real daemon's objects).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, get_args

from p2pci.core.tally import FINAL_STATES

Verdict = Literal["PENDING", "REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"]
VERDICTS: tuple[str, ...] = ("PENDING", "REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED")
FINAL: frozenset[str] = frozenset(FINAL_STATES)


class GroupObj(TypedDict):
    digest: str
    exit_code: int
    workers: list[str]


class IgnoredObj(TypedDict):
    worker: str
    reason: str


class RoundObj(TypedDict):
    round: int
    select: str
    created: int
    workers: list[str]


class IgnoredSelectObj(TypedDict):
    select: str
    round: int
    signer: str
    reason: str


class DeclineObj(TypedDict):
    worker: str
    reason: str
    detail: str


WorkerPhase = Literal["claimed", "selected", "dropped", "committed", "revealed", "declined", "timed_out"]


class WorkerRowObj(TypedDict):
    """One worker of a job as this node's facts tell it (`workers` of the verdict object)."""

    worker: str
    phase: WorkerPhase
    selected: bool
    reason: str | None  # the decline's code
    detail: str | None  # the decline's text (untrusted: shown escaped)
    log: str | None  # sha256 hex of the decline's log blob


class DeadlinesObj(TypedDict):
    claim_window_end: int
    reveal: int
    offer: int


class ProvenanceObj(TypedDict):
    """What a job builds, from its signed offer (docs/protocol.md section 6)."""

    source_sha256: str
    source_size: int
    commit: str | None
    tree: str | None
    image: str
    image_recipe: str | None
    command: list[str]
    env: dict[str, str]
    source_date_epoch: int | None
    inputs_sha256: str | None
    inputs_size: int | None


class JobObj(TypedDict):
    """`show --json`, `jobs`, the `job` event (docs/protocol.md section 6)."""

    job: str
    project: str | None
    verdict: Verdict
    digest: str | None
    replicas: int | None
    quorum: int | None
    groups: list[GroupObj]
    dissenters: list[str]
    equivocators: list[str]
    ignored: list[IgnoredObj]
    reason: str | None  # why EXPIRED (exactly one of the two texts of docs/protocol.md section 6)
    rounds: list[RoundObj]
    ignored_selects: list[IgnoredSelectObj]
    missing: list[str]
    declines: list[DeclineObj]
    cause: str | None  # why EXPIRED, for humans (no eligible worker, N declined, timed out, publisher gone)
    workers: list[WorkerRowObj]
    created: int | None  # the offer's, ms
    deadlines: DeadlinesObj | None
    provenance: ProvenanceObj | None


StepName = Literal["image", "export", "offer"]
StepState = Literal["start", "info", "running", "done"]


class StepEventObj(TypedDict):
    """A `step` frame sent before the reply to a request with `progress: true` (`publish`'s long
    steps: resolving or building the base image, exporting it, the offer; docs/cli.md, "Progress")."""

    event: Literal["step"]
    step: StepName
    state: StepState
    text: str  # at most 500 characters; shown escaped
    elapsed_ms: int  # since this step's `start`
    bytes: int | None  # export: the archive's size so far; else None


class BuildingObj(TypedDict):
    job: str
    project: str
    started: int


class NodeObj(TypedDict):
    """The `node` part of `status` and the `node` event."""

    peer_id: str
    addrs: list[str]
    slots: int
    busy: int
    uptime_s: int
    building: list[BuildingObj]
    accepting: Literal["open", "paused", "draining"]  # donor controls and the schedule
    paused_why: str  # why no new work is taken ("" while open)


class PeerObj(TypedDict):
    peer_id: str
    addrs: list[str]
    connected_since: int
    via: str  # "direct", "hole-punched", "relayed", or "" (unknown, e.g. the memory network)


class FactsObj(TypedDict):
    """Facts from peers (gossip and sync), counted by the network layer (`p2pci.net.common.fact_counters`)."""

    received: int
    new: int
    duplicate: int
    rejected: dict[str, int]  # reason -> count
    dropped: dict[str, int]  # reason -> count


class BlobsObj(TypedDict):
    """Blob transfers of this node (`p2pci.net.common.blob_counters`, docs/protocol.md §8.4)."""

    served_bytes: int  # bytes this node uploaded to peers (whole blobs and pieces)
    received_bytes: int  # bytes it downloaded in pieces (/p2pci/blob/2)
    fetched: int  # blobs downloaded and verified
    rejected: int  # downloads or replies that failed a check (a hash, a frame, a size)
    bad_holders: int  # peers dropped for serving bytes that are not the blob


class StatusObj(TypedDict):
    node: NodeObj
    peers: list[PeerObj]
    jobs: list[JobObj]
    facts: FactsObj
    blobs: BlobsObj
    quotas: dict[str, Any]  # what the quotas dropped, admission refused and eviction removed, and the limits (docs/operator.md, "Quotas")
    storage: dict[str, Any]  # blob requests refused by reason, what gc freed (docs/operator.md, "Disk")


JOB_KEYS: frozenset[str] = frozenset(JobObj.__annotations__)
NODE_KEYS: frozenset[str] = frozenset(NodeObj.__annotations__)
PEER_KEYS: frozenset[str] = frozenset(PeerObj.__annotations__)
PROVENANCE_KEYS: frozenset[str] = frozenset(ProvenanceObj.__annotations__)
FACTS_KEYS: frozenset[str] = frozenset(FactsObj.__annotations__)
BLOBS_KEYS: frozenset[str] = frozenset(BlobsObj.__annotations__)
WORKER_ROW_KEYS: frozenset[str] = frozenset(WorkerRowObj.__annotations__)
ROUND_KEYS: frozenset[str] = frozenset(RoundObj.__annotations__)
DEADLINES_KEYS: frozenset[str] = frozenset(DeadlinesObj.__annotations__)
WORKER_PHASES: tuple[str, ...] = get_args(WorkerPhase)
STEP_EVENT_KEYS: frozenset[str] = frozenset(StepEventObj.__annotations__)
STEP_NAMES: tuple[str, ...] = get_args(StepName)
STEP_STATES: tuple[str, ...] = get_args(StepState)
