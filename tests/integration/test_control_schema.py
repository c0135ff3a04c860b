"""The objects a real daemon sends have exactly the keys of p2pci.control.schema, and so do the
TUI's test fixtures (a fake that sends other fields would test a TUI for a daemon that does not exist)."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pci.control.client import acontrol_call, subscribe
from p2pci.control.schema import JOB_KEYS, NODE_KEYS, PEER_KEYS, VERDICTS
from p2pci.testing.cluster import open_cluster

from .test_tui_daemon_socket import JOB as SOCKET_JOB
from .test_tui_helpers import job_obj, status_obj


async def test_daemon_objects_and_tui_fixtures_follow_the_schema(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2) as c:
        node = c.nodes[0]
        async with subscribe(node.paths.home) as events:
            job = await c.publish(node, replicas=2, quorum=2)
            status = await acontrol_call(node.paths.home, "status")
            with trio.fail_after(10):
                async for ev in events:
                    if ev.get("event") == "job" and ev["job"]["job"] == job:
                        assert set(ev["job"]) == JOB_KEYS
                        break
            shown = await acontrol_call(node.paths.home, "show", job=job)
    assert set(shown) == JOB_KEYS and shown["verdict"] in VERDICTS
    assert set(status) == {"node", "peers", "jobs"}
    assert set(status["node"]) == NODE_KEYS
    assert status["peers"] and all(set(p) == PEER_KEYS for p in status["peers"])
    assert all(set(j) == JOB_KEYS for j in status["jobs"])
    # the TUI's fixtures
    assert set(job_obj("ab" * 32)) == JOB_KEYS and set(SOCKET_JOB) == JOB_KEYS
    fake = status_obj([job_obj("ab" * 32)])
    assert set(fake["node"]) == NODE_KEYS and all(set(p) == PEER_KEYS for p in fake["peers"])
