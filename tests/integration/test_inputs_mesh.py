"""Pinned inputs through a mesh: in-process nodes on a memory network with the real Docker runner.

The publisher's node checks the inputs blob is in its store and pins it in the offer; every
worker fetches it by hash like the source, and the runner mounts it read-only at /build/inputs.
A tampered blob (same size, other bytes) is refused by every worker, naming the hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.config import WorkerSettings
from p2pci.core.errors import LocalError
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.dockerutil import client
from p2pci.runner.images import resolve_image
from p2pci.runner.inputs import file_sha256, pack_dir
from p2pci.runner.source import pack_source
from p2pci.store.blobs import BlobStore
from p2pci.testing.cluster import open_cluster, wait_any_change, with_timing

pytestmark = [pytest.mark.docker]

TIMING = with_timing(lease_ms=20_000, commit_slack_ms=20_000, blob_timeout_ms=10_000)
COMMAND = ["sh", "-c", "cat /build/inputs/dep.txt > /out/used.txt; ls /build/inputs > /out/ls.txt"]
LIMITS = {"timeout_s": 60, "memory_mb": 128, "cpus": 1, "pids": 64, "out_mb": 4}


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[tuple[str, list[DockerRunner]]]:
    busybox = resolve_image("busybox")
    tag = uuid.uuid4().hex
    rs = [
        DockerRunner(work_dir=tmp_path / f"work{i}", holder_image=busybox, labels={"p2pci.test": tag})
        for i in range(2)
    ]
    yield busybox, rs
    for r in rs:
        r.close()
    assert client().containers.list(all=True, filters={"label": f"p2pci.test={tag}"}) == []


def _source(tmp_path: Path, store: BlobStore) -> dict[str, Any]:
    d = tmp_path / "src"
    d.mkdir()
    (d / "README").write_text("a project whose build reads only its pinned inputs\n")
    pack_source(d, tmp_path / "src.tar")
    ref = store.put_file(tmp_path / "src.tar")
    return {"sha256": ref.sha256.hex(), "size": ref.size}


def _inputs(tmp_path: Path) -> Path:
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "dep.txt").write_text("pinned dependency\n")
    pack_dir(d, tmp_path / "inputs.tar")
    return tmp_path / "inputs.tar"


async def test_pinned_inputs_reach_every_worker_and_the_job_reproduces(
    tmp_path: Path, runners: tuple[str, list[DockerRunner]]
) -> None:
    busybox, rs = runners
    tar = _inputs(tmp_path)
    sha, size = file_sha256(tar)
    async with open_cluster(tmp_path, 3, runners=[None, *rs], timing=TIMING, worker=WorkerSettings(slots=1)) as c:  # type: ignore[list-item]
        pub = c.nodes[0]
        src = _source(tmp_path, pub.blobs)
        inputs = {"sha256": sha.hex(), "size": size}
        prov = {"commit": "a" * 40, "tree": "b" * 40, "recipe": "busybox"}
        # not in the publisher's store: refused, nothing offered
        with pytest.raises(LocalError, match=f"inputs tarball {sha.hex()}.*not in this node's blob store"):
            await c.publish(
                pub, replicas=2, quorum=2, image=busybox, command=COMMAND, limits=LIMITS, source=src, inputs=inputs
            )
        assert pub.machine.job_list(pub.now()) == []
        pub.blobs.put_file(tar)
        with trio.fail_after(90):
            job = await c.publish(
                pub, replicas=2, quorum=2, image=busybox, command=COMMAND, limits=LIMITS, source=src, inputs=inputs,
                provenance=prov,
            )  # fmt: skip
            (obj,) = await c.wait_verdict(job, [pub])
        assert obj["verdict"] == "REPRODUCED", obj
        p = obj["provenance"]
        assert (p["inputs_sha256"], p["inputs_size"]) == (sha.hex(), size)
        assert (p["commit"], p["tree"], p["image_recipe"], p["image"]) == ("a" * 40, "b" * 40, "busybox", busybox)
        assert p["command"] == COMMAND
        out = tmp_path / "fetched"
        with trio.fail_after(30):
            await pub.control_op("fetch", {"job": job, "out": str(out)})
        assert (out / "used.txt").read_text() == "pinned dependency\n"
        for w in c.nodes[1:]:  # every worker fetched the inputs blob by hash
            assert w.blobs.size(sha) == size


async def test_a_tampered_inputs_blob_is_refused_by_every_worker_naming_the_hash(
    tmp_path: Path, runners: tuple[str, list[DockerRunner]]
) -> None:
    busybox, rs = runners
    tar = _inputs(tmp_path)
    sha, size = file_sha256(tar)
    async with open_cluster(tmp_path, 3, runners=[None, *rs], timing=TIMING, worker=WorkerSettings(slots=1)) as c:  # type: ignore[list-item]
        pub = c.nodes[0]
        src = _source(tmp_path, pub.blobs)
        pub.blobs.put_file(tar)
        blob = pub.blobs.path(sha)
        blob.chmod(0o644)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF  # the same size, other bytes: a publisher (or disk) that lies
        blob.write_bytes(bytes(data))
        with trio.fail_after(90):
            job = await c.publish(
                pub, replicas=2, quorum=2, image=busybox, command=COMMAND, limits=LIMITS, source=src,
                inputs={"sha256": sha.hex(), "size": size},
            )  # fmt: skip
            jid = bytes.fromhex(job)
            workers = c.nodes[1:]
            while not all(jid in w.machine.jobs and w.machine.jobs[jid].phase == "GAVE_UP" for w in workers):
                await wait_any_change(workers)
        for w in workers:
            reason = w.machine.jobs[jid].reason
            assert sha.hex() in reason and "inputs" in reason, reason
            assert not w.blobs.has(sha)  # nothing tampered was stored


def test_max_inputs_mb_makes_an_offer_ineligible() -> None:
    from dataclasses import replace

    from p2pci.config import parse_config
    from p2pci.core.messages import BlobRef
    from p2pci.core.worker import WorkerPolicy, eligible
    from tests.unit.jobgen import key, make_offer

    offer = replace(make_offer(key("publisher")), inputs=BlobRef(b"\x01" * 32, 9 << 20))
    assert eligible(offer, WorkerPolicy()) is None
    reason = eligible(offer, WorkerPolicy(max_inputs_mb=8))
    assert reason is not None and reason.startswith("inputs of 9 MiB exceed 8 MiB")
    assert eligible(replace(offer, inputs=None), WorkerPolicy(max_inputs_mb=1)) is None
    assert parse_config({"worker": {"max_inputs_mb": 8}}).worker.policy().max_inputs_mb == 8
    with pytest.raises(LocalError, match="max_inputs_mb"):
        parse_config({"worker": {"max_inputs_mb": 0}})
