"""LibP2PNetwork._drop_stale_pubsub_peers with stand-ins for pubsub and the swarm (fast; the real
hosts are in tests/integration/test_net_mesh_backoff.py, where upstream can win the race to a dead
stream by writing to it first)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from p2pci.net.common import Stats
from p2pci.net.libp2p_net import LibP2PNetwork


def _stream(net_closed: bool = False, yamux_closed: bool = False) -> Any:
    return SimpleNamespace(is_closed=net_closed, muxed_stream=SimpleNamespace(closed=yamux_closed))


def _conn(closed: bool | None) -> Any:  # None: muxer handshake not done (counts as live)
    return SimpleNamespace(muxed_conn=None if closed is None else SimpleNamespace(is_closed=closed))


def test_the_sweep_drops_stale_peers_and_dead_streams_and_nothing_else() -> None:
    peers = {
        "gone": _stream(),  # no connection at all
        "closing": _stream(),  # only a connection that is closing
        "reset_by_us": _stream(net_closed=True),  # connected, our stream reset
        "reset_by_peer": _stream(yamux_closed=True),  # connected, the peer reset it / old connection
        "fine": _stream(),
        "handshaking": _stream(),  # its only connection has no muxer yet: live
    }
    conns = {
        "closing": [_conn(True)],
        "reset_by_us": [_conn(False)],
        "reset_by_peer": [_conn(True), _conn(False)],
        "fine": [_conn(False)],
        "handshaking": [_conn(None)],
    }
    dropped: list[str] = []
    pubsub = SimpleNamespace(peers=peers, _handle_dead_peer=dropped.append)
    network = SimpleNamespace(get_connections=lambda pid: conns.get(pid, []))
    me = SimpleNamespace(
        _pubsub=pubsub, _host=SimpleNamespace(get_network=lambda: network), _stats=Stats()
    )
    LibP2PNetwork._drop_stale_pubsub_peers(me)  # type: ignore[arg-type]
    assert sorted(dropped) == ["closing", "gone", "reset_by_peer", "reset_by_us"]
    assert me._stats.snapshot() == {"pubsub_stale_peers": 2, "pubsub_dead_streams": 2}
