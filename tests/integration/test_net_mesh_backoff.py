"""GossipSub mesh repair between real libp2p hosts: a PRUNE is followed by a backoff on *both* ends,
and a GRAFT that comes after that backoff is accepted, so no pair PRUNEs each other for ever
(docs/internals.md, "GossipSub")."""

from __future__ import annotations

import time
from typing import Any

import trio

from p2pci.net.base import TOPIC
from p2pci.net.libp2p_net import GOSSIPSUB_PARAMS
from tests.integration.test_net_libp2p import _info, line, raw_peer, start_node, wait_until

PRUNE_BACK_OFF = GOSSIPSUB_PARAMS["prune_back_off"]


def _router(node: Any) -> Any:
    return node.net._pubsub.router


def _meshed(a: Any, b: Any) -> bool:
    ra, rb = _router(a), _router(b)
    return rb.pubsub.my_id in ra.mesh.get(TOPIC, ()) and ra.pubsub.my_id in rb.mesh.get(TOPIC, ())


async def test_the_pruning_side_backs_off_and_the_pair_meshes_again() -> None:
    """A heartbeat PRUNE (mesh over D_hi) left the pruning node free to GRAFT the same peer at its
    next heartbeat, into the peer's backoff: it backs off now, and the pair meshes again after it."""
    async with line(2) as (a, b):
        await wait_until(lambda: _meshed(a, b), 15)
        ra, b_id = _router(a), _router(b).pubsub.my_id
        prunes: list[float] = []
        graft_at: list[float] = []
        emit_graft = ra.emit_graft

        async def counted_graft(topic: str, peer: Any) -> None:
            if peer == b_id:
                graft_at.append(time.monotonic())
            await emit_graft(topic, peer)

        ra.emit_graft = counted_graft  # an observer: the GRAFT still goes out
        ra.mesh[TOPIC].discard(b_id)  # what mesh_heartbeat does before it PRUNEs
        prunes.append(time.monotonic())
        await ra.emit_prune(TOPIC, b_id, False, False)
        assert ra._check_back_off(b_id, TOPIC)  # upstream: no backoff on the pruning side
        await wait_until(lambda: _meshed(a, b), 3 * PRUNE_BACK_OFF)
        # No GRAFT from a to b inside its own backoff (whole seconds: at least prune_back_off - 1).
        assert all(t - prunes[0] >= PRUNE_BACK_OFF - 1 for t in graft_at), (prunes, graft_at)


async def test_a_graft_just_after_the_backoff_is_not_a_flood() -> None:
    """A peer that PRUNEd us 4.2 s ago with a 5 s backoff may GRAFT again: whole-second backoffs
    let that GRAFT look up to a second early. Upstream's flood check (min(10 s, prune_back_off))
    PRUNEd it, and the two ends answered each other's GRAFTs with PRUNEs from then on. A GRAFT one
    second after a PRUNE is still a flood."""
    from libp2p.pubsub.pb import rpc_pb2

    async with line(2) as (a, b):
        await wait_until(lambda: _meshed(a, b), 15)
        rb, a_id = _router(b), _router(a).pubsub.my_id
        pruned: list[Any] = []
        emit_prune = rb.emit_prune

        async def counted_prune(topic: str, peer: Any, do_px: bool, unsub: bool) -> None:
            pruned.append(peer)
            await emit_prune(topic, peer, do_px, unsub)

        rb.emit_prune = counted_prune  # an observer: the PRUNE still goes out
        for since, flood in ((PRUNE_BACK_OFF - 0.8, False), (1.0, True)):
            pruned.clear()
            # b took a out of its mesh and received a's PRUNE `since` seconds ago; no backoff left
            rb.mesh[TOPIC].discard(a_id)
            rb.back_off.get(TOPIC, {}).pop(a_id, None)
            rb.graft_flood_tracking[a_id][TOPIC] = time.time() - since
            await rb.handle_graft(rpc_pb2.ControlGraft(topicID=TOPIC), a_id)
            assert (a_id in rb.mesh[TOPIC], pruned) == ((False, [a_id]) if flood else (True, [])), since


