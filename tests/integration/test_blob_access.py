"""Issue 14, confidentiality: the blob server serves a job's blobs only to peers allowed to build
or fetch it (docs/security.md, "Who can fetch what").

* Real libp2p hosts: a publisher daemon (`Node` on `LibP2PNetwork`, real SQLite) publishes a
  traditional job for one allowlisted worker. A stranger host asks it for the job's source by
  hash and is refused with a clear error (counted); the allowlisted key gets it; a blob tied to
  no job is served to nobody.
* Open mode (in-process daemons): before the verdict only the selected workers (and the
  publisher) are served; an unselected claimant and an observer are refused; once the job is
  REPRODUCED anyone is served.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from p2pci.config import Config
from p2pci.control.client import acontrol_call
from p2pci.core.errors import ProtocolError
from p2pci.core.messages import BlobRef
from p2pci.core.signing import NodeKey, seal
from p2pci.daemon.node import Node, validate_fact
from p2pci.net.libp2p_net import LibP2PNetwork
from p2pci.store.blobs import BlobStore
from p2pci.testing.cluster import FAST, ScriptedRunner, open_cluster, wait_any_change
from p2pci.testing.images import FakeImages

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
NET = dict(sync_interval=2.0, heartbeat=0.2, dial_interval=0.1, redial_min=0.1, redial_max=1.0, px_interval=0.3)


async def test_allowlist_job_source_refused_to_a_stranger_served_to_the_allowlisted(tmp_path: Path) -> None:
    pub_key, worker_key, stranger_key = (NodeKey.from_seed(os.urandom(32)) for _ in range(3))
    net = LibP2PNetwork(pub_key.seed, LOOPBACK, [], validate=validate_fact, **NET)  # type: ignore[arg-type]
    pub = Node(tmp_path / "pub", Config(build=False, timing=FAST), network=net, key=pub_key, images=FakeImages())
    async with trio.open_nursery() as nursery:
        await nursery.start(pub.run)
        secret = b"the private source of an allowlist job\n" * 100
        src = pub.blobs.put_bytes(secret)
        job = await pub.control_op(
            "publish",
            {
                "project": "private",
                "source": {"sha256": src.sha256.hex(), "size": src.size},
                "image": "busybox",
                "command": ["sh", "-c", "true"],
                "limits": {"timeout_s": 5, "memory_mb": 64, "cpus": 1, "pids": 64, "out_mb": 1},
                "replicas": 1,
                "quorum": 1,
                "workers": [worker_key.peer_id],
            },
        )
        untied = pub.blobs.put_bytes(b"a blob this node holds for no job")

        async def fetch_as(key: NodeKey, ref: BlobRef, into: Path) -> Path:
            """A bare libp2p host with `key` asks the publisher for `ref` (no daemon behind it)."""
            host = LibP2PNetwork(key.seed, LOOPBACK, list(net.addrs()), **NET)  # type: ignore[arg-type]
            got: list[Path | ProtocolError] = []
            events = host.events()  # subscribed before the host starts: no connection is missed
            async with trio.open_nursery() as n:
                await n.start(host.run)
                with trio.fail_after(20):
                    while pub.peer_id not in {p.peer_id for p in host.peers()}:
                        await events.receive()
                    try:
                        got.append(await host.fetch_blob(ref, BlobStore(into), [pub.peer_id]))
                    except ProtocolError as exc:
                        got.append(exc)
                n.cancel_scope.cancel()
            if isinstance(got[0], ProtocolError):
                raise got[0]
            return got[0]

        async def probe_as(key: NodeKey, ref: BlobRef) -> list[tuple[bool, str, bytes]]:
            """A bare host asks over /p2pci/blob/2 for `have` only (length 0) and for one piece,
            and over /p2pci/blob/1 for the whole blob: the raw answers."""
            host = LibP2PNetwork(key.seed, LOOPBACK, list(net.addrs()), **NET)  # type: ignore[arg-type]
            answers: list[tuple[bool, str, bytes]] = []
            events = host.events()
            async with trio.open_nursery() as n:
                await n.start(host.run)
                with trio.fail_after(20):
                    while pub.peer_id not in {p.peer_id for p in host.peers()}:
                        await events.receive()
                    answers.append(await host._range(pub.peer_id, ref, None, 0, 0))
                    answers.append(await host._range(pub.peer_id, ref, None, 0, ref.size))
                    try:
                        await host._fetch_from(pub.peer_id, ref, BlobStore(tmp_path / "probe"))
                    except ProtocolError as exc:
                        answers.append((False, str(exc), b""))
                n.cancel_scope.cancel()
            return answers

        # a stranger probing with the raw protocols learns nothing: no `have`, the same refusal
        why = "this node serves a blob only to peers allowed to build or fetch its job"
        assert await probe_as(stranger_key, src) == [(False, why, b""), (False, why, b""), (False, f"refused: {why}", b"")]
        assert not BlobStore(tmp_path / "probe").has(src.sha256)

        # the stranger: refused, with the reason, and nothing lands in its store
        with pytest.raises(ProtocolError) as refused:
            await fetch_as(stranger_key, src, tmp_path / "stranger")
        assert "refused: this node serves a blob only to peers allowed to build or fetch its job" in str(refused.value)
        assert not BlobStore(tmp_path / "stranger").has(src.sha256)
        st = await acontrol_call(pub.paths.home, "status")
        assert st["storage"]["blob_refused"] == {"untied": 0, "not_allowed": 4}
        assert pub.network.stats()["blob_refused"] == 4

        # the stranger publishes its own open offer naming the private source's hash (public in the
        # gossiped offer) and asks again as that job's publisher: a hash named by a peer ties nothing
        offer = replace(pub.board.job(bytes.fromhex(job["job"])).offer_msg, workers="open", project="mine")  # type: ignore[union-attr,arg-type]
        assert await pub.ingest(seal(stranger_key, offer).raw) is not None
        with pytest.raises(ProtocolError, match="refused"):
            await fetch_as(stranger_key, src, tmp_path / "stranger")

        # the allowlisted worker: served
        got = await fetch_as(worker_key, src, tmp_path / "worker")
        assert got.read_bytes() == secret

        # a blob tied to no job: nobody, not even the allowlisted worker
        with pytest.raises(ProtocolError, match="refused"):
            await fetch_as(worker_key, untied, tmp_path / "worker")
        st = await acontrol_call(pub.paths.home, "status")
        assert st["storage"]["blob_refused"] == {"untied": 1, "not_allowed": 5}
        assert job["verdict"] == "PENDING"
        nursery.cancel_scope.cancel()


async def test_open_job_selected_workers_first_then_anyone_once_reproduced(tmp_path: Path) -> None:
    gate = threading.Event()
    runners = [None, ScriptedRunner(gate=gate), ScriptedRunner(gate=gate), ScriptedRunner(gate=gate), None]
    async with open_cluster(tmp_path, 5, runners=runners) as c:
        pub, observer = c.nodes[0], c.nodes[4]
        job = await c.publish(pub, replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        with trio.fail_after(30):
            while not (v := pub.board.job(jid)) or not v.selects:
                await wait_any_change(c.nodes)
        view = pub.board.job(jid)
        assert view is not None
        src = view.offer_msg.source.sha256  # type: ignore[union-attr]
        selected = pub.machine.verdict(jid, pub.now()).selected
        claimants = set(view.claims)
        unselected = [n for n in c.nodes[1:4] if n.me in claimants and n.me not in selected]
        chosen = [n for n in c.nodes[1:4] if n.me in selected]
        assert len(chosen) == 2
        for n in chosen:
            assert await pub.blob_access(src, n.peer_id) is None
        for n in [observer, *unselected]:
            assert await pub.blob_access(src, n.peer_id) is not None
        # over the (memory) network the observer gets a refusal, not the source
        with pytest.raises(ProtocolError, match="refused"):
            await observer.network.fetch_blob(view.offer_msg.source, observer.blobs, [pub.peer_id])  # type: ignore[union-attr]
        gate.set()
        with trio.fail_after(30):
            (obj,) = await c.wait_verdict(job, [pub])
        assert obj["verdict"] == "REPRODUCED"
        assert await pub.blob_access(src, observer.peer_id) is None  # open and REPRODUCED: anyone
        # a worker's outputs, once REPRODUCED, are served to the observer too
        out = await observer.network.fetch_blob(view.offer_msg.source, observer.blobs, [pub.peer_id])  # type: ignore[union-attr]
        assert out.exists()
