"""A build across three NATs: daemons in namespaces, a public relay, real Docker.

    internet (100.64.0.0/24, a bridge) ── relay/bootstrap 100.64.0.10  (`daemon --relay`)
      ├─ NAT A (home router: drops unsolicited) ── pub      (publisher, no build)
      ├─ NAT B (home router: drops unsolicited) ── w1, w2   (workers)
      └─ NAT C (symmetric, random ports, 1 % loss) ── w3    (worker)

Uplinks get 10–25 ms one-way delay (user-space wires), so two NATed sites
are 60–130 ms RTT apart through the relay. No node behind a NAT can be
dialled directly from outside: each reserves a slot on the relay and
announces its circuit address. The job (3 replicas, quorum 3) must reach
REPRODUCED on every node; w1 and w2 find each other by mDNS and connect
directly; the publisher and one LAN B worker hole-punch (DCUtR); w3 stays
relayed and fetches its source over the relay. The test prints how each
node reaches each other (direct / hole-punched / relayed) and the relay
timings. Then LAN B is cut off for 30 s and must converge after the heal,
and finally the relay is killed and the hole-punched worker must still
build a job for the publisher.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.e2e.mesh import remove_containers, write_project
from tests.netns.mesh import NetnsMesh
from tests.netns.topo import Topology

SCRIPT = "cp /build/src/hello.txt /out/hello.txt && echo built"


@pytest.fixture
async def world() -> AsyncIterator[tuple[Topology, NetnsMesh, Path]]:
    root = Path(tempfile.mkdtemp(prefix="p2pci-nn-", dir="/tmp"))
    ok = False
    with Topology() as topo:
        mesh = NetnsMesh(root / "m")
        try:
            yield topo, mesh, root
            ok = True
        finally:
            await mesh.stop_all()
            remove_containers(root)
    if ok:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\n[netns] daemon homes and logs kept in {root}")


async def snapshot(mesh: NetnsMesh) -> dict[str, dict[str, str]]:
    """name -> {peer name: via} for every running node."""
    names = {n.peer_id: n.name for n in mesh.nodes.values()}
    out: dict[str, dict[str, str]] = {}
    for n in mesh.running:
        out[n.name] = {names.get(p["peer_id"], p["peer_id"][-6:]): p["via"] for p in await mesh.peers(n)}
    return out


async def test_build_across_three_nats(world: tuple[Topology, NetnsMesh, Path], busybox_image: str) -> None:
    topo, mesh, root = world
    relay_h = topo.public("relay", "100.64.0.10", delay_ms=10)
    nat_a = topo.nat("nata", "100.64.0.1", "10.1.0.0/24", drop_unsolicited=True, delay_ms=20)
    nat_b = topo.nat("natb", "100.64.0.2", "10.2.0.0/24", drop_unsolicited=True, delay_ms=20)
    nat_c = topo.nat("natc", "100.64.0.3", "10.3.0.0/24", symmetric=True, delay_ms=25, loss=0.01)
    hosts = {
        "pub": topo.lan_host(nat_a, "pub"),
        "w1": topo.lan_host(nat_b, "w1"),
        "w2": topo.lan_host(nat_b, "w2"),
        "w3": topo.lan_host(nat_c, "w3"),
    }
    net_cfg = {"net": {"relay_refresh_s": 20}}
    t0 = time.monotonic()
    with trio.fail_after(240):
        relay = await mesh.add_in(relay_h, "relay", build=False, flags=["--relay"])
        pub = await mesh.add_in(hosts["pub"], "pub", build=False, bootstrap=[relay], config=net_cfg)
        workers = []
        for name in ("w1", "w2", "w3"):
            workers.append(await mesh.add_in(hosts[name], name, bootstrap=[relay], config=net_cfg))
        t_started = time.monotonic() - t0

        # Every NATed node holds a relay slot and the relay knows its circuit address.
        async def reserved() -> bool:
            for n in (pub, *workers):
                ident = (await mesh.cli(n, "id", "--json")).json()
                if not any("/p2p-circuit/" in a for a in ident["addrs"]):
                    return False
            return True

        from p2pci.testing.mesh import wait_for

        await wait_for(reserved, "relay reservations")
        t_reserved = time.monotonic() - t0

        project = write_project(
            root / "p", "natjob", image=busybox_image, script=SCRIPT, replicas=3, quorum=3
        )
        t1 = time.monotonic()
        res = await mesh.cli(pub, "publish", str(project), "--json")
        job = res.json()["job"]
        view = await mesh.wait_verdict(job)
        t_verdict = time.monotonic() - t1
        views = await snapshot(mesh)

        async def punched() -> dict[str, dict[str, str]] | None:
            v = await snapshot(mesh)
            return v if v["pub"].get("w1") == "hole-punched" or v["pub"].get("w2") == "hole-punched" else None

        t2 = time.monotonic()
        views = await wait_for(punched, "a hole punch between LAN A and LAN B")
        t_punch = time.monotonic() - t2
        stats = {n.name: await mesh.net_stats(n) for n in mesh.running}

    print(f"\n[netns] 5 daemons started one after the other in {t_started:.1f} s")
    print(f"[netns] all 4 NATed nodes reserved a relay slot {t_reserved:.1f} s after the relay started")
    print(f"[netns] publish -> REPRODUCED on every node: {t_verdict:.1f} s")
    print(f"[netns] hole punch A<->B seen {t_punch:.1f} s after the verdict")
    print("[netns] connections (node: peer=via):")
    for name, peers in views.items():
        print(f"  {name:6} " + "  ".join(f"{p}={v}" for p, v in sorted(peers.items())))
    for name, s in stats.items():
        res, dials = s.get("relay_reserved", 0) + s.get("relay_renewed", 0), s.get("relay_dials", 0)
        print(
            f"[netns] {name:6} reservations {res} (mean {s.get('relay_reserve_ms_total', 0) / max(1, res):.0f} ms)"
            f"  relayed dials {dials} (mean {s.get('relay_dial_ms_total', 0) / max(1, dials):.0f} ms)"
            f"  blobs fetched {s.get('blob_fetched', 0)}"
        )

    assert view["verdict"] == "REPRODUCED"
    voters = {w for g in view.get("groups", []) for w in g["workers"]}
    assert {w.peer_id for w in workers} <= voters, (voters, view)
    # No NATed node can dial another site directly: what they share goes via the relay.
    assert views["w3"].get("pub") == "relayed", views
    # mDNS: the two workers on LAN B found each other and connected directly.
    assert views["w1"].get("w2") == "direct" and views["w2"].get("w1") == "direct", views
    assert stats["w3"].get("relay_dials", 0) >= 1 and stats["w3"].get("blob_fetched", 0) >= 1
    assert "relay_dials" not in stats["relay"]  # the relay dials nobody through itself
    assert all(views[n.name].get("relay") == "direct" for n in (pub, *workers))

    # Partition: LAN B's uplink drops every packet for 30 s. A job published
    # meanwhile (traditional: w3 alone) completes on the rest of the mesh;
    # after the heal, w1 and w2 converge on the same job objects (no fact lost).
    w1, w2, w3 = workers
    with trio.fail_after(150):
        topo.partition(nat_b)
        t_cut = trio.current_time()
        p2 = write_project(root / "p2", "natjob2", image=busybox_image, script=SCRIPT, replicas=1, quorum=1,
                           workers=[w3.peer_id])  # fmt: skip
        job2 = (await mesh.cli(pub, "publish", str(p2), "--json")).json()["job"]
        during = await mesh.wait_verdict(job2, [relay, pub, w3])
        assert await mesh.show(w1, job2) is None  # LAN B really is cut off
        await trio.sleep_until(t_cut + 30)  # the outage lasts 30 s: a scenario, not a wait for a condition
        topo.heal(nat_b)
        t_heal = time.monotonic()
        after = await mesh.wait_verdict(job2)  # every node, identical objects
        t_converge = time.monotonic() - t_heal
        again = await mesh.wait_verdict(job)
    print(f"[netns] partition of LAN B for 30 s: job2 {during['verdict']} without it; "
          f"LAN B converged {t_converge:.1f} s after the heal")  # fmt: skip
    assert after["verdict"] == "REPRODUCED" and after == during
    assert again == view

    # The relay dies. The publisher and the worker it hole-punched to keep
    # working: a job for that worker completes over the direct path (w2 hears
    # of it over its mDNS link to w1); w3 (symmetric NAT, relay only) cannot.
    punched_w = (
        w1 if views["pub"].get("w1") == "hole-punched" or views["w1"].get("pub") == "hole-punched" else w2
    )
    other_w = w2 if punched_w is w1 else w1
    with trio.fail_after(90):
        await mesh.kill(relay)
        p3 = write_project(root / "p3", "natjob3", image=busybox_image, script=SCRIPT, replicas=1, quorum=1,
                           workers=[punched_w.peer_id])  # fmt: skip
        t3 = time.monotonic()
        job3 = (await mesh.cli(pub, "publish", str(p3), "--json")).json()["job"]
        final3 = await mesh.wait_verdict(job3, [pub, punched_w, other_w])
        t_norelay = time.monotonic() - t3
        final_views = await snapshot(mesh)
    print(
        f"[netns] relay killed: job3 on {punched_w.name} {final3['verdict']} in {t_norelay:.1f} s without the relay"
    )
    print("  " + "  ".join(f"{p}={v}" for p, v in sorted(final_views["pub"].items())))
    assert final3["verdict"] == "REPRODUCED"
    assert await mesh.show(w3, job3) is None  # w3 had only the relay


async def test_reachability_found_out_by_dialback(world: tuple[Topology, NetnsMesh, Path]) -> None:
    """Nodes listening on 0.0.0.0 (the address says nothing) ask the relay to dial them back."""
    topo, mesh, _ = world
    relay_h = topo.public("relay", "100.64.0.10", delay_ms=10)
    srv_h = topo.public("srv", "100.64.0.20", delay_ms=10)
    home = topo.nat("home", "100.64.0.1", "10.1.0.0/24", drop_unsolicited=True, delay_ms=20)
    bare = topo.nat("bare", "100.64.0.2", "10.2.0.0/24", delay_ms=20)
    anyaddr = {"listen": ["/ip4/0.0.0.0/tcp/4001"]}
    with trio.fail_after(120):
        relay = await mesh.add_in(relay_h, "relay", build=False, flags=["--relay"])
        nodes = {
            "srv": await mesh.add_in(srv_h, "srv", build=False, bootstrap=[relay], config=anyaddr),
            "home": await mesh.add_in(
                topo.lan_host(home, "h1"), "home", build=False, bootstrap=[relay], config=anyaddr
            ),
            "bare": await mesh.add_in(
                topo.lan_host(bare, "h2"), "bare", build=False, bootstrap=[relay], config=anyaddr
            ),
        }

        async def decided() -> dict[str, dict[str, int]] | None:
            stats = {name: await mesh.net_stats(n) for name, n in nodes.items()}
            if all(s.get("reach_public", 0) + s.get("reach_private", 0) for s in stats.values()):
                return stats
            return None

        from p2pci.testing.mesh import wait_for

        stats = await wait_for(decided, "every node to find out its reachability")

        async def circuits(n: object) -> list[str]:
            ident = (await mesh.cli(nodes[str(n)], "id", "--json")).json()
            return [a for a in ident["addrs"] if "/p2p-circuit/" in a]

        async def home_nodes_reserved() -> bool:
            return bool(await circuits("home")) and bool(await circuits("bare"))

        await wait_for(home_nodes_reserved, "the NATed nodes to reserve a relay slot")
    print(
        "\n[netns] dial-back verdicts: "
        + ", ".join(f"{k}={'public' if v.get('reach_public') else 'private'}" for k, v in stats.items())
    )
    assert stats["srv"].get("reach_public") == 1 and not await circuits("srv")
    assert stats["home"].get("reach_private") == 1 and stats["bare"].get("reach_private") == 1
    relay_stats = await mesh.net_stats(relay)
    assert relay_stats.get("dialback_served", 0) >= 3
