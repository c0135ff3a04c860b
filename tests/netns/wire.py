"""A user-space wire: copies Ethernet frames between two interfaces with delay and loss.

This kernel has no `netem` qdisc (tc's tbf/htb shape bandwidth but add no
delay), so the namespace harness (tests/netns/topo.py) puts this process on a
link instead: the link's two veth ends stay unbridged, and every frame read
on one (AF_PACKET, all protocols) is written to the other after `--delay-ms`,
or dropped with probability `--loss`. Order is kept (constant delay); the
queue is bounded like a router's buffer (`--queue` frames, then tail drop).

    python3 wire.py run A B --delay-ms 25 --loss 0.01 [--seed N]
    python3 wire.py offload-off DEV...      # see offload_off()

It exits when either interface goes away (its namespace was deleted), so a
torn-down topology leaves no wire behind even if nobody kills it. Standard
library only: it runs under any python3 inside `ip netns exec`.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import random
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCETHTOOL = 0x8946
# Legacy ethtool "set" commands (struct ethtool_value {u32 cmd; u32 data}).
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SSG = 0x19
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24
ETHTOOL_SGRO = 0x2C


def offload_off(devs: list[str]) -> None:
    """Switch off checksum offload, TSO, GSO and GRO on `devs` (no ethtool binary needed).

    With offloads on, a veth hands over TCP segments whose checksum is not
    filled in yet, and 64 KiB GSO super-frames: copied by a packet socket they
    arrive corrupt or too big. Every interface that sends into a wire needs this.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for dev in devs:
            for cmd in (ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO, ETHTOOL_STXCSUM, ETHTOOL_SSG):
                val = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
                ifr = struct.pack("16sP", dev.encode(), ctypes.addressof(val))
                try:
                    fcntl.ioctl(s, SIOCETHTOOL, ifr)
                except OSError as exc:
                    if cmd == ETHTOOL_STXCSUM:  # the one that matters
                        raise SystemExit(f"offload-off {dev}: {exc}") from None


def _sock(dev: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((dev, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    return s


def run(a: str, b: str, delay_s: float, loss: float, queue: int, seed: int | None) -> int:
    rng = random.Random(seed)
    sa, sb = _sock(a), _sock(b)
    other = {sa: sb, sb: sa}
    heap: list[tuple[float, int, socket.socket, bytes]] = []
    seq = 0
    print(f"wire {a}<->{b} delay={delay_s * 1000:.1f}ms loss={loss}", flush=True)
    while True:
        timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else None
        try:
            readable, _, _ = select.select([sa, sb], [], [], timeout)
            for s in readable:
                for _ in range(256):
                    try:
                        frame, addr = s.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue  # our own writes, looped back to the packet socket
                    if loss and rng.random() < loss:
                        continue
                    if len(heap) >= queue:
                        continue  # tail drop
                    seq += 1
                    heapq.heappush(heap, (time.monotonic() + delay_s, seq, other[s], frame))
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, out, frame = heapq.heappop(heap)
                try:
                    out.send(frame)
                except BlockingIOError:
                    pass  # a full tx queue drops, like a real one
        except OSError as exc:  # an interface went away: the topology is gone
            print(f"wire {a}<->{b}: {exc}; exiting", flush=True)
            return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("a")
    r.add_argument("b")
    r.add_argument("--delay-ms", type=float, default=0.0)
    r.add_argument("--loss", type=float, default=0.0)
    r.add_argument("--queue", type=int, default=4096)
    r.add_argument("--seed", type=int, default=None)
    o = sub.add_parser("offload-off")
    o.add_argument("devs", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "offload-off":
        offload_off(args.devs)
        return 0
    return run(args.a, args.b, args.delay_ms / 1000.0, args.loss, args.queue, args.seed)


if __name__ == "__main__":
    sys.exit(main())
