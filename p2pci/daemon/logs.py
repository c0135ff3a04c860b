"""Build logs served to the CLI and the TUI: bounded, by range, never read whole into memory.

A revealer declares its log's size in the reveal (`log: {sha256, size}`). The
daemon fetches a log only if that size is at most MAX_LOG_FETCH (a larger
declared size is refused before a byte is fetched: a "log bomb" costs the
observer nothing), keeps it as a verified blob, and hands out byte ranges of
it: `log_index` lists who revealed which log, `log_range` reads at most
MAX_RANGE bytes at an offset (from the end when `offset` is negative), so
`p2pci logs` streams a log to the terminal a chunk at a time (`--max`,
`--tail`). The old one-shot `logs` op (the TUI's) is served from the same
ranges: at most `max_bytes` of each log, the end of it.

The op-facing surface is `log_index(view, worker)`, and the awaitables
`log_range(fetcher, view, ...)` and `logs_text(fetcher, view, ...)`, where
`fetcher` is the daemon's `artifacts.BlobFetcher` (anything with
`fetch(ref, peers) -> Path`).

A worker that declined with a log (a build that timed out or could not start)
is listed too, after the revealers, with `declined` set to its reason code and
no exit code or digest: "why did it expire" has its log (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import BlobRef, Decline, Reveal
from p2pci.core.signing import peer_id_of

if TYPE_CHECKING:
    from p2pci.core.board import JobView

__all__ = ["MAX_LOG_FETCH", "MAX_RANGE", "log_index", "log_range", "logs_text", "read_range"]

MAX_LOG_FETCH = 32 << 20  # a revealed log declared larger than this is never fetched
MAX_RANGE = 1 << 20  # bytes of a log per control reply
DEFAULT_TEXT_MAX = 1 << 20  # the one-shot `logs` op: the last MiB of each log


def read_range(path: Path, size: int, offset: int, length: int) -> tuple[bytes, int]:
    """At most `length` bytes of the file at `offset` (negative: from the end); (data, start)."""
    length = max(0, min(length, MAX_RANGE))
    start = max(0, size + offset) if offset < 0 else min(offset, size)
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(min(length, size - start)), start


def _matches(key: bytes, text: str) -> bool:
    pid = peer_id_of(key)
    return pid == text or pid.startswith(text) or pid.endswith(text)


@dataclass(frozen=True, slots=True)
class _Log:
    """One log of a job: a reveal's (exit code and digest), or a decline's (its reason)."""

    log: BlobRef
    exit_code: int | None = None
    digest: bytes | None = None
    declined: str | None = None

    def header(self, signer: bytes) -> str:
        if self.declined is not None:
            return f"==> {peer_id_of(signer)} declined ({self.declined}) <==\n"
        assert self.digest is not None
        return f"==> {peer_id_of(signer)} exit {self.exit_code} digest {self.digest.hex()[:16]} <==\n"


def _revealers(view: JobView, worker: str | None) -> list[tuple[bytes, _Log]]:
    """Every log of the job (of `worker` only, if given): the revealers' by key, then those of
    workers that declined with a log and did not reveal (their first decline by fact id)."""
    out = []
    for signer in sorted(view.reveals):
        if worker and not _matches(signer, worker):
            continue
        rev = view.reveals[signer][0].body
        if isinstance(rev, Reveal):
            out.append((signer, _Log(rev.log, rev.exit_code, rev.digest)))
    for signer in sorted(view.declines):
        if signer in view.reveals or (worker and not _matches(signer, worker)):
            continue
        ds = sorted((f for f in view.declines[signer] if isinstance(f.body, Decline)), key=lambda f: f.id)
        dec = ds[0].body if ds else None
        if isinstance(dec, Decline) and dec.log is not None:
            out.append((signer, _Log(dec.log, declined=dec.reason)))
    return out


def log_index(view: JobView, worker: str | None = None) -> list[dict[str, Any]]:
    """Who revealed (or declined with) a log of this job, with its declared size (nothing is fetched)."""
    return [
        {
            "worker": peer_id_of(s),
            "exit_code": rev.exit_code,
            "digest": None if rev.digest is None else rev.digest.hex(),
            "size": rev.log.size,
            "too_large": rev.log.size > MAX_LOG_FETCH,
            "declined": rev.declined,
        }
        for s, rev in _revealers(view, worker)
    ]


async def _log_path(fetcher: Any, signer: bytes, rev: _Log) -> Path:
    if rev.log.size > MAX_LOG_FETCH:
        raise LocalError(
            f"the log revealed by {peer_id_of(signer)} declares {rev.log.size} bytes, more than the "
            f"limit of {MAX_LOG_FETCH >> 20} MiB: not fetched"
        )
    path: Path = await fetcher.fetch(rev.log, [signer])
    return path


async def log_range(fetcher: Any, view: JobView, worker: str, offset: int, length: int) -> dict[str, Any]:
    """`length` bytes (≤ MAX_RANGE) of one worker's revealed log at `offset` (< 0: from the end)."""
    if not isinstance(worker, str) or not worker:
        raise LocalError("log_range needs a worker (peer ID or a unique prefix/suffix)")
    if isinstance(offset, bool) or not isinstance(offset, int) or isinstance(length, bool) or not isinstance(length, int):
        raise LocalError("offset and length are integers")
    found = _revealers(view, worker)
    if not found:
        raise LocalError(f"no log of a worker matching {worker} for this job (none revealed or declined with one)")
    if len(found) > 1:
        raise LocalError(f"worker {worker} is ambiguous ({len(found)} revealers)")
    signer, rev = found[0]
    try:
        path = await _log_path(fetcher, signer, rev)
    except (ProtocolError, trio.TooSlowError) as exc:
        raise LocalError(f"log unavailable: {exc or 'timed out'}") from None
    data, start = await trio.to_thread.run_sync(read_range, path, rev.log.size, offset, length)
    return {"worker": peer_id_of(signer), "size": rev.log.size, "offset": start, "data": data}


async def logs_text(fetcher: Any, view: JobView, worker: str | None, max_bytes: int = DEFAULT_TEXT_MAX) -> str | None:
    """The one-shot text: a header and the last `max_bytes` of each log (revealed, or of a
    decline); None if none."""
    found = _revealers(view, worker)
    if not found:
        return None
    parts = []
    for signer, rev in found:
        head = rev.header(signer)
        try:
            path = await _log_path(fetcher, signer, rev)
            data, start = await trio.to_thread.run_sync(read_range, path, rev.log.size, -max_bytes, max_bytes)
            text = (f"(… {start} earlier bytes not shown)\n" if start else "") + data.decode("utf-8", "replace")
        except (ProtocolError, trio.TooSlowError, LocalError, OSError) as exc:
            text = f"(log unavailable: {exc or 'timed out'})\n"
        parts.append(head + text + ("" if text.endswith("\n") else "\n"))
    return "".join(parts)
