"""Adversaries: test-only peer processes (tests/e2e/adversary.py) in a real mesh.

They join like any node and sign their own facts with `p2pci.core`:

* a liar reveals a wrong digest, an equivocator two, a copier copies the
  honest digest after the reveals: none of them claimed, so no node stores
  their commits and reveals (admission, docs/protocol.md §4.8: refused as
  `unclaimed` and counted) and no `select` could name them anyway (the
  selected-worker attacks are in tests/e2e/test_trust.py);
* forged signatures, oversize and malformed messages are dropped and
  counted, and every daemon stays up with the right verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.e2e.mesh import Adversary, Mesh, Node, publish_job, start_adversary, wait_for, write_project

BUILD = "cp /build/src/hello.txt /out/hello.txt"


async def honest_mesh(mesh: Mesh, workers: int) -> tuple[Node, list[Node]]:
    with trio.fail_after(90):
        boot = await mesh.add("boot", build=False)
        ws = [await mesh.add(f"w{i}") for i in range(1, workers + 1)]
        await mesh.wait_connected()
    return boot, ws


async def wait_log(adv: Adversary, text: str) -> None:
    async def logged() -> bool:
        return text in adv.log_text()

    await wait_for(logged, f"{adv.name} to log {text!r}")


async def dropped(node: Node) -> int:
    """How many invalid messages the node's network layer rejected so far (`stats` op)."""
    stats = await node.call("stats")
    net = stats.get("net") if isinstance(stats, dict) else None
    if not isinstance(net, dict):
        raise AssertionError(f"stats has no net counters: {stats!r}"[:2000])
    return int(net.get("rejected", 0))


async def test_liar_equivocator_copier(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    boot, workers = await honest_mesh(mesh, 3)
    honest = sorted(w.peer_id for w in workers)
    with trio.fail_after(60):
        liar = await start_adversary(mesh, "liar", "liar")
        equivocator = await start_adversary(mesh, "equivocator", "equivocator")
        wait = [a for w in workers for a in ("--wait-for", w.peer_id)]
        copier = await start_adversary(mesh, "copier", "copier", *wait)

    project = write_project(short_tmp, "contested", image=busybox_image, script=BUILD, replicas=3, quorum=2)
    job = await publish_job(mesh, boot, project)

    with trio.fail_after(60):
        await wait_log(liar, "liar: revealed")
        await wait_log(equivocator, "equivocator: revealed twice")
        await wait_log(copier, "copier: copied")

    hostile = {liar.peer_id, equivocator.peer_id, copier.peer_id}

    def settled(view: dict[str, Any]) -> bool:
        return not view["missing"]  # every selected worker that owes a reveal has revealed

    async def refused_all() -> bool:
        # 8 facts: the liar's commit and reveal, the equivocator's 2 + 2, the copier's 1 + 1
        status = await boot.call("status")
        return int(status["quotas"]["refused"]["unclaimed"]) >= 8

    with trio.fail_after(60):
        view = await mesh.wait_verdict(job, check=settled)
        await wait_for(refused_all, "boot to refuse the 8 unclaimed commits and reveals")

    assert view["verdict"] == "REPRODUCED", view
    winner = view["groups"][0]
    assert winner["digest"] == view["digest"]
    assert sorted(winner["workers"]) == honest, view
    # none of them claimed, so no node holds their votes (not even as ignored ones): the liar's
    # digest is no group, the equivocation is nobody's, the copy is not there; a *selected* liar is
    # a dissenter: tests/e2e/test_trust.py (`early`)
    assert len(view["groups"]) == 1, view
    assert not {i["worker"] for i in view["ignored"]} & hostile, view
    assert view["dissenters"] == [] and view["equivocators"] == [], view
    assert all(n.alive for n in mesh.nodes.values()), "a daemon died"


async def test_garbage_is_dropped_and_counted(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    boot, workers = await honest_mesh(mesh, 2)
    victim = workers[0]
    with trio.fail_after(60):
        garbage = await start_adversary(mesh, "garbage", "garbage", "--victim", victim.peer_id)
    before = {n.name: await dropped(n) for n in mesh.running}

    project = write_project(short_tmp, "target", image=busybox_image, script=BUILD, replicas=2, quorum=2)
    job = await publish_job(mesh, boot, project)
    with trio.fail_after(60):
        await wait_log(garbage, "garbage: sent")
    sent = int(garbage.log_text().split("garbage: sent ")[1].split()[0])
    assert sent >= 10

    with trio.fail_after(120):
        view = await mesh.wait_verdict(job)
    assert view["verdict"] == "REPRODUCED", view
    assert sorted(view["groups"][0]["workers"]) == sorted(w.peer_id for w in workers)
    # The forged reveal "by" the victim was not taken for the victim's: no equivocation, no dissent.
    assert view["equivocators"] == [] and view["dissenters"] == [] and view["ignored"] == [], view

    # Every daemon is up, answers, and counted the garbage it received.
    async def counted() -> bool:
        for n in mesh.running:
            if await dropped(n) - before[n.name] < 8:
                return False
        return True

    with trio.fail_after(30):
        await wait_for(counted, "every daemon to count the garbage it got")
    assert all(n.alive for n in mesh.nodes.values()), "a daemon died"
    for n in mesh.running:
        assert (await n.call("id"))["peer_id"] == n.peer_id
