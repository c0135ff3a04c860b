"""/p2pci/logtail/1: the publisher's daemon shows a remote worker's build log while it runs.

A build held open by a gate on a remote worker must already have sent its log lines to a
subscriber of the *publisher's* control socket (`log` events with `worker` = that worker);
a peer that is not the job's publisher is refused; replies are bounded (wire.LOGTAIL_MAX) and
the publisher stops forwarding one worker's log at the cap (LOGTAIL_FORWARD_MAX); escape
sequences from a remote log are printed escaped. One test runs the protocol over real
py-libp2p hosts.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.cli.progress import Progress
from p2pci.control.client import subscribe
from p2pci.core.errors import ProtocolError
from p2pci.daemon import logtail
from p2pci.daemon.logtail import RemoteTail
from p2pci.net import wire
from p2pci.testing.cluster import Cluster, ScriptedRunner, open_cluster


async def _remote_log(events: Any, job: str, worker: str, until: str) -> str:
    """The text of `log` events of `job` from `worker`, until `until` is in it."""
    got = ""
    async for ev in events:
        if ev.get("event") == "log" and ev.get("job") == job:
            assert ev.get("worker") == worker, ev  # the publisher builds nothing itself
            got += str(ev["text"])
            if until in got:
                return got
    raise AssertionError("the subscription ended")


@asynccontextmanager
async def _held_remote_build(tmp_path: Path, lines: tuple[str, ...], until: str) -> AsyncIterator[tuple[Cluster, str, str, threading.Event]]:
    """Node 1 builds node 0's job, sending `lines` as its live log, then waits on `gate` (released on
    exit at the latest). Yields (cluster, job, the `log` text node 0's subscriber got up to `until`, gate)."""
    gate = threading.Event()
    async with open_cluster(tmp_path, 2, runners=[None, ScriptedRunner(gate=gate, log_lines=lines)]) as c:
        publisher, builder = c.nodes
        try:
            async with subscribe(publisher.paths.home) as events:
                job = await c.publish(publisher, replicas=1, quorum=1, workers=[builder.peer_id])
                with trio.fail_after(20):
                    got = await _remote_log(events, job, builder.peer_id, until)
            yield c, job, got, gate
        finally:
            gate.set()


async def test_publisher_sees_a_remote_workers_lines_while_it_builds(tmp_path: Path) -> None:
    async with _held_remote_build(tmp_path, ("step 1: configure", "step 2: compile"), "step 2: compile") as (c, job, got, gate):
        publisher = c.nodes[0]
        view = publisher.board.job(bytes.fromhex(job))  # still building: held by the gate
        assert view is not None and view.commits == {} and view.reveals == {}
        assert got == "step 1: configure\nstep 2: compile\n"
        gate.set()
        (obj,) = await c.wait_verdict(job, [publisher])
        assert obj["verdict"] == "REPRODUCED"


async def test_only_the_publisher_may_read_a_running_builds_log(tmp_path: Path) -> None:
    gate = threading.Event()
    runner = ScriptedRunner(gate=gate, log_lines=("secret-ish build output",))
    async with open_cluster(tmp_path, 3, runners=[None, runner, None]) as c:
        publisher, builder, stranger = c.nodes
        job = await c.publish(publisher, replicas=1, quorum=1, workers=[builder.peer_id])
        jid = bytes.fromhex(job)
        with trio.fail_after(20):
            await trio.to_thread.run_sync(runner.started.wait)
        with pytest.raises(ProtocolError, match="only to the job's publisher"):
            await stranger.network.fetch_log(builder.peer_id, jid, 0)
        assert builder.logtail_refusals == 1
        off, data, size = await publisher.network.fetch_log(builder.peer_id, jid, 0)  # the publisher may
        assert (off, data, size) == (0, b"secret-ish build output\n", 24)
        gate.set()


async def test_replies_are_bounded_and_forwarding_stops_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 3 * wire.LOGTAIL_MAX + 100
    monkeypatch.setattr(logtail, "LOGTAIL_FORWARD_MAX", cap)
    gate = threading.Event()
    lines = tuple(f"line {i:06d} " + "x" * 90 for i in range(2000))  # ~200 KB, far past the cap
    runner = ScriptedRunner(gate=gate, log_lines=lines)
    async with open_cluster(tmp_path, 2, runners=[None, runner]) as c:
        publisher, builder = c.nodes
        async with subscribe(publisher.paths.home) as events:
            job = await c.publish(publisher, replicas=1, quorum=1, workers=[builder.peer_id])
            jid = bytes.fromhex(job)
            with trio.fail_after(20):
                await trio.to_thread.run_sync(runner.started.wait)
            off, data, size = await publisher.network.fetch_log(builder.peer_id, jid, 100)
            assert off == 100 and len(data) == wire.LOGTAIL_MAX and size > 10 * wire.LOGTAIL_MAX
            with trio.fail_after(30):
                got = await _remote_log(events, job, builder.peer_id, "live log of this worker stopped")
            # no more from that worker while it still builds: two more rounds of polling
            with trio.move_on_after(3 * logtail.LOGTAIL_EVERY_S):
                async for ev in events:
                    assert not (ev.get("event") == "log" and ev.get("job") == job), ev
            assert not gate.is_set()
        body = got.split("[p2pci: live log")[0]
        assert len(body.encode()) <= cap + 1 and body.startswith(lines[0])
        assert lines[-1] not in got
        gate.set()


def test_a_remote_tail_is_bounded_per_worker_and_decodes_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtail, "LOGTAIL_FORWARD_MAX", 20)
    t = RemoteTail()
    assert t.feed(0, "é".encode()[:1]) == ""  # half a character waits for the rest
    assert t.feed(1, "é".encode()[1:] + b"\xff ok\nrest") == "é\ufffd ok\n"
    assert t.feed(20, b"0123456789") == "rest\n[p2pci: 9 bytes of log skipped]\n" + (
        "[p2pci: live log of this worker stopped after 20 bytes]\n"
    )  # the marker counts toward the cap: nothing of the reply fits after it
    assert t.done


