"""The namespace harness itself: NAT kinds, delay, loss, partitions, clean-up.

Each assertion has a mutant in mind: a NAT that forwards unsolicited
packets, a "symmetric" NAT that preserves ports, a wire that adds no delay,
a partition that lets packets through, a teardown that leaks a namespace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.netns.topo import Host, Topology, clean_stale, list_namespaces

PROBE = str(Path(__file__).with_name("probe.py"))
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def server(t: Topology, host: Host, port: int) -> Iterator[None]:
    p = subprocess.Popen(
        [*t.exec_argv(host), sys.executable, PROBE, "serve", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert p.stdout is not None and p.stdout.readline().startswith(b"listening")
        yield
    finally:
        p.kill()
        p.wait()


def connect(
    t: Topology, host: Host, ip: str, port: int, *, timeout: float = 2, bind_port: int = 0
) -> dict[str, Any]:
    argv = [sys.executable, PROBE, "connect", ip, str(port), "-t", str(timeout)]
    if bind_port:
        argv += ["--bind-port", str(bind_port)]
    out: dict[str, Any] = json.loads(t.sh(host.ns, *argv, timeout=timeout + 10).stdout)
    return out


def test_nat_kinds(topo: Topology) -> None:
    s1 = topo.public("s1", "100.64.0.10")
    s2 = topo.public("s2", "100.64.0.11")
    home = topo.nat("home", "100.64.0.1", "10.1.0.0/24", drop_unsolicited=True)
    bare = topo.nat("bare", "100.64.0.2", "10.2.0.0/24")
    sym = topo.nat("sym", "100.64.0.3", "10.3.0.0/24", symmetric=True)
    h_home, h_bare, h_sym = topo.lan_host(home, "hh"), topo.lan_host(bare, "hb"), topo.lan_host(sym, "hs")
    with (
        server(topo, s1, 7000),
        server(topo, s2, 7000),
        server(topo, h_home, 7001),
        server(topo, h_bare, 7001),
    ):
        # Outbound works from every LAN and is masqueraded to the router's address.
        for h, site in ((h_home, home), (h_bare, bare), (h_sym, sym)):
            r = connect(topo, h, s1.ip, 7000)
            assert r["ok"], (h.name, r)
            assert r["seen"].split(":")[0] == site.wan_ip
        # Port mapping: a port-preserving NAT keeps our source port for both
        # servers; the symmetric one picks a fresh random port per connection.
        seen_bare = {connect(topo, h_bare, s.ip, 7000, bind_port=5555)["seen"] for s in (s1, s2)}
        assert seen_bare == {f"{bare.wan_ip}:5555"}
        seen_sym = [
            connect(topo, h_sym, s.ip, 7000, bind_port=5555 + i)["seen"] for i, s in enumerate((s1, s2))
        ]
        ports = {int(x.split(":")[1]) for x in seen_sym}
        assert ports.isdisjoint({5555, 5556}) and len(ports) == 2, seen_sym
        # Unsolicited inbound: the home router drops it silently (timeout), the
        # bare Linux NAT answers with a RST (refused); neither reaches the host.
        assert connect(topo, s1, home.wan_ip, 7001, timeout=1.5)["error"] == "timeout"
        assert connect(topo, s1, bare.wan_ip, 7001, timeout=1.5)["error"] == "ConnectionRefusedError"
        # The LAN addresses are not routable from the internet at all.
        assert not connect(topo, s1, h_home.ip, 7001, timeout=1)["ok"]


def test_delay_loss_and_partition(topo: Topology) -> None:
    far = topo.public("far", "100.64.0.10", delay_ms=30)
    near = topo.public("near", "100.64.0.11")
    site = topo.nat("lan", "100.64.0.1", "10.1.0.0/24", delay_ms=20, loss=0.0)
    h = topo.lan_host(site, "h")
    with server(topo, far, 7000), server(topo, near, 7000):
        connect(topo, h, far.ip, 7000)  # warm the ARP caches
        far_rtt = min(connect(topo, h, far.ip, 7000)["rtt_ms"] for _ in range(3))
        near_rtt = min(connect(topo, h, near.ip, 7000)["rtt_ms"] for _ in range(3))
        # One-way 30 + 20 ms: the handshake takes at least 100 ms; via near
        # only the LAN's 20 ms each way count.
        assert 100 <= far_rtt < 250, far_rtt
        assert 40 <= near_rtt < 150, near_rtt
        topo.partition(site)
        assert connect(topo, h, near.ip, 7000, timeout=1)["error"] == "timeout"
        assert connect(topo, near, site.wan_ip, 7000, timeout=1)["error"] == "timeout"
        topo.heal(site)
        assert connect(topo, h, near.ip, 7000)["ok"]


def test_loss_is_applied(topo: Topology) -> None:
    """A 30 % lossy uplink loses handshakes (TCP retries SYN after 1 s); a clean one never."""
    srv = topo.public("srv", "100.64.0.10")
    lossy = topo.public("lossy", "100.64.0.11", loss=0.3)
    with server(topo, srv, 7000):
        connect(topo, lossy, srv.ip, 7000)
        rtts = [connect(topo, lossy, srv.ip, 7000, timeout=5)["rtt_ms"] for _ in range(12)]
        slow = sum(1 for rtt in rtts if rtt is None or rtt > 500)  # None: even the retries were lost
    # P(handshake has no loss) = 0.7^2 (SYN, SYN-ACK): ~6 of 12 see a retry.
    assert slow >= 1


def test_teardown_on_error_and_stale_cleanup(tmp_path: Path) -> None:
    made: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), Topology() as t:
        t.public("x", "100.64.0.10", delay_ms=5)
        made = list(t.namespaces)
        wire_pids = [w.pid for w in t.wires]
        raise RuntimeError("boom")
    assert made and not set(made) & set(list_namespaces())
    assert all(gone(pid) for pid in wire_pids)

    # A harness run killed with SIGKILL leaves its namespaces and wire behind;
    # the next Topology (clean_stale) removes them.
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.netns.topo import Topology
        t = Topology()
        t.public("y", "100.64.0.10", delay_ms=5)
        print(t.prefix, *[w.pid for w in t.wires], flush=True)
        time.sleep(60)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    prefix, *wires = p.stdout.readline().split()
    assert any(ns.startswith(prefix + "-") for ns in list_namespaces())
    p.send_signal(signal.SIGKILL)
    p.wait()
    removed = clean_stale()
    assert any(ns.startswith(prefix + "-") for ns in removed)
    assert not any(ns.startswith(prefix + "-") for ns in list_namespaces())
    assert all(gone(int(pid)) for pid in wires)


def gone(pid: int, timeout: float = 10) -> bool:
    """True once `pid` no longer runs (a SIGKILLed process may take a moment to exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False
