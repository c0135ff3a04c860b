"""p2pci.net.wire: frames round-trip; anything else is a ProtocolError (pure, no network)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pci.core.errors import ProtocolError
from p2pci.net import wire

ids = st.lists(st.binary(min_size=32, max_size=32), max_size=20)
facts = st.lists(st.binary(max_size=200), max_size=10)
addrs = st.lists(st.text(max_size=50).map(lambda s: "/" + s), max_size=16)


def body(framed: bytes) -> bytes:
    n = wire.parse_length(framed[:4], 1 << 30)
    assert len(framed) == 4 + n
    return framed[4:]


@given(ids, facts, ids, st.booleans(), addrs, addrs)
def test_round_trips(hello: list[bytes], fs: list[bytes], want: list[bytes], more: bool, a: list[str], p: list[str]) -> None:
    assert wire.parse_sync_hello(body(wire.sync_hello(hello))) == hello
    assert wire.parse_sync_reply(body(wire.sync_reply(fs, want, more)), 65536) == (fs, want, more)
    assert wire.parse_sync_facts(body(wire.sync_facts(fs)), 65536) == fs
    assert wire.parse_peers_request(body(wire.peers_request(a))) == a
    assert wire.parse_peers_response(body(wire.peers_response(a, p))) == (a, p)


@given(st.binary(max_size=300))
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    for parse in (
        wire.parse_sync_hello,
        wire.parse_peers_request,
        wire.parse_peers_response,
        wire.parse_blob_request,
        wire.parse_blob_response,
        lambda d: wire.parse_sync_reply(d, 65536),
        lambda d: wire.parse_sync_facts(d, 65536),
    ):
        try:
            parse(data)
        except ProtocolError:
            pass


@pytest.mark.parametrize(
    ("parse", "payload"),
    [
        (wire.parse_sync_hello, wire.encode({"ids": [b"x" * 31]})[4:]),
        (wire.parse_sync_hello, wire.encode({"ids": [], "extra": 1})[4:]),
        (wire.parse_sync_hello, wire.encode({"ids": "no"})[4:]),
        (wire.parse_blob_request, wire.encode({"sha256": b"x" * 32, "size": True})[4:]),
        (wire.parse_blob_request, wire.encode({"sha256": b"x" * 31, "size": 1})[4:]),
        (wire.parse_blob_request, wire.encode({"sha256": b"x" * 32, "size": -1})[4:]),
        (wire.parse_peers_request, wire.encode({"addrs": ["/a"] * 17})[4:]),
        (wire.parse_peers_request, wire.encode({"addrs": ["no-slash"]})[4:]),
    ],
)
def test_wrong_shapes(parse: Any, payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(payload)


def test_good_shapes_pass() -> None:
    assert wire.parse_blob_request(wire.encode({"sha256": b"x" * 32, "size": 1})[4:]) == (b"x" * 32, 1)


def test_length_limit() -> None:
    with pytest.raises(ProtocolError):
        wire.parse_length(b"\xff\xff\xff\xff", wire.MAX_SYNC_FRAME)
    with pytest.raises(ProtocolError):
        wire.parse_length(b"\x00\x00", 10)
    assert wire.parse_sync_facts(body(wire.sync_facts([b"a" * 10])), 10) == [b"a" * 10]
    with pytest.raises(ProtocolError):
        wire.parse_sync_facts(body(wire.sync_facts([b"a" * 11])), 10)


def test_addr_scope_and_px_filter() -> None:
    from p2pci.net.libp2p_net import LibP2PNetwork, addr_scope, libp2p_peer_id

    assert addr_scope("/ip4/127.0.0.5/tcp/1") == "loopback"
    assert addr_scope("/ip4/10.1.2.3/tcp/1") == "private"
    assert addr_scope("/ip4/8.8.8.8/tcp/1") == "global"
    assert addr_scope("/ip4/0.0.0.0/tcp/1") == "any"
    assert addr_scope("/dns4/example.org/tcp/1") is None
    net = LibP2PNetwork(bytes(32), ["/ip4/127.0.0.1/tcp/0"], [])
    other = libp2p_peer_id(b"\x01" * 32)
    net.add_peer_addrs([f"/ip4/8.8.8.8/tcp/4001/p2p/{other}", f"/ip4/192.168.1.1/tcp/4001/p2p/{other}"])
    assert net.stats()["addr_out_of_scope"] == 2 and other not in net._book
    net.add_peer_addrs([f"/ip4/127.0.0.2/tcp/4001/p2p/{other}"])
    assert net._book[other].addrs == {f"/ip4/127.0.0.2/tcp/4001/p2p/{other}"}
