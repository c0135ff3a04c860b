"""A bare py-libp2p host with gossipsub, the floor for the footprint benchmark.

Run as ``python -m bench.bare_host [--connect MA]...``: listens on
127.0.0.1 (tcp port 0), subscribes to the board topic, dials the given peers,
prints ``bare ready: <peer_id> <addr>`` and idles until killed. No p2pci code
is imported, so its RSS is what py-libp2p alone costs. The host and router
settings are the ones `p2pci.net.libp2p_net.LibP2PNetwork` uses (Noise only,
Yamux, GossipSub 6/4/12 with a 1 s heartbeat), so the difference to a daemon
is p2pci itself, not a different library configuration.
"""

from __future__ import annotations

import argparse
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

TOPIC = "/p2pci/board/1"


async def main(connect: list[str], listen: str) -> None:
    key_pair = create_new_key_pair()
    listen_addrs = [multiaddr.Multiaddr(listen)]
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
        muxer_preference="YAMUX",
        listen_addrs=listen_addrs,
    )
    router = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        heartbeat_initial_delay=0.1,
        gossip_window=3,
        gossip_history=5,
        prune_back_off=5,
        unsubscribe_back_off=5,
        do_px=False,
        max_messages_per_topic_per_second=500.0,
        eclipse_protection_enabled=False,
        adaptive_gossip_enabled=False,
    )
    pubsub = Pubsub(host, router, strict_signing=False)  # as LibP2PNetwork: our validator checks envelopes
    async with host.run(listen_addrs=listen_addrs):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(TOPIC)
            for addr in connect:
                with trio.move_on_after(10):
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
            addrs = [f"{a}" for a in host.get_addrs()]
            print(f"bare ready: {host.get_id()} {' '.join(addrs)}", flush=True)
            async with trio.open_nursery() as nursery:

                async def drain() -> None:
                    while True:
                        await sub.get()

                nursery.start_soon(drain)
                await trio.sleep_forever()


def cli() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", action="append", default=[])
    ap.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    ns = ap.parse_args()
    try:
        trio.run(main, ns.connect, ns.listen)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    cli()
