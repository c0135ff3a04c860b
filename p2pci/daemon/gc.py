"""Garbage collection of blobs, work directories and loaded images (docs/operator.md, "Disk").

    report = collect(blobs, store, work_dir, images, keep=..., own=..., now=..., retention_ms=...,
                     budget_bytes=..., dry_run=False)

Every blob this node holds for a reason is tied to the job that brought it
(`FactStore.tie`: the publisher's source, image archive and inputs, a worker's
fetched source, archive and inputs, its outputs and log). A job *needs* its
blobs while it is in `keep` (no final verdict yet, or a build of it runs here)
or while its newest activity (its newest fact, else its newest tie) is younger
than the retention. Past the retention a job's ties are dropped; then, while
the kept bytes exceed the budget, the oldest decided jobs are dropped too:
other publishers' jobs first, this node's own last, never a job in `keep`.

A blob is deleted once no kept job ties it; a blob tied to no job at all
(a `p2pci fetch` copy, a prefetched source that was never built) once it is
older than `GRACE_S`. `work/<job>` goes with its job. A Docker image goes
when p2pci itself loaded it (`builds.IMAGE_LOADED`) and no kept job used it;
the donor's own images are never touched. Blocking: run it in a thread.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pci.daemon.builds import IMAGE_BY, IMAGE_LOADED

if TYPE_CHECKING:
    from p2pci.daemon.image_cache import Images
    from p2pci.store.blobs import BlobStore
    from p2pci.store.facts import FactStore

GRACE_S = 3600  # an untied blob younger than this may be in use (a fetch, a publish being packed)
RUNS_GRACE_S = 3600  # a runner's leftover scratch dir older than this, with no build running, goes


@dataclass
class GcReport:
    """What one collection freed (or, with dry_run, would free)."""

    dry_run: bool
    blobs_removed: int = 0
    bytes_freed: int = 0
    work_dirs_removed: int = 0
    jobs_dropped: int = 0  # jobs whose blobs were let go (by retention or by the budget)
    by_budget: int = 0  # of those, how many the disk budget dropped
    images_removed: list[str] = field(default_factory=list)
    images_kept_in_use: int = 0  # loaded by p2pci, no job needs them, but Docker refused (in use)
    facts_pruned: int = 0
    kept_bytes: int = 0  # what the blob store and work/ hold afterwards
    budget_bytes: int = 0  # 0: no budget

    def to_obj(self) -> dict[str, Any]:
        return asdict(self)


def _job_dirs(work_dir: Path) -> dict[bytes, Path]:
    out: dict[bytes, Path] = {}
    with contextlib.suppress(OSError):
        for d in work_dir.iterdir():
            if len(d.name) == 64 and d.is_dir():
                with contextlib.suppress(ValueError):
                    out[bytes.fromhex(d.name)] = d
    return out


def _dir_bytes(d: Path) -> int:
    """Bytes of `d` not shared with the blob store (a hard-linked log counts there, once)."""
    total = 0
    stack = [d]
    while stack:
        cur = stack.pop()
        with contextlib.suppress(OSError):
            for p in cur.iterdir():
                st = p.lstat()
                if p.is_dir() and not p.is_symlink():
                    stack.append(p)
                elif st.st_nlink == 1:
                    total += st.st_size
    return total


def collect(
    blobs: BlobStore,
    store: FactStore,
    work_dir: Path,
    images: Images | None,
    *,
    keep: set[bytes],
    own: set[bytes],
    now: int,
    retention_ms: int,
    budget_bytes: int,
    dry_run: bool = False,
    building: bool = False,
    grace_s: float = GRACE_S,
) -> GcReport:
    rep = GcReport(dry_run=dry_run, budget_bytes=budget_bytes)
    refs = store.blob_refs()
    activity = store.last_activity()
    dirs = _job_dirs(work_dir)
    tied_by: dict[bytes, set[bytes]] = {}  # sha -> jobs
    shas_of: dict[bytes, set[bytes]] = {}  # job -> shas
    when: dict[bytes, int] = {}
    for sha, job, _role, _served, at in refs:
        tied_by.setdefault(sha, set()).add(job)
        shas_of.setdefault(job, set()).add(sha)
        when[job] = max(when.get(job, 0), at)
    for job, d in dirs.items():
        shas_of.setdefault(job, set())
        if job not in when:
            with contextlib.suppress(OSError):
                when[job] = int(d.stat().st_mtime * 1000)
    for job in shas_of:
        when[job] = max(when.get(job, 0), activity.get(job, 0))

    sizes: dict[bytes, int] = {}
    mtimes: dict[bytes, float] = {}
    for sha, size, mtime in blobs.iter_blobs():
        sizes[sha] = size
        mtimes[sha] = mtime

    dropped: set[bytes] = {j for j in shas_of if j not in keep and now - when.get(j, 0) > retention_ms}
    refcount = {sha: len(jobs - dropped) for sha, jobs in tied_by.items()}
    dir_bytes = {j: _dir_bytes(d) for j, d in dirs.items()}

    wall = time.time()
    doomed: set[bytes] = {sha for sha in sizes if sha not in tied_by and wall - mtimes[sha] > grace_s}
    doomed |= {sha for sha, n in refcount.items() if n == 0 and sha in sizes}
    kept = sum(s for sha, s in sizes.items() if sha not in doomed)
    kept += sum(b for j, b in dir_bytes.items() if j not in dropped)

    if budget_bytes and kept > budget_bytes:
        # the oldest decided jobs first: other publishers' before our own
        order = sorted((j for j in shas_of if j not in keep and j not in dropped), key=lambda j: (j in own, when.get(j, 0)))
        for job in order:
            if kept <= budget_bytes:
                break
            dropped.add(job)
            rep.by_budget += 1
            kept -= dir_bytes.get(job, 0)
            for sha in shas_of[job]:
                refcount[sha] -= 1
                if refcount[sha] == 0 and sha in sizes and sha not in doomed:
                    doomed.add(sha)
                    kept -= sizes[sha]

    rep.jobs_dropped = len(dropped)
    rep.blobs_removed = len(doomed)
    rep.bytes_freed = sum(sizes[s] for s in doomed) + sum(dir_bytes.get(j, 0) for j in dropped)
    rep.work_dirs_removed = sum(1 for j in dropped if j in dirs)
    rep.kept_bytes = kept

    live_jobs = {j.hex() for j in (set(shas_of) - dropped) | keep}
    stale_images: list[str] = []
    for key, jobs in store.kv_items(IMAGE_LOADED):
        if not isinstance(jobs, list) or not any(j in live_jobs for j in jobs):
            stale_images.append(key[len(IMAGE_LOADED) :])
    if dry_run:
        rep.images_removed = stale_images
        return rep

    for sha in doomed:
        blobs.remove(sha)
    for job in dropped:
        jd = dirs.get(job)
        if jd is not None:
            shutil.rmtree(jd, ignore_errors=True)
    store.untie_jobs(dropped)
    for image_id in stale_images:
        if images is None or images.remove(image_id):
            rep.images_removed.append(image_id)
            store.kv_delete(IMAGE_LOADED + image_id)
            store.kv_delete(IMAGE_BY + image_id)
        else:
            rep.images_kept_in_use += 1
    if not building:  # a killed daemon's runner scratch (p2pci-run-*, p2pci-result-*) under work/runs
        with contextlib.suppress(OSError):
            for d in (work_dir / "runs").iterdir():
                if d.name.startswith("p2pci-") and wall - d.stat().st_mtime > RUNS_GRACE_S:
                    shutil.rmtree(d, ignore_errors=True)
    return rep


__all__ = ["GcReport", "collect", "GRACE_S"]
