"""Four daemon processes on loopback (real libp2p, real Docker, busybox image).

publish --wait exits 0 with REPRODUCED, `show --json` is identical on every
node, `fetch` gives files whose hashes match the manifest, `export` + offline
`verify` agree. Prints the publish -> verdict time.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import trio

from tests.e2e.mesh import Mesh, Node, write_project

SCRIPT = "cp /build/src/hello.txt /out/hello.txt && mkdir -p /out/d && echo x > /out/d/x && echo built"


async def start_four(mesh: Mesh) -> list[Node]:
    with trio.fail_after(90):
        boot = await mesh.add("a")
        nodes = [boot]

        async def add(name: str) -> None:
            nodes.append(await mesh.add(name, bootstrap=[boot]))

        async with trio.open_nursery() as n:
            for name in ("b", "c", "d"):
                n.start_soon(add, name)
        await mesh.wait_connected(minimum=1)
    return nodes


async def test_four_daemons_reproduce_fetch_export_verify(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    nodes = await start_four(mesh)
    publisher = nodes[0]
    for n in nodes:  # listen on tcp/0: `id` shows the real port, and so does $HOME/addrs
        ident = (await mesh.cli(n, "id", "--json")).json()
        assert ident["addrs"] and all("/tcp/0/" not in a and a.endswith("/p2p/" + ident["peer_id"]) for a in ident["addrs"])
        assert set((n.home / "addrs").read_text().split()) == set(ident["addrs"])
    peers = (await mesh.cli(publisher, "peers", "--json")).json()
    assert peers and all(set(p) == {"peer_id", "addrs", "via"} and p["via"] == "direct" for p in peers)
    project = write_project(short_tmp / "p", "hello", image=busybox_image, script=SCRIPT, replicas=3, quorum=2)
    t0 = time.monotonic()
    with trio.fail_after(180):
        res = await mesh.cli(publisher, "publish", str(project), "--wait", "--json", check=False)
    elapsed = time.monotonic() - t0
    print(f"\n[e2e] publish -> verdict with 4 daemons: {elapsed:.1f} s")
    assert res.returncode == 0, (res.stdout, res.stderr)
    final = res.json()
    assert final["verdict"] == "REPRODUCED" and final["quorum"] == 2 and final["replicas"] == 3
    job = final["job"]

    # every node converges on the same job object (wait until each has every reveal)
    with trio.fail_after(60):
        while True:
            views = []
            for n in nodes:
                r = await mesh.cli(n, "show", job[:10], "--json", check=False)
                views.append(r.json() if r.returncode == 0 else None)
            if all(v == views[0] for v in views) and views[0] is not None and views[0]["verdict"] == "REPRODUCED":
                break
            await trio.sleep(0.5)
    assert views[0]["digest"] == final["digest"]

    # fetch: files whose sha256 match the agreed manifest
    out = short_tmp / "out"
    r = await mesh.cli(nodes[3], "fetch", job, "--out", str(out))
    listed = dict(line.split("  ", 1)[::-1] for line in r.stdout.splitlines())
    assert set(listed) == {"hello.txt", "d/x"}
    for path, sha in listed.items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == sha
    assert (out / "hello.txt").read_text() == "hello from hello\n"

    # logs of the voters
    r = await mesh.cli(nodes[1], "logs", job)
    assert "built" in r.stdout

    # export, then verify offline (no daemon involved)
    bundle = short_tmp / "bundle.p2pci"
    await mesh.cli(nodes[2], "export", job, "-o", str(bundle))
    r = await mesh.cli(short_tmp / "nohome", "verify", str(bundle), "--json", check=False)
    assert r.returncode == 0, r.stderr
    offline = json.loads(r.stdout.strip().splitlines()[-1])
    assert offline["verdict"] == "REPRODUCED" and offline["digest"] == final["digest"]
    assert offline["groups"] == views[0]["groups"]
