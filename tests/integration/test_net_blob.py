"""/p2pci/blob/1 against hand-written servers: older senders' frames work, oversize frames do not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.core.messages import BlobRef
from p2pci.net import wire
from p2pci.net.base import BlobUnavailable
from p2pci.store.blobs import BlobStore
from tests.integration.test_net_libp2p import _info, raw_peer, start_node, wait_until


async def read_framed(stream: Any) -> bytes:
    """One length-prefixed request body (wire.LEN), as a raw hostile holder reads it."""
    head = b""
    while len(head) < 4:
        head += await stream.read(4 - len(head))
    n = wire.LEN.unpack(head)[0]
    body = b""
    while len(body) < n:
        body += await stream.read(n - len(body))
    return body


async def _read_request(stream: Any) -> None:
    wire.parse_blob_request(await read_framed(stream))


@pytest.mark.parametrize(
    ("frame_size", "ok"),
    [(wire.CHUNK, True), (7777, True), (wire.CHUNK + 1, False)],
)
async def test_a_server_framing_its_own_way(tmp_path: Path, frame_size: int, ok: bool) -> None:
    blob = os.urandom(3 * wire.CHUNK + 12345)
    ref = BlobStore(tmp_path / "src").put_bytes(blob)
    data = b"".join(wire.frame(blob[i : i + frame_size]) for i in range(0, len(blob), frame_size))

    async def serve(stream: Any) -> None:
        await _read_request(stream)
        await stream.write(wire.blob_response(True))
        await stream.write(data)
        await stream.close()

    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB, serve)
        peer = str(host.get_id().to_base58())
        me = await start_node(nursery, read_timeout=5.0)
        with trio.fail_after(10):
            await host.connect(_info(me.net.addrs()[0]))
        await wait_until(lambda: peer in {p.peer_id for p in me.net.peers()}, 10)
        mine = BlobStore(tmp_path / "mine")
        with trio.fail_after(20):
            if ok:
                path = await me.net.fetch_blob(BlobRef(ref.sha256, ref.size), mine, peers=[peer])
                assert path.read_bytes() == blob
            else:
                with pytest.raises(BlobUnavailable, match="exceeds the limit"):
                    await me.net.fetch_blob(BlobRef(ref.sha256, ref.size), mine, peers=[peer])
                assert me.net.stats()["blob_rejected"] == 1 and not mine.has(ref.sha256)
        nursery.cancel_scope.cancel()
