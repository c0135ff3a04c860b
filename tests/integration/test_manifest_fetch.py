"""Fetching a result's manifest blob (docs/protocol.md §4.4.1), with a hostile worker in the group.

A worker whose reveal carries the agreed digest but names a manifest blob of its own (one
that hashes to the ref it names, so the blob layer accepts it) must not get that manifest
used: `group_manifest` refuses it (digest check), deletes it, counts it, and takes an honest
worker's manifest. Real blob stores and the real BlobFetcher; the network is a small fake that
serves each holder's store (the e2e tests run the real one).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import BlobRef, Reveal
from p2pci.core.results import MAX_MANIFEST_ENTRIES, ManifestEntry, manifest_bytes, pack_manifest
from p2pci.core.signing import peer_id_of, seal
from p2pci.core.tally import tally
from p2pci.daemon.artifacts import BlobFetcher, fetch_outputs, group_manifest
from p2pci.runner.base import BuildResult
from p2pci.store.blobs import BlobStore
from p2pci.testing.cluster import ScriptedRunner, open_cluster
from tests.unit.jobgen import JobSim, key, make_offer, manifest_for


class Holders:
    """Serves blobs from each peer's own store (by peer ID), checked by the receiver's writer."""

    def __init__(self, stores: dict[str, BlobStore]) -> None:
        self.stores = stores
        self.asked: list[str] = []

    async def fetch_blob(self, ref: Any, dest: BlobStore, peers: list[str] | None = None) -> Path:
        for p in peers or list(self.stores):
            src = self.stores.get(p)
            if src is not None and src.has(ref.sha256):
                self.asked.append(p)
                with dest.writer(ref) as w:
                    w.write(src.read_bytes(ref.sha256))
                await trio.lowlevel.checkpoint()
                return dest.path(ref.sha256)
        raise ProtocolError(f"blob {ref.sha256.hex()[:12]} unavailable")


def job_with_a_hostile_manifest(tmp: Path, bogus: bytes) -> tuple[JobSim, list[bytes], dict[str, BlobStore]]:
    """Workers a (hostile: names the blob `bogus`) and b (honest) revealed the same digest."""
    a, b = key("hostile"), key("honest")
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.claim(a)
    sim.claim(b)
    sim.select()
    built = {k.public: sim.built(k) for k in (a, b)}
    for k in (a, b):
        sim.commit(k, built[k.public])
    stores: dict[str, BlobStore] = {}
    for k in (a, b):
        store = stores[peer_id_of(k.public)] = BlobStore(tmp / k.public.hex()[:8])
        entries = built[k.public].manifest
        for data in (b"good", b"hello"):  # the outputs of manifest_for(b"good"), as a worker serves them
            store.put_bytes(data)
        seen = tuple(sorted(c.id for c in sim.commit_of.values()))
        rev = Reveal.of(
            sim.job, None, built[k.public].salt, 0, entries, BlobRef(hashlib.sha256(b"log").digest(), 3), seen
        )
        if k is a:  # same digest, its own manifest blob (served, and hashing to the ref it names)
            ref = store.put_bytes(bogus)
            rev = Reveal(rev.job, rev.digest, rev.salt, 0, ref, rev.files, rev.log, rev.seen)
        else:
            store.put_bytes(manifest_bytes(entries))
        sim.facts.append(seal(k, rev))
    return sim, [a.public, b.public], stores


@pytest.mark.parametrize(
    ("bogus", "reason"),
    [
        (manifest_bytes(manifest_for(b"evil")), "digest"),  # another valid manifest: digest check
        (manifest_bytes(manifest_for(b"good"))[:-1] + b"\x00", "digest"),  # one byte changed
        (b"\x92" + bytes(150), "digest"),  # junk of a plausible size
    ],
)
async def test_a_hostile_manifest_blob_in_the_group_is_refused_counted_and_replaced(
    tmp_path: Path, bogus: bytes, reason: str
) -> None:
    sim, workers, stores = job_with_a_hostile_manifest(tmp_path, bogus)
    view = sim.view()
    verdict = tally(view, sim.offer.created + 5000)
    assert verdict.state == "REPRODUCED" and sorted(verdict.groups[0].workers) == sorted(workers)
    mine = BlobStore(tmp_path / "observer")
    net = Holders(stores)
    fetcher = BlobFetcher(mine, net, lambda: 10.0)  # type: ignore[arg-type]
    digest = verdict.groups[0].digest
    manifest = await group_manifest(fetcher, view, workers, digest)  # the hostile worker first
    assert manifest == manifest_for(b"good")
    assert fetcher.refused == {reason: 1}
    hostile = view.reveals[workers[0]][0].body
    assert isinstance(hostile, Reveal) and not mine.has(hostile.manifest.sha256)  # refused: deleted
    # the whole fetch: every file checked against the honest manifest
    got = await fetch_outputs(fetcher, view, verdict, str(tmp_path / "out"))
    assert [f["path"] for f in got["files"]] == ["bin/hello", "share/readme.txt"]
    assert (tmp_path / "out" / "bin" / "hello").read_bytes() == b"good"
    # with only the hostile worker, nothing is used: a clear error, counted again
    with pytest.raises(LocalError, match="no valid manifest"):
        await group_manifest(fetcher, view, workers[:1], digest)
    assert fetcher.refused == {reason: 2}


async def test_a_file_not_matching_the_manifest_stops_the_fetch(tmp_path: Path) -> None:
    """The manifest is honest but a holder serves a file whose hash differs: the blob layer never
    stores it (hash checked while writing), and the fetch fails naming it; nothing else is kept."""
    entries = (ManifestEntry("a.txt", 4, 0o644, hashlib.sha256(b"good").digest()),)
    p = pack_manifest(0, entries)
    holder = BlobStore(tmp_path / "holder")
    holder.put_bytes(p.data)
    # the holder's store has "evil" under the hash of "good" (a corrupt or hostile disk)
    bad = holder.path(entries[0].sha256)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"evil")
    mine = BlobStore(tmp_path / "mine")
    fetcher = BlobFetcher(mine, Holders({"h": holder}), lambda: 10.0)  # type: ignore[arg-type]
    from p2pci.daemon.artifacts import materialise

    with pytest.raises(ProtocolError):
        await materialise(fetcher, entries, [], tmp_path / "out")
    assert not mine.has(entries[0].sha256) and not (tmp_path / "out" / "a.txt").exists()


class TooManyFiles(ScriptedRunner):
    """A build whose /out would list more files than a manifest may (1,000,001 entries)."""

    def run(self, spec: Any, source_tar: Path, *, cancel: Any, on_log: Any = None) -> BuildResult:
        r = super().run(spec, source_tar, cancel=cancel, on_log=on_log)
        many = (r.manifest[0],) * (MAX_MANIFEST_ENTRIES + 1)  # one object, many references: cheap
        return BuildResult(r.status, r.exit_code, many, r.digest, r.log_path, r.out_dir, r.duration_s)


async def test_a_result_beyond_the_manifest_limits_is_declined_not_looped_on(tmp_path: Path) -> None:
    """issue 20, the old failure: a result too big to report left the worker REVEALED with nothing
    published, until the job EXPIRED. Now the worker declines once with reason `outputs`, and
    publishes no commit and no reveal."""
    async with open_cluster(tmp_path, 2, runners=[None, TooManyFiles()]) as c:
        observer, builder = c.nodes
        job = await c.publish(observer, replicas=1, quorum=1, workers=[builder.peer_id])
        jid = bytes.fromhex(job)
        with trio.fail_after(30):
            while True:
                view = observer.board.job(jid)
                obj = observer.job_obj(view) if view is not None and view.offer is not None else None
                if obj is not None and obj["declines"]:
                    break
                await observer.changed.wait()
        (decline,) = obj["declines"]
        assert decline["reason"] == "outputs"
        assert (
            f"{MAX_MANIFEST_ENTRIES + 1} output files exceed the limit of {MAX_MANIFEST_ENTRIES}"
            in decline["detail"]
        )
        assert builder.machine.jobs[jid].phase == "GAVE_UP"
        view = builder.board.job(jid)
        assert view is not None and not view.commits and not view.reveals
        assert (
            obj["verdict"] == "PENDING"
        )  # the publisher replaces it (nobody else here): no verdict, no loop
