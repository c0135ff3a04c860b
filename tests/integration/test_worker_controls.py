"""Donor controls on an in-process cluster: `worker pause | resume | drain` through the control
socket (and the CLI), the schedule keeping new work out, and a paused claim declined at once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from p2pci.cli.main import cli
from p2pci.config import WorkerSettings
from p2pci.control.client import acontrol_call
from p2pci.core.errors import LocalError
from p2pci.testing.cluster import ScriptedRunner, open_cluster, wait_any_change


async def run_cli(home: Path, *args: str) -> Result:
    return await trio.to_thread.run_sync(lambda: CliRunner().invoke(cli, ["--home", str(home), *args]))


async def test_pause_takes_no_work_and_resume_takes_it_again(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        pub, w1, w2 = c.nodes
        r = await run_cli(w1.paths.home, "worker", "pause")
        assert r.exit_code == 0 and r.stdout.startswith("worker paused (paused by the donor); 0 build(s) running")
        info = await acontrol_call(w1.paths.home, "status")
        assert info["node"]["accepting"] == "paused"
        with trio.fail_after(20):
            job = await c.publish(pub, replicas=2, quorum=2)
            # w2 claims; w1 (paused) does not
            jid = bytes.fromhex(job)
            while not (v := pub.board.job(jid)) or w2.me not in v.claims:
                await wait_any_change(c.nodes)
            # on a loaded machine w2 may claim before the offer has even reached w1
            while jid not in w1.machine.jobs:
                await wait_any_change(c.nodes)
        assert w1.me not in pub.board.job(jid).claims  # type: ignore[union-attr]
        assert w1.machine.jobs[jid].phase == "WAITING"
        r = await run_cli(w1.paths.home, "worker", "resume", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["accepting"] == "open"
        with trio.fail_after(20):
            (final,) = await c.wait_verdict(job, [pub])
        assert final["verdict"] == "REPRODUCED"
        assert sorted(g for grp in final["groups"] for g in grp["workers"]) == sorted([w1.peer_id, w2.peer_id])


async def test_a_paused_selected_claim_is_declined_and_replaced(tmp_path: Path) -> None:
    gate = threading.Event()
    runners = [None, ScriptedRunner(gate=gate), ScriptedRunner(gate=gate), ScriptedRunner(gate=gate)]
    async with open_cluster(tmp_path, 4, runners=runners) as c:
        pub = c.nodes[0]
        try:
            with trio.fail_after(20):
                job = await c.publish(pub, replicas=2, quorum=2)
                jid = bytes.fromhex(job)
                # pause a worker as soon as it has claimed, before its settle ends
                while True:
                    claimed = [n for n in c.nodes[1:] if (wj := n.machine.jobs.get(jid)) and wj.phase == "CLAIMED"]
                    if claimed:
                        break
                    await wait_any_change(c.nodes)
                victim = claimed[0]
                await victim.control_op("worker_control", {"action": "pause"})
                while not (v := pub.board.job(jid)) or victim.me not in v.declines:
                    await wait_any_change(c.nodes)
            gate.set()
            with trio.fail_after(20):
                (final,) = await c.wait_verdict(job, [pub])
        finally:
            gate.set()
    assert final["verdict"] == "REPRODUCED"
    row = {w["worker"]: w for w in final["workers"]}[victim.peer_id]
    assert row["phase"] == "declined" and row["reason"] == "paused"
    assert victim.peer_id not in {w for g in final["groups"] for w in g["workers"]}


async def test_drain_finishes_the_build_then_sets_drained(tmp_path: Path) -> None:
    gate = threading.Event()
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(gate=gate), ScriptedRunner()]) as c:
        pub, slow, _fast = c.nodes
        try:
            with trio.fail_after(20):
                job = await c.publish(pub, replicas=2, quorum=2)
                while not slow.builds or not slow.builds.running:  # type: ignore[union-attr]
                    await wait_any_change(c.nodes)
            r = await run_cli(slow.paths.home, "worker", "drain")
            assert r.exit_code == 0 and "1 build(s) running: the daemon stops once they are done" in r.stdout
            assert not slow.drained.is_set()
            r = await run_cli(slow.paths.home, "worker", "resume")
            assert r.exit_code == 2 and "draining" in r.stderr
            gate.set()
            with trio.fail_after(20):
                await slow.drained.wait()
                (final,) = await c.wait_verdict(job, [pub])
        finally:
            gate.set()
        assert final["verdict"] == "REPRODUCED"  # the drained worker's result was committed and revealed
        assert slow.peer_id in final["groups"][0]["workers"]


async def test_an_observer_cannot_be_paused_and_bad_actions_are_refused(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, ScriptedRunner()]) as c:
        r = await run_cli(c.nodes[0].paths.home, "worker", "pause")
        assert r.exit_code == 2 and "does not build" in r.stderr
        with pytest.raises(LocalError, match="pause, resume or drain"):
            await c.nodes[1].control_op("worker_control", {"action": "nap"})


async def test_outside_the_schedule_nothing_is_claimed(tmp_path: Path) -> None:
    # a window that is never now: one minute, on a day that is not today
    import time

    today = time.localtime().tm_wday
    other = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today + 3) % 7]
    never = WorkerSettings(slots=2, schedule=(f"{other} 03:00-03:01",))
    async with open_cluster(tmp_path, 3, worker=never) as c:
        with trio.fail_after(30):
            while c.nodes[1].machine.accepting != "paused":
                await wait_any_change(c.nodes)
        status = await acontrol_call(c.nodes[1].paths.home, "status")
        assert status["node"]["accepting"] == "paused" and status["node"]["paused_why"] == "outside the schedule"
        job = await c.publish(c.nodes[0], replicas=2, quorum=2)
        with trio.fail_after(30):
            while not all(bytes.fromhex(job) in n.machine.jobs for n in c.nodes):
                await wait_any_change(c.nodes)
        assert not c.nodes[0].board.job(bytes.fromhex(job)).claims  # type: ignore[union-attr]


async def test_a_busy_host_takes_no_work_until_its_load_falls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `[worker] idle_load`: new work only while the 1-minute load average per CPU is below it.
    # The host's load is the test's: os.getloadavg and os.cpu_count are replaced, and the
    # daemon looks at them every 0.05 s instead of every 30 s.
    import os

    import p2pci.daemon.node as daemon_node

    load = [8.0]  # 4.0 per CPU: busy
    monkeypatch.setattr(daemon_node, "SCHEDULE_EVERY_S", 0.05)
    monkeypatch.setattr(os, "getloadavg", lambda: (load[0], 0.0, 0.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    idle = WorkerSettings(slots=2, idle_load=0.5)
    async with open_cluster(tmp_path, 3, worker=idle) as c:
        with trio.fail_after(30):
            while not all(n.machine.accepting == "paused" for n in c.nodes):
                await wait_any_change(c.nodes)
        status = await acontrol_call(c.nodes[1].paths.home, "status")
        assert status["node"]["paused_why"] == "host busy (load 4.00 per CPU >= idle_load 0.5)"
        job = await c.publish(c.nodes[0], replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        with trio.fail_after(30):
            while not all(jid in n.machine.jobs for n in c.nodes):
                await wait_any_change(c.nodes)
        assert not c.nodes[0].board.job(jid).claims  # type: ignore[union-attr]
        load[0] = 0.9  # 0.45 per CPU: below idle_load, work is taken again
        with trio.fail_after(60):
            (final,) = await c.wait_verdict(job, [c.nodes[0]])
        assert final["verdict"] == "REPRODUCED"
        assert all(n.machine.accepting == "open" and n.paused_why == "" for n in c.nodes)
