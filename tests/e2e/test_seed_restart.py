"""The publisher's selection seed survives a real process crash (protocol §5 step 1: the seed
is stored before the offer goes out).

Daemon processes on loopback and real Docker builds: the publisher is killed with SIGKILL
right after `publish` returned, before any worker exists (so before any `select`); it is
started again, then the workers join. The restarted publisher must select with the seed
its offer committed to: a fresh seed would make every node ignore its rounds (`seed does
not match the offer's select_commit`) and the job would end EXPIRED.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from tests.e2e.mesh import Mesh, publish_job, wait_for, write_project

QUICK = "cp /build/src/hello.txt /out/hello.txt"


async def test_publisher_killed_after_offering_selects_with_the_committed_seed(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    with trio.fail_after(90):
        boot = await mesh.add("boot", build=False)
        pub = await mesh.add("pub", build=False)
        await mesh.wait_connected()
    project = write_project(short_tmp, "seeded", image=busybox_image, script=QUICK, replicas=2, quorum=2)
    job = await publish_job(mesh, pub, project)

    async def boot_has_offer() -> bool:
        return await mesh.show(boot, job) is not None

    with trio.fail_after(60):  # the offer reached the rest of the mesh
        await wait_for(boot_has_offer, "the offer to reach the boot node", node=boot)
    await mesh.kill(pub, signal.SIGKILL)  # no chance to flush anything after the offer
    assert not pub.alive
    before = await mesh.show(boot, job)
    assert before is not None and before["rounds"] == [], "the publisher selected before it was killed"

    with trio.fail_after(60):
        await mesh.start(pub)
        # the workers dial the restarted publisher at start: it is the only node holding the
        # source (a worker that asks only the others declines the job with reason `source`)
        w1 = await mesh.add("w1", bootstrap=[pub, boot])
        w2 = await mesh.add("w2", bootstrap=[pub, boot])
        await mesh.wait_connected()
    with trio.fail_after(180):
        view = await mesh.wait_verdict(job, [boot, pub, w1, w2])
    assert view["verdict"] == "REPRODUCED", view
    assert view["ignored_selects"] == [], view  # every round the restarted publisher signed is valid
    assert view["rounds"] and view["rounds"][0]["round"] == 0
    assert sorted(view["groups"][0]["workers"]) == sorted([w1.peer_id, w2.peer_id])
