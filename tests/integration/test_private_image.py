"""Issue 14: a worker never runs a stranger's command in a private local image (real Docker).

A "private" image is loaded into the real engine (a layer with a secret file, no p2pci recipe
label: what a donor's own image looks like). A publisher's offer names its ID with no archive.
The selected worker declines with the reason `image` (a signed decline fact) and its runner is
never called. Controls: the same offer is built by a worker whose donor lists the image in
`[worker] images`, and an offer naming p2pci's recipe-built busybox (no archive) is built too.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from p2pci.daemon.image_cache import DockerImages
from p2pci.runner.images import image_exists, import_image, remove_image, resolve_image, write_image_archive
from p2pci.testing.cluster import ScriptedRunner, open_cluster

pytestmark = pytest.mark.docker


@pytest.fixture
def private_image(tmp_path: Path) -> Iterator[str]:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        data = f"donor's secret {os.urandom(8).hex()}\n".encode()  # a fresh image ID per run
        ti = tarfile.TarInfo("secret.txt")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    archive = tmp_path / "image.tar"
    image_id = write_image_archive(layer, archive, labels={}, tag=None)
    import_image(archive, expect=image_id)
    archive.unlink()
    try:
        yield image_id
    finally:
        remove_image(image_id)


def job_args(image: str, worker: str) -> dict[str, object]:
    return {"image": image, "workers": [worker], "replicas": 1, "quorum": 1}


async def test_offer_naming_a_private_local_image_is_declined(tmp_path: Path, private_image: str) -> None:
    busybox = await trio.to_thread.run_sync(resolve_image, "busybox")
    refusing, listing = ScriptedRunner(), ScriptedRunner()
    async with open_cluster(tmp_path, 3, runners=[None, refusing, listing]) as c:
        pub, w1, w2 = c.nodes
        for w in (w1, w2):
            w.images = w.builds.images = DockerImages()  # type: ignore[union-attr]
        w2.builds.listed_images = frozenset({private_image})  # type: ignore[union-attr]  # [worker] images lists it

        with trio.fail_after(60):
            job = await c.publish(pub, project="steal", **job_args(private_image, w1.peer_id))
            (obj,) = await c.wait_verdict(job, [pub])
        assert obj["verdict"] == "EXPIRED", obj
        assert refusing.runs == 0  # no container, no command: nothing ran in the private image
        (row,) = [w for w in obj["workers"] if w["worker"] == w1.peer_id]
        assert row["phase"] == "declined" and row["reason"] == "image", row
        assert private_image in row["detail"] and "[worker] images" in row["detail"]
        assert [d[1] for d in pub.machine.verdict(bytes.fromhex(job), pub.now()).declines] == ["image"]

        with trio.fail_after(60):
            listed = await c.publish(pub, project="listed", **job_args(private_image, w2.peer_id))
            (obj,) = await c.wait_verdict(listed, [pub])
        assert obj["verdict"] == "REPRODUCED" and listing.runs == 1, obj

        with trio.fail_after(60):
            recipe = await c.publish(pub, project="recipe", **job_args(busybox, w1.peer_id))
            (obj,) = await c.wait_verdict(recipe, [pub])
        assert obj["verdict"] == "REPRODUCED" and refusing.runs == 1, obj
    assert image_exists(private_image)  # the donor's image is the donor's: never removed


async def test_the_publishers_archive_is_loaded_run_and_removed_by_gc(tmp_path: Path, private_image: str) -> None:
    """The same private image, sent as the publisher's archive: the worker loads it (it is not in the
    engine any more), builds, and garbage collection removes the image p2pci loaded once no job
    needs it."""
    from dataclasses import replace

    from p2pci.config import StorageSettings

    runner = ScriptedRunner()
    async with open_cluster(tmp_path, 2, runners=[None, runner]) as c:
        pub, w = c.nodes
        pub.images = DockerImages()  # exports the archive at publish
        w.images = w.builds.images = DockerImages()  # type: ignore[union-attr]
        await w.set_control("paused")  # claims nothing until the image is gone from the engine
        with trio.fail_after(60):
            job = await c.publish(pub, project="archived", **job_args(private_image, w.peer_id))
        assert pub.board.job(bytes.fromhex(job)).offer_msg.image.archive is not None  # type: ignore[union-attr]
        await trio.to_thread.run_sync(remove_image, private_image)
        assert not image_exists(private_image)
        await w.set_control("open")
        with trio.fail_after(60):
            (obj,) = await c.wait_verdict(job, [pub])
        assert obj["verdict"] == "REPRODUCED" and runner.runs == 1, obj
        assert image_exists(private_image)  # loaded from the archive, checked against the offer's ID
        w.config = replace(w.config, storage=StorageSettings(retention_days=0))
        rep = await w.gc_now()
        assert rep.images_removed == [private_image]
        assert not image_exists(private_image)
