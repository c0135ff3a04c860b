"""The objects a real daemon sends have exactly the keys of p2pci.control.schema, and so do the
TUI's test fixtures (a fake that sends other fields would test a TUI for a daemon that does not exist)."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pci.control.client import acontrol_call, subscribe
from p2pci.control.schema import (
    DEADLINES_KEYS,
    FACTS_KEYS,
    JOB_KEYS,
    NODE_KEYS,
    PEER_KEYS,
    ROUND_KEYS,
    VERDICTS,
    WORKER_PHASES,
    WORKER_ROW_KEYS,
)
from p2pci.testing.cluster import open_cluster

from .test_tui_daemon_socket import JOB as SOCKET_JOB
from .test_tui_helpers import deadlines_obj, job_obj, round_obj, status_obj, worker_row


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
            final = (await c.wait_verdict(job, [node]))[0]
    assert set(shown) == JOB_KEYS and shown["verdict"] in VERDICTS
    # the nested objects the TUI's detail reads: worker rows, select rounds, deadlines
    assert set(final) == JOB_KEYS and final["verdict"] == "REPRODUCED", final
    assert isinstance(final["created"], int) and set(final["deadlines"]) == DEADLINES_KEYS
    assert final["rounds"] and all(set(r) == ROUND_KEYS for r in final["rounds"])
    assert final["workers"] and all(set(w) == WORKER_ROW_KEYS and w["phase"] in WORKER_PHASES for w in final["workers"])
    assert set(status) == {"node", "peers", "jobs", "facts", "quotas", "storage"}
    assert set(status["facts"]) == FACTS_KEYS
    assert set(status["node"]) == NODE_KEYS
    assert status["peers"] and all(set(p) == PEER_KEYS for p in status["peers"])
    assert all(set(j) == JOB_KEYS for j in status["jobs"])
    # the TUI's fixtures
    assert set(job_obj("ab" * 32)) == JOB_KEYS and set(SOCKET_JOB) == JOB_KEYS
    fake = status_obj([job_obj("ab" * 32)])
    assert set(fake["node"]) == NODE_KEYS and all(set(p) == PEER_KEYS for p in fake["peers"])
    assert set(fake["facts"]) == FACTS_KEYS
    assert set(worker_row("p", "declined", reason="policy", detail="x")) == WORKER_ROW_KEYS
    assert set(round_obj(0, ["p"])) == ROUND_KEYS and set(deadlines_obj(0)) == DEADLINES_KEYS


async def test_publish_rules_hold_for_every_control_client(tmp_path: Path) -> None:
    """Not only the CLI: a raw control client asking for one open replica, or quorum > replicas,
    or a malformed request is refused by the node, and nothing is published."""
    import pytest

    from p2pci.control.client import ControlError

    async with open_cluster(tmp_path, 1, runners=[None]) as c:
        node = c.nodes[0]
        ref = node.blobs.put_bytes(b"source")
        base = {"project": "p", "source": {"sha256": ref.sha256.hex(), "size": ref.size}, "image": "busybox",
                "command": ["true"]}  # fmt: skip
        for bad, why in (
            ({"replicas": 1, "quorum": 1}, "open mode needs at least 2 replicas"),
            ({"replicas": 2, "quorum": 3}, "larger than replicas"),
            ({"replicas": "3"}, "replicas must be an integer"),
            ({"bogus": 1}, "unknown fields"),
        ):
            with pytest.raises(ControlError, match=why):
                await acontrol_call(node.paths.home, "publish", **base, **bad)
        assert len(node.board) == 0
        ok = await acontrol_call(node.paths.home, "publish", **base, replicas=1, quorum=1,
                                 workers=[node.peer_id])  # fmt: skip
        assert ok["replicas"] == 1 and len(node.board) == 1
