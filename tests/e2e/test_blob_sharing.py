"""Blobs from anyone who holds them, with daemon processes, real libp2p on loopback and real Docker
builds: three selected workers share the source piece by piece (docs/protocol.md §8.4), so the
publisher uploads it about once instead of three times (`status --json` → `blobs.served_bytes`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from tests.e2e.mesh import Mesh, publish_job, write_project
from tests.e2e.test_faults import QUICK, start

SOURCE_BYTES = 20 << 20  # above PREFETCH_MAX (16 MiB): fetched once selected, not while claiming


def _source_size(home: Path) -> int:
    """The largest blob in a node's store: the source tarball the publisher packed."""
    return max(p.stat().st_size for p in (home / "blobs").glob("??/*"))


@pytest.mark.slow
async def test_three_workers_share_the_source_so_the_publisher_uploads_it_about_once(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    with trio.fail_after(90):
        (boot,) = await start(mesh, "boot", build=False)
        workers = await start(mesh, "w1", "w2", "w3")
        await mesh.wait_connected()
    project = write_project(short_tmp, "shared", image=busybox_image, script=QUICK, replicas=3, quorum=3)
    (project / "big.bin").write_bytes(os.urandom(SOURCE_BYTES))  # random: the tar stays this large
    job = await publish_job(mesh, boot, project)
    with trio.fail_after(240):
        view = await mesh.wait_verdict(job)
    assert view["verdict"] == "REPRODUCED", view
    size = _source_size(boot.home)
    assert size >= SOURCE_BYTES
    served = {n.name: (await mesh.cli(n, "status", "--json")).json()["blobs"]["served_bytes"]
              for n in [boot, *workers]}
    print(f"source {size} B; served: " + ", ".join(f"{k} {v / size:.2f} x" for k, v in served.items()))
    # without sharing the publisher serves 3 x the source; with it, each piece about once
    assert size <= served["boot"] < 1.5 * size, served
    assert sum(served[w.name] for w in workers) >= size, served  # the rest came from the workers