def test_a_remote_tail_counts_its_skip_markers_toward_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile worker that skips a byte in every reply makes a marker each time: the markers
    count, so what is forwarded stays near the cap (it was 1 byte counted per ~35 sent)."""
    monkeypatch.setattr(logtail, "LOGTAIL_FORWARD_MAX", 200)
    t = RemoteTail()
    sent = 0
    for i in range(1000):
        if t.done:
            break
        sent += len(t.feed(2 * i + 1, b"x"))
    assert t.done and sent <= 200 + 100, sent


async def test_hostile_remote_log_is_printed_escaped(tmp_path: Path) -> None:
    evil = "pwned \x1b]0;owned title\x07\x1b[2J\x1b[31mred"
    async with _held_remote_build(tmp_path, (evil,), "red") as (c, _job, got, _gate):
        assert got == evil + "\n"  # --events / --json: the exact text
        out = io.StringIO()
        Progress(out, tty=False).log(c.nodes[1].peer_id, got)
        printed = out.getvalue()
        assert "\x1b" not in printed and "\x07" not in printed
        assert "pwned \\x1b]0;owned title\\x07\\x1b[2J\\x1b[31mred" in printed


async def test_logtail_over_real_libp2p_hosts() -> None:
    from p2pci.core.signing import NodeKey
    from p2pci.net.libp2p_net import LibP2PNetwork

    keys = [NodeKey.from_seed(os.urandom(32)) for _ in range(3)]
    server, publisher, stranger = keys
    job = os.urandom(32)
    log = b"".join(b"line %05d\n" % i for i in range(4000))  # 44 KB
    asked: list[tuple[str, int]] = []

    async def source(j: bytes, peer: str, offset: int) -> tuple[str | None, int, bytes, int]:
        asked.append((peer, offset))
        if peer != publisher.peer_id or j != job:
            return "only to the job's publisher", 0, b"", 0
        return None, offset, log[offset : offset + 10 * wire.LOGTAIL_MAX], len(log)  # over-long: cut

    fast: dict[str, Any] = dict(sync_interval=0.5, heartbeat=0.2, dial_interval=0.1, redial_min=0.1, redial_max=1.0)
    async with trio.open_nursery() as nursery:
        nets = []
        for k in keys:
            net = LibP2PNetwork(k.seed, ["/ip4/127.0.0.1/tcp/0"], nets[0].addrs() if nets else [], **fast)
            await nursery.start(net.run)
            nets.append(net)
        nets[0].set_log_source(source)
        with trio.fail_after(20):
            off, data, size = await nets[1].fetch_log(server.peer_id, job, 5)
            assert (off, data, size) == (5, log[5 : 5 + wire.LOGTAIL_MAX], len(log))
            with pytest.raises(ProtocolError, match="only to the job's publisher"):
                await nets[2].fetch_log(server.peer_id, job, 0)
        assert asked == [(publisher.peer_id, 5), (stranger.peer_id, 0)]
        assert nets[0].stats().get("logtail_refused") == 1
        nursery.cancel_scope.cancel()


def test_logtail_frames_are_bounded_both_ways() -> None:
    job = bytes(32)
    payload = wire.logtail_request(job, 7)[wire.LEN.size :]
    assert wire.parse_logtail_request(payload) == (job, 7)
    for bad in (wire.encode({"job": b"short", "offset": 0}), wire.encode({"job": job, "offset": -1})):
        with pytest.raises(ProtocolError):
            wire.parse_logtail_request(bad[wire.LEN.size :])
    big = wire.logtail_response(True, "", 0, b"x" * (wire.LOGTAIL_MAX + 1), 1 << 20)
    assert wire.parse_logtail_response(big[wire.LEN.size :], 0)[3] == b"x" * wire.LOGTAIL_MAX  # cut by the server
    hostile = {"ok": True, "error": "", "offset": 0, "data": b"x" * (wire.LOGTAIL_MAX + 1), "size": 1 << 20}
    for reply, asked in ((hostile, 0), ({**hostile, "data": b"x", "offset": 3}, 4), ({**hostile, "data": b"xy", "size": 1}, 0)):
        with pytest.raises(ProtocolError, match="bad logtail reply"):
            wire.parse_logtail_response(wire.encode(reply)[wire.LEN.size :], asked)
