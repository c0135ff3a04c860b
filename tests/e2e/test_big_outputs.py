"""Outputs of any size (issue 20): a build with many output files through a real mesh.

Three daemon processes on loopback (real libp2p, real Docker, busybox): a
publisher that does not build and two workers. The build writes N files, each
with its own content, so every file is a distinct blob. The job must reach
REPRODUCED (the reveal names the manifest blob; before, a manifest inline in
the reveal could not be sealed past ~900 files and the job EXPIRED), and
`fetch` on the non-building publisher must fetch the manifest blob by hash,
check it against the reveal, and fetch and check every file.

`make test` runs 5,000 files; `make test-big` runs 50,000 (marker `big`:
minutes on this machine, see docs/testing.md). Prints the times and the
manifest size.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import trio

from p2pci.core.evidence import load_bundle
from p2pci.core.messages import Reveal
from p2pci.core.results import parse_manifest
from p2pci.store.blobs import BlobStore
from tests.e2e.mesh import Mesh, write_project

# N files with distinct content, 1,000 per directory; busybox sh, no fork per file
SCRIPT = (
    "i=0; while [ $i -lt {n} ]; do d=/out/d$((i / 1000)); "
    '[ -d $d ] || mkdir $d; echo "file $i" > $d/f$i.txt; i=$((i + 1)); done; echo wrote {n}'
)


def expected(n: int) -> dict[str, bytes]:
    return {f"d{i // 1000}/f{i}.txt": f"file {i}\n".encode() for i in range(n)}


async def run_big(mesh: Mesh, busybox_image: str, tmp: Path, n: int, budget_s: int) -> None:
    with trio.fail_after(90):
        pub = await mesh.add("pub", build=False)
        for name in ("w1", "w2"):
            await mesh.add(name, bootstrap=[pub])
        await mesh.wait_connected(minimum=1)
    project = write_project(
        tmp / "p",
        "big",
        image=busybox_image,
        script=SCRIPT.format(n=n),
        replicas=2,
        quorum=2,
        timeout_s=budget_s,
    )
    t0 = time.monotonic()
    with trio.fail_after(budget_s + 120):
        res = await mesh.cli(pub, "publish", str(project), "--wait", "--json", check=False)
    build_s = time.monotonic() - t0
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    final = res.json()
    assert final["verdict"] == "REPRODUCED", final
    (group,) = final["groups"]
    assert len(group["workers"]) == 2
    job = final["job"]

    # fetch on the publisher (it built nothing: the manifest and all n files come over the mesh)
    out = tmp / "out"
    t1 = time.monotonic()
    with trio.fail_after(budget_s * 4):
        r = await mesh.cli(pub, "fetch", job, "--out", str(out), "--json")
    fetch_s = time.monotonic() - t1
    got = r.json()
    assert got["digest"] == final["digest"]
    files = {f["path"]: f for f in got["files"]}
    want = expected(n)
    assert set(files) == set(want)
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted(want)
    for path, content in want.items():
        assert (out / path).read_bytes() == content
        assert files[path]["sha256"] == hashlib.sha256(content).hexdigest()

    # the bundle (facts only) verifies offline; both reveals name the same manifest blob, which
    # the publisher now holds (fetched by hash) and which checks against the reveal
    bundle = tmp / "b.bundle"
    await mesh.cli(pub, "export", job, "-o", str(bundle))
    ver = json.loads((await mesh.cli(pub, "verify", str(bundle), "--json")).stdout)
    assert ver["verdict"] == "REPRODUCED" and ver["bundle"]["complete"] is True
    view = load_bundle(bundle.read_bytes())
    refs = {
        (f.body.manifest, f.body.files)
        for fs in view.reveals.values()
        for f in fs
        if isinstance(f.body, Reveal)
    }
    ((ref, count),) = refs
    assert count == n
    data = BlobStore(pub.home / "blobs").read_bytes(ref.sha256)
    entries = parse_manifest(
        data, sha256=ref.sha256, files=n, exit_code=0, digest=bytes.fromhex(final["digest"])
    )
    assert [e.path for e in entries] == sorted(want)
    size = ref.size
    stats = await pub.call("stats")
    assert stats["manifests_refused"] == {}
    print(
        f"\n[e2e] {n} output files: publish -> REPRODUCED {build_s:.1f} s, fetch (manifest + every file"
        f" checked) {fetch_s:.1f} s, manifest blob {size} bytes ({size / n:.0f} B/file)"
    )


@pytest.mark.timeout(1200)
async def test_5000_output_files_reproduce_and_fetch(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    await run_big(mesh, busybox_image, short_tmp, 5_000, budget_s=300)


@pytest.mark.big
@pytest.mark.timeout(7200)
async def test_50000_output_files_reproduce_and_fetch(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    await run_big(mesh, busybox_image, short_tmp, 50_000, budget_s=1200)