async def test_hostile_prunes_cannot_grow_the_backoff_tables() -> None:
    """A peer GRAFTs and PRUNEs us for 2,000 made-up topics and asks for a backoff of 2^64-1 s on ours: the
    made-up topics leave no trace (upstream kept a backoff and a flood stamp for each), and the
    backoff it gets is at most BACKOFF_MAX_S. Expired entries of departed peers are swept."""
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2

    from p2pci.net.libp2p_net import BACKOFF_MAX_S, BACKOFF_TABLE_SWEEP

    async with trio.open_nursery() as nursery, raw_peer() as (host, ps):
        node = await start_node(nursery)
        await host.connect(_info(node.net.addrs()[0]))
        router, me = _router(node), host.get_id()
        await wait_until(lambda: me in router.pubsub.peer_topics.get(TOPIC, ()), 10)
        ctrl = rpc_pb2.ControlMessage()
        ctrl.prune.extend(rpc_pb2.ControlPrune(topicID=f"/made-up/{i}", backoff=60) for i in range(2000))
        ctrl.graft.extend(rpc_pb2.ControlGraft(topicID=f"/made-up/{i}") for i in range(2000))  # PRUNEd back
        ctrl.prune.append(rpc_pb2.ControlPrune(topicID=TOPIC, backoff=2**64 - 1))
        await ps.router.emit_control_message(ctrl, ID.from_base58(node.net.peer_id))
        await wait_until(lambda: me in router.back_off.get(TOPIC, {}), 10)
        assert set(router.back_off) == {TOPIC}, len(router.back_off)
        assert all(TOPIC == t for per_peer in router.graft_flood_tracking.values() for t in per_peer)
        assert router.back_off[TOPIC][me] <= int(time.time()) + BACKOFF_MAX_S
        # departed peers' expired backoffs go once the table is big
        table = router.back_off[TOPIC]
        for i in range(BACKOFF_TABLE_SWEEP):
            table[ID(b"\x00\x24" + i.to_bytes(36, "big"))] = 0  # long expired
        router._add_back_off(me, TOPIC, False)
        assert set(table) == {me}
        node.cancel.cancel()


async def test_a_peer_whose_disconnect_pubsub_missed_is_swept_and_meshes_again() -> None:
    """py-libp2p's pubsub acts on a disconnect notification once, and skips it when another
    connection to the peer is listed at that moment (one that is closing too, when a peer redials
    as its old connection closes). The peer then stays in `pubsub.peers` with no connection, and
    its next connection gets no pubsub stream from us: it never learns our subscription. Our
    reconcile drops such peers (`pubsub_stale_peers`). Here the notification is lost outright."""
    from libp2p.pubsub.pubsub_notifee import PubsubNotifee

    # redials only after 2 s: b's own pubsub has handled the disconnect by then (else b would
    # keep a's old stream, a case of the test below, and still know a's subscription)
    async with line(2, redial_min=2.0, redial_max=4.0) as (a, b):
        await wait_until(lambda: _meshed(a, b), 15)
        pa, pb = a.net._pubsub, b.net._pubsub
        a_id, b_id = pa.my_id, pb.my_id
        network = a.net._host.get_network()
        (notifee,) = [n for n in network.notifees if isinstance(n, PubsubNotifee)]
        lost: list[Any] = []

        async def lose_one(net: Any, conn: Any) -> None:  # the first notification about b is lost
            if conn.muxed_conn.peer_id == b_id and not lost:
                lost.append(conn)
                return
            await PubsubNotifee.disconnected(notifee, net, conn)

        notifee.disconnected = lose_one
        old = list(network.get_connections(b_id))
        await a.net._host.disconnect(b_id)
        assert lost
        # b is dropped from a's pubsub although pubsub never heard of the disconnect ...
        await wait_until(lambda: a.net.stats().get("pubsub_stale_peers", 0) >= 1, 10)
        await wait_until(lambda: a_id not in pb.peers, 10)  # b has seen the disconnect too

        def again() -> bool:  # a new connection, and b knows a's subscription over it
            new = [c for c in network.get_connections(b_id) if c not in old]
            return bool(new) and b_id in pa.peers and a_id in pb.peer_topics.get(TOPIC, ())

        # ... so the next connection gets a's pubsub stream: b learns a's subscription again
        await wait_until(again, 15)
        await wait_until(lambda: _meshed(a, b), 15)


async def test_a_pubsub_stream_that_died_under_a_live_connection_is_replaced() -> None:
    """Our pubsub stream to a peer is reset while the connection lives. Upstream notices when it
    next writes to it, or the reconcile sees it closed first (`pubsub_dead_streams`): either way
    `_handle_dead_peer` drops it and opens a new one, and the peer keeps the topics it announced
    (patches.keep_live_subscriptions: upstream forgot them, and the new stream then served no
    topic, so the pair never meshed again until it reconnected)."""
    async with line(2) as (a, b):
        await wait_until(lambda: _meshed(a, b), 15)
        pa, b_id = a.net._pubsub, b.net._pubsub.my_id
        old = pa.peers[b_id]
        await old.reset()

        def replaced() -> bool:
            new = pa.peers.get(b_id)
            return new is not None and new is not old and not new.is_closed

        await wait_until(replaced, 10)
        assert b_id in pa.peer_topics.get(TOPIC, ())
        assert a.net.stats().get("pubsub_stale_peers", 0) == 0  # still connected: not stale
        await wait_until(lambda: _meshed(a, b), 15)
