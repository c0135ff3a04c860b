"""A bare network node process for the net e2e tests (no daemon, no store).

    python -m tests.e2e.net_node SEED_HEX [--bootstrap MA]... [--sync-interval S]

Prints JSON lines on stdout: {"ready", "peer_id", "addrs"} once, then
{"got": fact_id_hex, "t": unix_time} per delivered fact. Reads commands on
stdin: `publish TAG` (prints {"published": id_hex, "t"}), `peers`
(prints {"peers": n}), `count` (prints {"count": n}).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Any

import trio

from p2pci.core.messages import Cancel
from p2pci.core.signing import NodeKey, seal
from p2pci.net.libp2p_net import LibP2PNetwork
from p2pci.testing.net import Collector


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("seed")
    ap.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--sync-interval", type=float, default=2.0)
    args = ap.parse_args()
    key = NodeKey.from_seed(bytes.fromhex(args.seed))
    col = Collector()
    net = LibP2PNetwork(
        key.seed,
        [args.listen],
        args.bootstrap,
        sync_source=col,
        sync_interval=args.sync_interval,
        heartbeat=0.5,
        dial_interval=0.2,
        redial_min=0.2,
        redial_max=2.0,
        px_interval=1.0,
    )

    async def deliver() -> None:
        async for raw, _peer in net.facts():
            col.add(raw)
            emit({"got": hashlib.sha256(raw).hexdigest(), "t": time.time()})

    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        nursery.start_soon(deliver)
        emit({"ready": True, "peer_id": net.peer_id, "addrs": net.addrs()})
        stdin = trio.lowlevel.FdStream(os.dup(0))
        buf = b""
        while True:
            data = await stdin.receive_some(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd, _, arg = line.decode().strip().partition(" ")
                if cmd == "publish":
                    raw = seal(key, Cancel(job=hashlib.sha256(arg.encode()).digest())).raw
                    col.add(raw)
                    t = time.time()
                    await net.publish(raw)
                    emit({"published": hashlib.sha256(raw).hexdigest(), "t": t})
                elif cmd == "peers":
                    emit({"peers": len(net.peers())})
                elif cmd == "count":
                    emit({"count": len(col.facts)})
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
