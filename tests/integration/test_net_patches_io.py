"""The receive/send-path patches of p2pci.net.patches (blob throughput, issue 17), each against
real py-libp2p objects: a blob between two real nodes on loopback costs far fewer TCP receives,
socket sends and Yamux frames than Noise messages, and SecureSession reads return the bytes in
order for any mix of read sizes, a whole Noise message without a copy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.net import patches
from p2pci.store.blobs import BlobStore
from tests.integration.test_net_libp2p import start_node, wait_until

NOISE_MSG = 65519


async def test_a_blob_costs_fewer_receives_sends_and_frames_than_noise_messages(tmp_path: Path) -> None:
    from libp2p.stream_muxer.yamux import yamux as ymod

    counts = {"receive": 0, "big_receive": 0, "send": 0, "frames": 0}
    recv, send, body = trio.SocketStream.receive_some, trio.SocketStream.send_all, ymod.Yamux._read_data_body

    async def receive_some(self: Any, max_bytes: int | None = None) -> bytes:
        data: bytes = await recv(self, max_bytes)
        counts["receive"] += 1
        counts["big_receive"] += len(data) > NOISE_MSG + 18  # more than one Noise message at once
        return data

    async def send_all(self: Any, data: Any) -> None:
        counts["send"] += len(data) >= NOISE_MSG  # the data sends (gossip's small ones aside)
        await send(self, data)

    async def read_data_body(self: Any, length: int) -> Any:
        if length >= NOISE_MSG:
            counts["frames"] += 1
        return await body(self, length)

    src = BlobStore(tmp_path / "src")
    size = 16 << 20
    ref = src.put_bytes(os.urandom(size))
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, blobs=src)
        me = await start_node(nursery, a.net.addrs())
        await wait_until(lambda: a.net.peer_id in {p.peer_id for p in me.net.peers()}, 10)
        assert all(patches._applied.get(n) for n in ("tcp_read_ahead", "noise_write_batch", "noise_packet_read"))
        trio.SocketStream.receive_some = receive_some  # type: ignore[method-assign]
        trio.SocketStream.send_all = send_all  # type: ignore[method-assign]
        ymod.Yamux._read_data_body = read_data_body
        try:
            with trio.fail_after(60):
                await me.net.fetch_blob(ref, BlobStore(tmp_path / "mine"), peers=[a.net.peer_id])
        finally:
            trio.SocketStream.receive_some = recv  # type: ignore[method-assign]
            trio.SocketStream.send_all = send  # type: ignore[method-assign]
            ymod.Yamux._read_data_body = body
        nursery.cancel_scope.cancel()
    messages = size // NOISE_MSG  # at least this many Noise messages went from a to me
    # upstream: 2 receives per message (its length, then its body: never more than one message at
    # once), 1 socket send and 1 Yamux frame per message
    assert counts["big_receive"] >= 1 and counts["receive"] < 2 * messages, counts  # tcp_read_ahead
    assert counts["send"] <= messages / 8, counts  # noise_write_batch: one send per Yamux frame
    assert counts["frames"] <= messages / 8, counts  # _YAMUX_FRAME frames, _open_window


class _Conn:
    """An EncryptedMsgReadWriter that hands out given messages, then b"" (closed)."""

    def __init__(self, msgs: list[bytes]) -> None:
        self.msgs = list(msgs)

    async def read_msg(self) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.msgs.pop(0) if self.msgs else b""


def _session(msgs: list[bytes]) -> Any:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.security.secure_session import SecureSession

    kp = create_new_key_pair()
    pid = ID.from_pubkey(kp.public_key)
    return SecureSession(local_peer=pid, local_private_key=kp.private_key, remote_peer=pid,
                         remote_permanent_pubkey=kp.public_key, is_initiator=True, conn=_Conn(msgs))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=12),
       reads=st.lists(st.one_of(st.none(), st.integers(1, 700)), min_size=1, max_size=30))
def test_secure_session_reads_return_the_bytes_in_order(sizes: list[int], reads: list[int | None]) -> None:
    patches.apply()
    msgs = [os.urandom(n) for n in sizes]
    stream = b"".join(msgs)

    async def main() -> bytes:
        from libp2p.io.exceptions import ConnectionClosedError

        s = _session(msgs)
        out = bytearray()
        for n in reads:
            try:
                got = await s.read(n)
            except ConnectionClosedError:
                break
            assert isinstance(got, bytes)
            assert n is None or len(got) <= n
            out += got
        return bytes(out)

    got = trio.run(main)
    assert stream.startswith(got)  # in order, nothing lost or repeated


async def test_a_read_of_one_whole_noise_message_is_not_copied() -> None:
    patches.apply()
    msg = os.urandom(NOISE_MSG)
    s = _session([b"h" * 12 + msg[:100], msg])
    assert await s.read(12) == b"h" * 12
    assert await s.read(100) == msg[:100]
    assert await s.read(NOISE_MSG) is msg  # secure_read_views: upstream copies it through a BytesIO
