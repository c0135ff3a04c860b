"""Blobs by hash, and the artifacts of a job: fetch the agreed outputs, logs, diff two results.

`BlobFetcher.fetch(ref, peers)` returns a blob from the local store, else from
`peers`, else from anyone, with one fetch per blob in flight (a prefetch and a
build share it). Every file written from a manifest is checked against its
hash and written under the output directory only (`safe_join`). `diff` uses
the one diffoscope call of `p2pci.runner.trial`, else a per-file hash list.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from p2pci.core.board import JobView
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import BlobRef, Reveal
from p2pci.core.results import ManifestEntry
from p2pci.core.signing import peer_id_of
from p2pci.core.tally import Verdict
from p2pci.store.blobs import BlobStore

if TYPE_CHECKING:
    from p2pci.net.base import Network

MAX_LOG_TEXT = 1 << 20


class BlobFetcher:
    def __init__(self, blobs: BlobStore, network: Network, timeout_s: Callable[[], float]) -> None:
        self.blobs = blobs
        self.network = network
        self.timeout_s = timeout_s
        self._fetching: dict[bytes, trio.Event] = {}  # blob sha256 -> set when that fetch ends

    def busy(self, sha256: bytes) -> bool:
        return sha256 in self._fetching

    async def fetch(self, ref: BlobRef, peers: list[bytes] | None) -> Path:
        """A blob from our store, else from `peers` (keys), else from anyone."""
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


def agreed(view: JobView, verdict: Verdict) -> tuple[list[bytes], tuple[ManifestEntry, ...]]:
    """The workers of the agreed result and its manifest (LocalError if there is none)."""
    if verdict.digest is None:
        raise LocalError(f"job {view.job.hex()[:12]} has no agreed result (verdict {verdict.state})")
    group = next(g for g in verdict.groups if g.digest == verdict.digest)
    rev = view.reveals[group.workers[0]][0].body
    assert isinstance(rev, Reveal)
    return list(group.workers), rev.manifest


async def materialise(
    fetcher: BlobFetcher, manifest: tuple[ManifestEntry, ...], workers: list[bytes], out: Path
) -> list[dict[str, Any]]:
    files = []
    for e in manifest:
        src = await fetcher.fetch(BlobRef(e.sha256, e.size), workers)
        dest = safe_join(out, e.path)
        await trio.to_thread.run_sync(copy_checked, src, dest, e)
        files.append({"path": e.path, "sha256": e.sha256.hex(), "size": e.size, "mode": e.mode})
    return files


async def fetch_outputs(fetcher: BlobFetcher, view: JobView, verdict: Verdict, out: str) -> dict[str, Any]:
    workers, manifest = agreed(view, verdict)
    dest = Path(out)
    await trio.to_thread.run_sync(lambda: dest.mkdir(parents=True, exist_ok=True))
    files = await materialise(fetcher, manifest, workers, dest)
    return {"job": view.job.hex(), "digest": verdict.digest.hex() if verdict.digest else None, "files": files}


def matches_peer(key: bytes, text: str) -> bool:
    pid = peer_id_of(key)
    return pid == text or pid.startswith(text) or pid.endswith(text)


async def logs(
    fetcher: BlobFetcher, view: JobView, me: bytes, own_log: Callable[[bytes], str | None], worker: str | None
) -> str:
    """The revealed logs of `view` (one worker's with `worker`), else this node's own while it builds."""
    signers = sorted(view.reveals)
    if worker:
        signers = [s for s in signers if matches_peer(s, worker)]
        if not signers:
            own = own_log(view.job) if matches_peer(me, worker) else None
            if own is not None:
                return own
            raise LocalError(f"no reveal by a worker matching {worker} for this job")
    if not signers:
        own = own_log(view.job)
        if own is not None:
            return own
        return "no worker has revealed a log for this job yet\n"
    parts = []
    for s in signers:
        rev = view.reveals[s][0].body
        assert isinstance(rev, Reveal)
        try:
            path = await fetcher.fetch(rev.log, [s])
            data = await trio.to_thread.run_sync(lambda p=path: p.read_bytes()[:MAX_LOG_TEXT])
            text = data.decode("utf-8", "replace")
        except (ProtocolError, trio.TooSlowError) as exc:
            text = f"(log unavailable: {exc})\n"
        head = f"==> {peer_id_of(s)} exit {rev.exit_code} digest {rev.digest.hex()[:16]} <==\n"
        parts.append(head + text + ("" if text.endswith("\n") else "\n"))
    return "".join(parts)


async def diff(fetcher: BlobFetcher, view: JobView, verdict: Verdict) -> str:
    """Compare one result of each of the first two groups (or distinct reveals)."""
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
            await materialise(fetcher, rev.manifest, workers, d)
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


def diff_dirs(a: Path, b: Path) -> str:
    from p2pci.runner.trial import diffoscope

    available, text = diffoscope(a, b)
    if available:
        return text or "no differences\n"
    lines = [f"--- {a.name}\n+++ {b.name}\n"]
    fa = {str(p.relative_to(a)): p for p in a.rglob("*") if p.is_file()}
    fb = {str(p.relative_to(b)): p for p in b.rglob("*") if p.is_file()}
    for name in sorted(set(fa) | set(fb)):
        ha = hashlib.sha256(fa[name].read_bytes()).hexdigest() if name in fa else "-"
        hb = hashlib.sha256(fb[name].read_bytes()).hexdigest() if name in fb else "-"
        if ha != hb:
            lines.append(f"{name}: {ha[:16]} != {hb[:16]}\n")
    return "".join(lines)
