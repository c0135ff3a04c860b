"""Blobs by hash, and the artifacts of a job: fetch the agreed outputs, logs, diff two results.

`BlobFetcher.fetch(ref, peers)` returns a blob from the local store, else from
`peers`, else from anyone, with one fetch per blob in flight (a prefetch and a
build share it). A result's manifest is a blob named by its reveals: `group_manifest` fetches
it by hash from the group's workers and checks it against the reveal (hash, size, entry count,
digest: `results.parse_manifest`); a blob that fails is refused, deleted and counted
(`BlobFetcher.refused`), and the next distinct manifest of the group is tried. Every file written from a manifest is checked against its
hash and written under the output directory only (`safe_join`, at most
`MAX_TREE_DEPTH` levels). `diff` compares counted groups only (an uncounted
reveal's artifacts are never fetched) and runs diffoscope only in the build
sandbox (`p2pci.runner.diffbox.diff_dirs`: no network, limits, timeout), else a
pure-Python comparison. Logs are read by range (`p2pci.daemon.logs`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.core.board import JobView
from p2pci.core.errors import LocalError, ProtocolError, first_error
from p2pci.core.messages import BlobRef, Reveal
from p2pci.core.results import ManifestEntry, parse_manifest
from p2pci.core.signing import peer_id_of
from p2pci.core.tally import Verdict
from p2pci.daemon import logs as logs_mod
from p2pci.runner.diffbox import diff_dirs
from p2pci.runner.source import MAX_TREE_DEPTH
from p2pci.store.blobs import BlobStore

if TYPE_CHECKING:
    from p2pci.net.base import Network

MAX_LOG_TEXT = 1 << 20
log = logging.getLogger("p2pci.artifacts")


class BlobFetcher:
    def __init__(self, blobs: BlobStore, network: Network, timeout_s: Callable[[], float]) -> None:
        self.blobs = blobs
        self.network = network
        self.timeout_s = timeout_s
        self._fetching: dict[bytes, trio.Event] = {}  # blob sha256 -> set when that fetch ends
        self.refused: dict[str, int] = {}  # manifest blobs refused (not matching their reveal), by reason

    def busy(self, sha256: bytes) -> bool:
        return sha256 in self._fetching

    async def fetch(
        self, ref: BlobRef, peers: list[bytes] | None, sharers: list[bytes] | None = None, *, anyone: bool = True
    ) -> Path:
        """A blob from our store, else from `peers` (keys of holders of the whole blob, in order)
        and `sharers` (keys of the nodes fetching it now, this one included: they pass pieces to
        each other, p2pci.net.pieces), else (unless `anyone` is False) from anyone."""
        if self.blobs.size(ref.sha256) == ref.size:
            return self.blobs.path(ref.sha256)
        if ref.size == 0:
            self.blobs.put_bytes(b"")
            return self.blobs.path(ref.sha256)
        with trio.fail_after(self.timeout_s()):
            pending = self._fetching.get(ref.sha256)
            if pending is not None:  # the same blob is on its way (a prefetch): wait for it, not a second copy
                await pending.wait()
                if self.blobs.size(ref.sha256) == ref.size:
                    return self.blobs.path(ref.sha256)
            done = self._fetching[ref.sha256] = trio.Event()
            try:
                if peers or sharers:
                    try:
                        return await self.network.fetch_blob(
                            ref,
                            self.blobs,
                            [peer_id_of(p) for p in peers or []],
                            [peer_id_of(p) for p in sharers] if sharers else None,
                        )
                    except ProtocolError:
                        if not anyone:
                            raise
                return await self.network.fetch_blob(ref, self.blobs, None)
            finally:
                if self._fetching.get(ref.sha256) is done:
                    del self._fetching[ref.sha256]
                done.set()


def agreed(view: JobView, verdict: Verdict) -> tuple[list[bytes], bytes]:
    """The workers of the agreed result and its digest (LocalError if there is none)."""
    if verdict.digest is None:
        hint = " (pick one group: --group N, as `show` numbers them)" if verdict.state == "DISPUTED" else ""
        raise LocalError(f"job {view.job.hex()[:12]} has no agreed result (verdict {verdict.state}){hint}")
    group = next(g for g in verdict.groups if g.digest == verdict.digest)
    return list(group.workers), group.digest


def _reveal_of(view: JobView, worker: bytes, digest: bytes) -> Reveal | None:
    for f in view.reveals.get(worker, ()):
        if isinstance(f.body, Reveal) and f.body.digest == digest:
            return f.body
    return None


async def group_manifest(
    fetcher: BlobFetcher, view: JobView, workers: list[bytes], digest: bytes
) -> tuple[ManifestEntry, ...]:
    """The manifest of the result `digest` that `workers` revealed: fetched by hash (from them
    first) and checked against their reveal. Each distinct manifest ref they name is tried once;
    one that does not match is refused, deleted and counted. LocalError if none matches."""
    tried: set[tuple[bytes, int, int]] = set()
    problems: list[str] = []
    for w in workers:
        rev = _reveal_of(view, w, digest)
        if rev is None:
            continue
        key = (rev.manifest.sha256, rev.files, rev.exit_code)
        if key in tried:
            continue
        tried.add(key)
        try:
            path = await fetcher.fetch(rev.manifest, workers)
            data = await trio.to_thread.run_sync(path.read_bytes)
            check = functools.partial(
                parse_manifest,
                data,
                sha256=rev.manifest.sha256,
                files=rev.files,
                exit_code=rev.exit_code,
                digest=digest,
            )
            return await trio.to_thread.run_sync(check)
        except ProtocolError as exc:  # unavailable, or a blob that does not match its reveal
            if str(exc).startswith("manifest blob:"):
                fetcher.refused[exc.reason] = fetcher.refused.get(exc.reason, 0) + 1
                log.warning("refused the manifest %s of %s: %s", rev.manifest.sha256.hex()[:12], peer_id_of(w), exc)
                fetcher.blobs.remove(rev.manifest.sha256)
            problems.append(f"{rev.manifest.sha256.hex()[:12]}: {exc}")
    why = "; ".join(problems[:4]) or "no reveal names it"
    raise LocalError(f"no valid manifest for result {digest.hex()[:12]} of job {view.job.hex()[:12]}: {why}")


FETCH_PARALLEL = 8  # artifact blobs in flight at once (each peer serves 2 at a time: several holders help)


async def materialise(
    fetcher: BlobFetcher, manifest: tuple[ManifestEntry, ...], workers: list[bytes], out: Path
) -> list[dict[str, Any]]:
    """Every file of `manifest` under `out`, fetched by hash (FETCH_PARALLEL at a time) and checked;
    the first failure cancels the rest and is raised."""
    for e in manifest:
        safe_join(out, e.path)  # every path is checked before anything is fetched
    todo = iter(enumerate(manifest))  # shared by the fetching tasks: each entry is taken once

    async def fetch_some() -> None:
        for i, e in todo:
            k = i % len(workers) if workers else 0  # spread over the holders (each serves 2 at a time)
            src = await fetcher.fetch(BlobRef(e.sha256, e.size), workers[k:] + workers[:k])
            await trio.to_thread.run_sync(copy_checked, src, safe_join(out, e.path), e)

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(min(FETCH_PARALLEL, len(manifest))):
                nursery.start_soon(fetch_some)
    except BaseExceptionGroup as group:  # one failure cancels the others: raise it, not the group
        first = first_error(group, Exception)
        if first is None:
            raise
        raise first from None
    await trio.to_thread.run_sync(fetcher.blobs.sync)  # the fetched blobs' renames: one fsync per directory
    return [{"path": e.path, "sha256": e.sha256.hex(), "size": e.size, "mode": e.mode} for e in manifest]



def group_result(view: JobView, verdict: Verdict, n: int) -> tuple[list[bytes], bytes]:
    """Group `n` (1-based, in the verdict's group order: `show` lists them so) of a DISPUTED job."""
    if verdict.state != "DISPUTED":
        raise LocalError(f"--group is for DISPUTED jobs; job {view.job.hex()[:12]} is {verdict.state}")
    if not 1 <= n <= len(verdict.groups):
        raise LocalError(f"job {view.job.hex()[:12]} has {len(verdict.groups)} group(s); --group {n} is not one")
    group = verdict.groups[n - 1]
    return list(group.workers), group.digest


async def fetch_outputs(
    fetcher: BlobFetcher, view: JobView, verdict: Verdict, out: str, group: int | None = None
) -> dict[str, Any]:
    """The agreed artifacts, or with `group` those of one group of a DISPUTED job, checked against
    that group's manifest."""
    workers, digest = agreed(view, verdict) if group is None else group_result(view, verdict, group)
    manifest = await group_manifest(fetcher, view, workers, digest)
    dest = Path(out)
    await trio.to_thread.run_sync(lambda: dest.mkdir(parents=True, exist_ok=True))
    files = await materialise(fetcher, manifest, workers, dest)
    return {"job": view.job.hex(), "digest": digest.hex(), "files": files}


def matches_peer(key: bytes, text: str) -> bool:
    pid = peer_id_of(key)
    return pid == text or pid.startswith(text) or pid.endswith(text)


async def logs(
    fetcher: BlobFetcher, view: JobView, me: bytes, own_log: Callable[[bytes], str | None], worker: str | None
) -> str:
    """The logs of `view` (revealed, or of a decline; one worker's with `worker`), else this
    node's own while it builds."""
    found = bool(logs_mod.log_index(view, worker))  # revealers, then decliners with a log
    if worker:
        if not found:
            own = own_log(view.job) if matches_peer(me, worker) else None
            if own is not None:
                return own
            raise LocalError(f"no log of a worker matching {worker} for this job (none revealed or declined with one)")
    if not found:
        own = own_log(view.job)
        if own is not None:
            return own
        return "no worker has revealed a log for this job yet\n"
    text = await logs_mod.logs_text(fetcher, view, worker, MAX_LOG_TEXT)  # bounded, by range
    return text if text is not None else "no worker has revealed a log for this job yet\n"


async def diff(fetcher: BlobFetcher, view: JobView, verdict: Verdict) -> str:
    """Compare one result of each of the first two groups (or distinct reveals)."""
    groups = list(verdict.groups)
    if len(groups) < 2:  # only counted votes: an uncounted reveal's artifacts are never fetched
        return f"nothing to compare: {len(groups)} counted result(s) for job {view.job.hex()[:12]}\n"
    pairs = [(g.digest, list(g.workers)) for g in groups]
    with tempfile.TemporaryDirectory(prefix="p2pci-diff-") as tmp:
        dirs: list[Path] = []
        exits: list[int] = []
        for digest, workers in pairs[:2]:
            rev = _reveal_of(view, workers[0], digest)
            assert rev is not None
            manifest = await group_manifest(fetcher, view, workers, digest)
            d = Path(tmp) / digest.hex()[:12]
            await trio.to_thread.run_sync(lambda d=d: d.mkdir())
            await materialise(fetcher, manifest, workers, d)
            dirs.append(d)
            exits.append(rev.exit_code)
        if exits[0] != exits[1]:
            for d, code in zip(dirs, exits, strict=True):
                await trio.to_thread.run_sync((d / ".p2pci-exit-code").write_text, f"{code}\n")
        return await trio.to_thread.run_sync(diff_dirs, dirs[0], dirs[1])


def safe_join(root: Path, rel: str) -> Path:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ProtocolError(f"unsafe manifest path {rel!r:.100}")
    if len(parts) > MAX_TREE_DEPTH:  # no build makes one (outputs are refused past it); mkdir would recurse
        raise ProtocolError(f"manifest path {rel[:60]!r}... is deeper than {MAX_TREE_DEPTH} levels")
    return root.joinpath(*parts)


def copy_checked(src: Path, dest: Path, entry: ManifestEntry) -> None:
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

