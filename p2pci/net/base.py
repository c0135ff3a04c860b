"""The `Network` interface the daemon programs against (docs/protocol.md section 8).

Two implementations share these semantics:

* `p2pci.net.libp2p_net.LibP2PNetwork`: py-libp2p host, GossipSub, peer
  exchange, anti-entropy sync and the blob protocol.
* `p2pci.net.memory.MemoryNetwork`: an in-memory hub for fast daemon tests,
  with injectable loss, delay and partitions.

Semantics (both implementations):

* Every fact from the network goes through the injected validator
  (`validate(raw) -> fact id`, raising `ProtocolError`) before it is
  delivered through `facts()` or forwarded to anyone. Invalid input is
  dropped and counted in `stats()`, never raised.
* A fact id already seen by this network (published here or delivered once)
  is neither delivered again nor forwarded again.
* `publish(raw)` gossips a fact made by this node; it is NOT delivered back
  through `facts()` (the daemon already has it). Delivery is best effort;
  anti-entropy (`SyncSource`) repairs losses.
* `fetch_blob` pulls pieces from holders (several at once) and sharers; the whole
  blob is hashed before it lands in the store, and a partial download resumes.
* Start with `await nursery.start(net.run)`; stop by cancelling the nursery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (from trio_typing) shadow trio's own types

from p2pci.core.errors import ProtocolError

Validator = Callable[[bytes], bytes]
"""`validate(raw) -> fact id`; raises ProtocolError on anything invalid."""

BlobAccess = Callable[[bytes, str], Awaitable[str | None]]
"""`await access(sha256, requester_peer_id)`: None to serve the blob, else why it is refused
(sent to the requester; the server counts `blob_refused`). Unset: every blob is served."""

LogSource = Callable[[bytes, str, int], Awaitable["tuple[str | None, int, bytes, int]"]]
"""`await source(job, requester_peer_id, offset)` -> `(refused, offset, data, size)`: `refused`
None to serve `data` (this node's own log of `job` from `offset`, at most wire.LOGTAIL_MAX bytes;
`offset` may be later than asked when older bytes are gone) of `size` bytes so far, else why not.
Unset: every request is refused."""

TOPIC = "/p2pci/board/1"
MAX_FACT = 64 * 1024


class BlobStoreLike(Protocol):
    """The part of `p2pci.store.blobs.BlobStore` the network uses.

    `writer(expect)` is a context manager yielding a writable object (`write(data)`,
    and `finish()`: verify and fsync, blocking, so the network calls it in a thread
    before it leaves the block); on a clean exit it renames the temp file into the
    store only if sha256 and size match (else it raises ProtocolError and stores
    nothing); on an exception it discards the temp file.
    """

    def path(self, sha: bytes) -> Path: ...

    def has(self, sha: bytes) -> bool: ...

    def writer(self, expect: Any) -> AbstractContextManager[Any]: ...

    def partial(self, expect: Any) -> Any:
        """The resumable download of `expect` (p2pci.store.blobs.PartialBlob)."""
        ...

    def prune_partials(self, active: frozenset[Path] = frozenset()) -> int:
        """Keep only the most recent partial downloads (bounded disk)."""
        ...


class SyncSource(Protocol):
    """What anti-entropy asks of the daemon."""

    def live_ids(self) -> list[bytes]:
        """Fact ids of live jobs plus a bounded window of recently finished ones."""
        ...

    def get(self, fact_id: bytes) -> bytes | None:
        """The raw envelope of a fact we hold, or None."""
        ...


class EmptySyncSource:
    """A sync source that knows nothing (the default until the daemon sets one)."""

    def live_ids(self) -> list[bytes]:
        return []

    def get(self, fact_id: bytes) -> bytes | None:
        return None


class Delivery(NamedTuple):
    """One validated fact from the network: `for raw, from_peer in net.facts()`."""

    raw: bytes
    from_peer: str


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    addrs: tuple[str, ...]
    connected_since: int  # ms since the epoch
    via: str = ""  # "direct", "relayed" (through a circuit relay), "" when unknown


@dataclass(frozen=True)
class PeerEvent:
    """A peer connected (`up=True`) or went away (`up=False`)."""

    peer_id: str
    up: bool


NetEvent = PeerEvent


class BlobUnavailable(ProtocolError):
    """No peer delivered a blob whose hash matched (the reasons are in the message)."""


@runtime_checkable
class Network(Protocol):
    @property
    def peer_id(self) -> str: ...

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the network; `task_status.started()` once it listens."""
        ...

    async def publish(self, raw: bytes) -> None:
        """Gossip a fact this node made (validated first; ProtocolError if invalid)."""
        ...

    async def flush(self) -> None:
        """Return once the facts published so far have left this node (callers bound the wait)."""
        ...

    def facts(self) -> AsyncIterator[Delivery]:
        """Validated facts from other nodes (gossip and sync), each id at most once."""
        ...

    async def fetch_blob(
        self, ref: Any, dest: BlobStoreLike, peers: list[str] | None = None, sharers: list[str] | None = None
    ) -> Path:
        """Fetch blob `ref` (BlobRef) into `dest` from `peers` (holders of the whole blob, in order
        of preference; default: every connected peer) and `sharers` (the peers fetching the same
        blob now, this node included, in an order they all share: each serves the others the
        pieces it got from a holder; p2pci.net.pieces).

        Returns `dest.path(ref.sha256)`. Raises BlobUnavailable when no peer
        delivered matching bytes.
        """
        ...

    def serve_blobs(self, store: BlobStoreLike) -> None:
        """Serve blobs from `store` to peers that ask."""
        ...

    def set_blob_access(self, access: BlobAccess) -> None:
        """Ask `access` before serving any blob (see `BlobAccess`)."""
        ...

    def set_log_source(self, source: LogSource) -> None:
        """Answer /p2pci/logtail/1 requests with `source` (see `LogSource`)."""
        ...

    async def fetch_log(self, peer: str, job: bytes, offset: int) -> tuple[int, bytes, int]:
        """One /p2pci/logtail/1 request: `(offset, data, size)` of `peer`'s own log of `job`.
        Raises MissingProtocol when `peer` does not speak it, ProtocolError when refused."""
        ...

    def set_sync_source(self, source: SyncSource) -> None: ...

    def peers(self) -> list[PeerInfo]: ...

    def addrs(self) -> list[str]:
        """Our own listen addresses (with /p2p/<peer id> for libp2p)."""
        ...

    def events(self) -> AsyncIterator[NetEvent]:
        """A new subscription to peer events (each call gets its own stream)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: published, delivered, rejected, duplicate, dropped, ..."""
        ...
