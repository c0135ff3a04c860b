"""Tiny TCP probes for the namespace harness tests (standard library only).

python3 probe.py serve PORT            # answers each connection with "ip:port\n" it saw
python3 probe.py connect IP PORT [-t S] [--bind-port P]
    prints JSON {"ok", "seen", "rtt_ms", "error"}: `seen` is our address
    as the server saw it (after NAT), rtt_ms the TCP handshake time.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time


def serve(port: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    print("listening", flush=True)
    while True:
        c, addr = s.accept()
        with c:
            c.sendall(f"{addr[0]}:{addr[1]}\n".encode())


def connect(ip: str, port: int, timeout: float, bind_port: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if bind_port:
        s.bind(("0.0.0.0", bind_port))
    s.settimeout(timeout)
    t0 = time.monotonic()
    out: dict[str, object] = {"ok": False, "seen": None, "rtt_ms": None, "error": None}
    try:
        s.connect((ip, port))
        out["rtt_ms"] = (time.monotonic() - t0) * 1000
        out["seen"] = s.makefile().readline().strip()
        out["ok"] = True
    except TimeoutError:
        out["error"] = "timeout"
    except OSError as exc:
        out["error"] = type(exc).__name__
    finally:
        s.close()
    print(json.dumps(out), flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("port", type=int)
    c = sub.add_parser("connect")
    c.add_argument("ip")
    c.add_argument("port", type=int)
    c.add_argument("-t", type=float, default=3.0)
    c.add_argument("--bind-port", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "serve":
        return serve(a.port)
    return connect(a.ip, a.port, a.t, a.bind_port)


if __name__ == "__main__":
    sys.exit(main())
