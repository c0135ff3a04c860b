"""Relay reservations, relayed dials and py-libp2p patches (real hosts on 127.0.0.1).

On loopback every node could dial every other; the tests force the relay
path by giving the dialer only the circuit address and by keeping the NATed
node's own dialer quiet (degree 1). tests/netns/ proves the same through
real NATs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
import trio

from p2pci.core.errors import ProtocolError
from p2pci.net import patches, reach
from p2pci.net.libp2p_net import LibP2PNetwork, parse_peer_addr
from p2pci.net.reach import RelayServerLimits, is_circuit, relay_of
from p2pci.testing.net import Collector, fact_id
from tests.integration.test_net_libp2p import FAST, Node, _run_node, start_node, wait_until

A = "12D3KooWGzRKhoS7hxkDDpzeLEMSmaa3GjuBgLCXLH4mJgSCpzfK"
R = "12D3KooWLDTPkDNSpZs3RBd6nD1DdwYvh2tMJJXpGK79Npj4fKVz"


def test_parse_circuit_addrs() -> None:
    addr = f"/ip4/100.64.0.10/tcp/4001/p2p/{R}/p2p-circuit/p2p/{A}"
    assert parse_peer_addr(addr) == (A, addr)
    assert is_circuit(addr) and relay_of(addr) == R
    assert parse_peer_addr(f"/ip4/1.2.3.4/tcp/1/p2p/{A}") == (A, f"/ip4/1.2.3.4/tcp/1/p2p/{A}")
    assert relay_of(f"/ip4/1.2.3.4/tcp/1/p2p/{A}") is None
    for bad in (
        f"/ip4/100.64.0.10/tcp/4001/p2p/{R}/p2p-circuit",  # no target
        f"/ip4/100.64.0.10/tcp/4001/p2p/{R}/p2p/{A}/p2p-circuit/p2p/{A}",  # two ids before the circuit
        f"/ip4/100.64.0.10/tcp/4001/p2p-circuit/p2p/{A}/p2p/{R}",  # target not last
    ):
        with pytest.raises(ProtocolError):
            parse_peer_addr(bad)


def test_patches_version_guard(caplog: pytest.LogCaptureFixture) -> None:
    assert patches.libp2p_version() == patches.PATCHED_FOR
    assert patches.apply() == {name: True for name in patches.PATCHES}
    assert set(patches.PATCHES) == {"stream_handler_guard", "inline_push", "mcache_msg_id", "sender_record_cache",
                                "send_rpc_shared", "tcp_read_ahead", "secure_read_views", "yamux_body_read",
                                "noise_write_batch", "noise_packet_read", "rpc_reader", "yamux_whole_writes",
                                "yamux_write_fast", "tcp_lock_nowait", "stream_lock_nowait",
                                "keep_live_subscriptions"}
    from libp2p.network.connection.swarm_connection import SwarmConn

    assert getattr(SwarmConn._handle_muxed_stream, "_p2pci_guard", False)
    installed = _patched_attrs()
    for patch in patches.PATCHES.values():  # a second run installs nothing (no wrapper of a wrapper)
        patch()
    assert _patched_attrs() == installed
    with caplog.at_level(logging.WARNING, logger="p2pci.net.patches"):
        patches.apply(version="0.9.0")
    assert "NOT applied" in caplog.text


def _patched_attrs() -> list[Any]:
    import libp2p.pubsub.floodsub as fs_mod
    import libp2p.pubsub.gossipsub as gs_mod
    import libp2p.pubsub.pubsub as ps_mod
    from libp2p.io.trio import TrioTCPStream
    from libp2p.network.connection.swarm_connection import SwarmConn
    from libp2p.network.stream.net_stream import NetStream
    from libp2p.pubsub.mcache import MessageCache
    from libp2p.security.noise import io as nio
    from libp2p.security.secure_session import SecureSession
    from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

    attrs = [SwarmConn._handle_muxed_stream, ps_mod.Pubsub.continuously_read_stream, MessageCache.put,
             gs_mod.GossipSub.attach, gs_mod.GossipSub.send_rpc, TrioTCPStream.read, SecureSession.read,
             Yamux._read_data_body, nio.NoiseTransportReadWriter.write_msg, nio.NoisePacketReadWriter.read_msg,
             YamuxStream.write, TrioTCPStream.write, NetStream.__init__, ps_mod.Pubsub._handle_dead_peer,
             *(m.env_to_send_in_RPC for m in (gs_mod, ps_mod, fs_mod))]  # type: ignore[attr-defined]
    assert all(any(k.startswith("_p2pci_") for k in vars(f)) for f in attrs)  # every one is a patch
    return attrs


async def _private(nursery: trio.Nursery, relay: Node, **kw: Any) -> Node:
    opts: dict[str, Any] = {"reachability": "private", "degree": 1, "relay_refresh": 2.0}
    opts.update(kw)
    return await start_node(nursery, relay.net.addrs(), **opts)


def _circuit(n: Node) -> str | None:
    return next((a for a in n.net.addrs() if is_circuit(a)), None)


async def test_reserve_announce_and_dial_through_relay() -> None:
    from libp2p.peer.id import ID

    async with trio.open_nursery() as nursery:
        relay = await start_node(nursery, relay=RelayServerLimits())
        a = await _private(nursery, relay)
        await wait_until(lambda: _circuit(a) is not None, 15)
        circ = _circuit(a)
        assert circ is not None and relay_of(circ) == relay.net.peer_id
        assert a.net.stats()["relay_reserved"] == 1
        # The relay learned the circuit address from a's announcement (peer exchange).
        await wait_until(lambda: any(is_circuit(x) for p in relay.net.peers() for x in p.addrs), 10)
        # b knows a only by its circuit address and dials through the relay.
        b = await start_node(nursery, [], degree=0)
        fact = a.fact("held by a")
        await b.net._connect(ID.from_base58(a.net.peer_id), [circ])
        await wait_until(lambda: a.net.peer_id in {p.peer_id for p in b.net.peers()}, 10)
        via = {p.peer_id: p.via for p in b.net.peers()}
        assert via[a.net.peer_id] == "relayed" and via[relay.net.peer_id] == "direct"
        assert {p.peer_id: p.via for p in a.net.peers()}[b.net.peer_id] == "relayed"
        assert b.net.stats()["relay_dials"] == 1 and b.net.reach_stats()["dial_ms"]
        # A stream over the relayed connection: anti-entropy brings a's fact to b.
        await b.net._sync_with(a.net.peer_id)
        with trio.fail_after(10):
            await b.col.wait_for(fact_id(fact))
        # The dialer made no reservation of its own (gap 4 of issue 19).
        assert "relay_reserved" not in b.net.stats()
        # A dial-back asked over a relayed connection is refused: the address a
        # would observe is the relay's, and it would dial whatever the relay hosts.
        rb = b.net._reach
        assert rb is not None
        assert await rb.ask_dialback(a.net.peer_id, [circ]) is None
        assert a.net.stats()["dialback_refused"] == 1 and "dialback_served" not in a.net.stats()
        nursery.cancel_scope.cancel()


async def test_reservation_renewed_and_recovered_after_relay_restart() -> None:
    async with trio.open_nursery() as nursery:
        seed = os.urandom(32)
        relay = await start_node(nursery, seed=seed, relay=RelayServerLimits())
        port = relay.net.addrs()[0].split("/tcp/")[1].split("/")[0]
        a = await _private(nursery, relay, relay_refresh=0.5)
        await wait_until(lambda: a.net.stats().get("relay_renewed", 0) >= 2, 15)
        relay.cancel.cancel()
        await wait_until(lambda: _circuit(a) is None, 15)  # the lost slot is no longer announced
        assert a.net.stats()["relay_lost"] >= 1
        # The relay comes back on the same address: a reconnects and reserves again.
        col = Collector()
        net2 = LibP2PNetwork(
            seed, [f"/ip4/127.0.0.1/tcp/{port}"], [], sync_source=col, relay=RelayServerLimits(), **FAST
        )
        await nursery.start(_run_node, net2, col)
        await wait_until(lambda: _circuit(a) is not None, 20)
        assert a.net.stats()["relay_reserved"] >= 2
        nursery.cancel_scope.cancel()


async def test_relay_limits_refuse_reservations_beyond_the_cap() -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_node(nursery, relay=RelayServerLimits(max_reservations=1))
        a = await _private(nursery, relay)
        await wait_until(lambda: _circuit(a) is not None, 15)
        c = await _private(nursery, relay)
        await wait_until(lambda: c.net.stats().get("relay_reserve_failures", 0) >= 1, 15)
        assert _circuit(c) is None
        # A node that is not a relay refuses too: no hop protocol.
        plain = await start_node(nursery)
        d = await _private(nursery, plain)
        await wait_until(lambda: d.net.stats().get("relay_reserve_failures", 0) >= 1, 15)
        assert _circuit(d) is None
        nursery.cancel_scope.cancel()


async def test_exception_in_a_stream_handler_does_not_kill_the_node() -> None:
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery)
        b = await start_node(nursery, a.net.addrs())
        await wait_until(lambda: a.net.peers() and b.net.peers(), 10)

        async def boom(stream: Any) -> None:
            raise ValueError("handler bug")

        a.net._host.set_stream_handler("/p2pci-test/boom/1", boom)
        before = patches.handler_errors
        for _ in range(3):
            with pytest.raises(Exception):  # noqa: B017 - reset or EOF, either is fine
                async with b.net._stream(a.net.peer_id, "/p2pci-test/boom/1") as s:
                    await s.write(b"x")
                    await s.read(1)
                    raise ConnectionError("no answer")
        await wait_until(lambda: patches.handler_errors >= before + 3, 10)
        # a is alive and still serves: a fact reaches b by anti-entropy.
        fact = a.fact("after the bug")
        await b.net._sync_with(a.net.peer_id)
        with trio.fail_after(10):
            await b.col.wait_for(fact_id(fact))
        nursery.cancel_scope.cancel()


async def test_dialback_fresh_connection_and_rate_limit() -> None:
    async with trio.open_nursery() as nursery:
        b = await start_node(nursery)
        a = await start_node(nursery, b.net.addrs())
        c = await start_node(nursery, b.net.addrs())
        await wait_until(lambda: len(b.net.peers()) == 2, 10)
        boot = [x for x in b.net.addrs() if not is_circuit(x)]
        ra, rc = a.net._reach, c.net._reach
        assert ra is not None and rc is not None
        # a listens: b reaches it on a fresh connection although they are connected already
        assert await ra.ask_dialback(b.net.peer_id, boot) is True
        # c claims a port nobody listens on: unreachable (AutoNAT would say PUBLIC here)
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        rc._listen_port = lambda: closed
        assert await rc.ask_dialback(b.net.peer_id, boot) is False
        # a second request from a within the minute is refused, not served
        assert await ra.ask_dialback(b.net.peer_id, boot) is None
        st = b.net.stats()
        assert st["dialback_served"] == 2 and st["dialback_refused"] == 1
        # askers under fresh keys (free) fill b's table within the minute: a new one is refused
        # (the table used to be cleared, and every key was served again at once)
        d = await start_node(nursery, b.net.addrs())
        rd, rb = d.net._reach, b.net._reach
        assert rd is not None and rb is not None
        now = trio.current_time()
        rb._dialback_last.update({f"fresh{i}": now for i in range(reach.DIALBACK_ASKERS)})
        assert await rd.ask_dialback(b.net.peer_id, boot) is None
        assert b.net.stats()["dialback_refused"] == 2 and b.net.stats()["dialback_served"] == 2
        # once they are a minute old they are forgotten (a's entry, newer, is kept) and d is served
        for k in [k for k in rb._dialback_last if k.startswith("fresh")]:
            rb._dialback_last[k] = now - reach.DIALBACK_EVERY_S
        assert await rd.ask_dialback(b.net.peer_id, boot) is True
        assert a.net.peer_id in rb._dialback_last and d.net.peer_id in rb._dialback_last
        assert not any(k.startswith("fresh") for k in rb._dialback_last)
        nursery.cancel_scope.cancel()


async def test_stream_to_a_peer_of_unknown_address_asks_the_bootstrap() -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_node(nursery, relay=RelayServerLimits())
        a = await _private(nursery, relay)
        await wait_until(lambda: _circuit(a) is not None, 15)
        await wait_until(lambda: any(is_circuit(x) for p in relay.net.peers() for x in p.addrs), 10)
        b = await start_node(nursery, relay.net.addrs(), degree=1)  # the relay, nobody else
        await wait_until(lambda: relay.net.peer_id in {p.peer_id for p in b.net.peers()}, 10)
        b.net._book.pop(a.net.peer_id, None)  # b never heard of a's addresses
        fact = a.fact("find me")
        await b.net._sync_with(a.net.peer_id)
        with trio.fail_after(10):
            await b.col.wait_for(fact_id(fact))
        assert b.net.stats()["px"] >= 2  # first contact + the lookup
        nursery.cancel_scope.cancel()


async def test_relay_cuts_a_circuit_past_its_bytes_and_its_seconds(tmp_path: Any) -> None:
    """A NATed peer and a partner try to move more through a relay than it grants: with 1 MiB per
    circuit a 3 MiB blob never crosses (the circuit is cut, the fetch fails, no range lands); with
    2 s per circuit, a partner that keeps the circuit busy (a byte every 0.2 s) is cut after 2 s."""
    from libp2p.peer.id import ID

    from p2pci.net import wire
    from p2pci.net.base import BlobUnavailable
    from p2pci.store.blobs import BlobStore

    store = BlobStore(tmp_path / "a")
    ref = store.put_bytes(os.urandom(3 << 20))
    async with trio.open_nursery() as nursery:
        relay = await start_node(nursery, relay=RelayServerLimits(circuit_bytes=1 << 20, circuit_seconds=3600))
        a = await _private(nursery, relay, blobs=store, read_timeout=2.0)
        await wait_until(lambda: _circuit(a) is not None, 15)
        circ = _circuit(a)
        assert circ is not None
        b = await start_node(nursery, [], degree=0, read_timeout=2.0)
        await b.net._connect(ID.from_base58(a.net.peer_id), [circ])
        await wait_until(lambda: a.net.peer_id in {p.peer_id for p in b.net.peers()}, 10)
        with trio.fail_after(30), pytest.raises(BlobUnavailable):
            await b.net.fetch_blob(ref, BlobStore(tmp_path / "b"), peers=[a.net.peer_id])
        assert b.net.stats().get("blob_received_bytes", 0) == 0, b.net.stats()

        relay2 = await start_node(nursery, relay=RelayServerLimits(circuit_seconds=2))
        c = await _private(nursery, relay2, read_timeout=30.0, request_timeout=60.0)
        await wait_until(lambda: _circuit(c) is not None, 15)
        circ2 = _circuit(c)
        assert circ2 is not None
        d = await start_node(nursery, [], degree=0)
        await d.net._connect(ID.from_base58(c.net.peer_id), [circ2])
        await wait_until(lambda: c.net.peer_id in {p.peer_id for p in d.net.peers()}, 10)
        t0 = trio.current_time()
        stream = await d.net._host.new_stream(ID.from_base58(c.net.peer_id), [wire.PROTO_SYNC])
        await stream.write(wire.LEN.pack(1000))  # a sync hello's header, then its body trickled
        with trio.fail_after(15):
            while True:
                try:
                    await stream.write(b"\x90")
                except Exception:
                    break  # the relay cut the circuit under us
                await trio.sleep(0.2)  # the attack's pace (not a wait for a condition)
        took = trio.current_time() - t0
        assert 2.0 <= took < 10.0, took
        nursery.cancel_scope.cancel()


async def test_mdns_answers_are_bounded_like_peer_exchange() -> None:
    """A LAN host answering mDNS with hostile peer infos, through py-libp2p's discovery emitter
    (what its mDNS listener calls from zeroconf's thread): addresses over 256 chars, more than 16
    per peer, out of scope or not ip/tcp, and 1,500 made-up peers. The book keeps at most 16
    addresses of at most 256 chars per peer and at most 1,000 peers."""
    import multiaddr
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.discovery.events.peerDiscovery import peerDiscovery
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    from p2pci.net import wire

    net = LibP2PNetwork(os.urandom(32), ["/ip4/0.0.0.0/tcp/0"], [], **FAST)  # mDNS on: any scope
    assert net.mdns
    loud = ID.from_pubkey(create_new_key_pair(os.urandom(32)).public_key)
    long_host = ".".join(c * 60 for c in "abcd")
    addrs = [multiaddr.Multiaddr(f"/ip4/192.168.1.5/tcp/1/dns4/{long_host}")]  # 328 chars with /p2p/<id>
    addrs += [multiaddr.Multiaddr(f"/ip4/192.168.1.{i}/tcp/4001") for i in range(1, 40)]
    addrs += [multiaddr.Multiaddr("/ip4/192.168.1.9/udp/4001"), multiaddr.Multiaddr("/ip4/8.8.8.8/tcp/1")]
    handler = net._mdns_handler()
    try:
        await trio.to_thread.run_sync(peerDiscovery.emit_peer_discovered, PeerInfo(loud, addrs))
        others = [ID.from_pubkey(create_new_key_pair(os.urandom(32)).public_key) for _ in range(1500)]
        for pid in others:
            peerDiscovery.emit_peer_discovered(PeerInfo(pid, [multiaddr.Multiaddr("/ip4/10.0.0.1/tcp/1")]))
        await wait_until(lambda: net._stats.snapshot().get("mdns_found", 0) == 1501, 10)
    finally:
        peerDiscovery.unregister_peer_discovered_handler(handler)
    book = net._book
    assert len(book) <= 1000
    assert all(len(b.addrs) <= wire.MAX_ADDRS for b in book.values())
    assert all(len(a) <= wire.MAX_ADDR_LEN for b in book.values() for a in b.addrs), max(
        (a for b in book.values() for a in b.addrs), key=len)
    assert not any("/udp/" in a for b in book.values() for a in b.addrs)


async def test_peer_exchange_from_many_identities_keeps_the_book_bounded() -> None:
    """A peer that connects and tells its own addresses over `/p2pci/peers/1` got a book entry
    however full the book was: the 1,000-peer bound held only for addresses learned of others.
    libp2p identities cost nothing, so one host reconnecting under fresh keys grew the book (up
    to 16 addresses of 256 chars each) without bound. With the book full of made-up peers, three
    fresh identities exchanging peers leave it at 1,000."""
    from libp2p.peer.id import ID

    from p2pci.net import wire
    from p2pci.net.libp2p_net import libp2p_peer_id
    from tests.integration.test_net_libp2p import _info, raw_peer

    full = 1000  # libp2p_net.MAX_BOOK

    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, degree=0, sync_interval=600)  # degree 0: it dials nobody
        node.net.add_peer_addrs(
            [f"/ip4/127.0.0.1/tcp/{1 + i}/p2p/{libp2p_peer_id(os.urandom(32))}" for i in range(full)]
        )
        assert len(node.net._book) == full
        for _ in range(3):
            async with raw_peer() as (host, _):
                with trio.fail_after(10):
                    await host.connect(_info(node.net.addrs()[0]))
                stream = await host.new_stream(ID.from_base58(node.net.peer_id), [wire.PROTO_PEERS])
                me = host.get_id().to_base58()
                own = [a if "/p2p/" in a else f"{a}/p2p/{me}" for a in map(str, host.get_addrs())]
                await stream.write(wire.peers_request(own))
                with trio.fail_after(5):
                    assert await stream.read(4)  # the server has read our addresses and answers
        assert len(node.net._book) == full
        assert node.net.stats().get("book_full", 0) >= 3
        nursery.cancel_scope.cancel()
