"""Network-namespace topologies for NAT tests (root only; `ip` and `iptables`).

    with Topology() as t:                       # every namespace deleted on exit
        t.internet()                            # a bridge in its own namespace
        relay = t.public("relay", "100.64.0.10", delay_ms=25, loss=0.01)
        nat = t.nat("a", "100.64.0.1", "10.1.0.0/24", drop_unsolicited=True)
        pub = t.lan_host(nat, "pub")
        t.run(pub, "python3", "-c", "...")      # `ip netns exec <ns> …`

Layout: "the internet" is a bridge inside a namespace of its own, with the
shared address space 100.64.0.0/24 (RFC 6598: never routed on the real
internet) as public addresses. A NAT router is a namespace with a `wan`
veth on that bridge and a `lan` bridge for its hosts (10.x.0.0/24), IP
forwarding on and `iptables -t nat … MASQUERADE` out of `wan`. Kinds:

* plain MASQUERADE: port-preserving mapping; an unsolicited packet reaches
  the router's own stack, which answers RST (a bare Linux box);
* `drop_unsolicited`: conntrack NEW/INVALID arriving on `wan` is dropped, as
  home routers do (hole punching can work there);
* `symmetric`: `MASQUERADE --random-fully`, a fresh random port per
  connection, so a port seen by one peer is useless to another.

Delay and loss: with `delay_ms`/`loss` a site's uplink is not bridged
directly; a user-space wire process (tests/netns/wire.py) copies frames
between two veth ends in the internet namespace with that one-way delay,
both ways. Two sites with 25 ms each are 100 ms RTT apart.

Nothing is created in the root namespace: veths are created directly inside
their namespaces (`ip link add … netns A type veth peer … netns B`), so
deleting our namespaces deletes every veth, bridge, address, route and
iptables rule we made. Names carry a per-run prefix `pn<4 hex>-`; a state
file under /run/p2pci-netns records the owner pid and the wire pids, and
`clean_stale()` (run by every new Topology) removes what a killed run left.
Traffic cannot leave: no namespace has a route or a link to the outside.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

STATE_DIR = Path("/run/p2pci-netns")
NS_RE = re.compile(r"^(pn[0-9a-f]{4})-")
WIRE = Path(__file__).with_name("wire.py")
PART_CHAIN = "P2PART"


class TopoError(RuntimeError):
    pass


def available() -> str | None:
    """None when namespace tests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (ip netns, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"needs `{tool}`"
    return None


def _run(argv: list[str], *, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and cp.returncode != 0:
        raise TopoError(f"{' '.join(argv)} exited {cp.returncode}: {cp.stderr.strip()}")
    return cp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def clean_stale() -> list[str]:
    """Delete namespaces (and kill wires) of harness runs whose owner process is gone."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    live: set[str] = set()
    for f in STATE_DIR.glob("pn*.json"):
        try:
            st = json.loads(f.read_text())
        except (OSError, ValueError):
            st = {}
        owner = int(st.get("owner", 0))
        if owner and _pid_alive(owner):
            live.add(f.stem)
            continue
        for pid in st.get("wires", []):
            if _is_our_wire(int(pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        f.unlink(missing_ok=True)
    removed = []
    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if m and m.group(1) not in live:
            _run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    return removed


def _is_our_wire(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"wire.py") for part in cmd)


@dataclass
class Site:
    """A namespace attached to the internet: a public host or a NAT router."""

    name: str
    ns: str
    wan_ip: str
    kind: str  # "public" or "nat"
    lan: ipaddress.IPv4Network | None = None
    lan_ip: str = ""
    hosts: list[Host] = field(default_factory=list)
    nat_kind: str = ""


@dataclass
class Host:
    """A namespace a daemon runs in; `ip` is its own address (private behind a NAT)."""

    name: str
    ns: str
    ip: str
    site: Site


class Topology:
    def __init__(self) -> None:
        reason = available()
        if reason:
            raise TopoError(reason)
        clean_stale()
        self.prefix = "pn" + secrets.token_hex(2)
        self.namespaces: list[str] = []
        self.wires: list[subprocess.Popen[bytes]] = []
        self.sites: dict[str, Site] = {}
        self.hosts: dict[str, Host] = {}
        self.inet = ""
        self._n = 0
        self._state = STATE_DIR / f"{self.prefix}.json"
        self._save()

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill the wires and delete every namespace we made (idempotent)."""
        for w in self.wires:
            if w.poll() is None:
                w.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.wait(timeout=5)
        self.wires.clear()
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        self._state.unlink(missing_ok=True)

    def _save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        st = {"owner": os.getpid(), "wires": [w.pid for w in self.wires], "namespaces": self.namespaces}
        self._state.write_text(json.dumps(st))

    def _ns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        if ns in self.namespaces:
            raise TopoError(f"namespace {name} exists")
        _run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        self._save()
        self.ip(ns, "link", "set", "lo", "up")
        return ns

    # -------------------------------------------------------------- commands

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "-n", ns, *args], check=check)

    def sh(
        self, ns: str, *argv: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside namespace `ns` to completion."""
        return _run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout)

    def exec_argv(self, where: Host | Site | str) -> list[str]:
        """The argv prefix that runs a command inside `where`'s namespace."""
        ns = where if isinstance(where, str) else where.ns
        return ["ip", "netns", "exec", ns]

    def _veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        self._n += 1
        _run(
            [
                "ip",
                "link",
                "add",
                name_a,
                "netns",
                ns_a,
                "type",
                "veth",
                "peer",
                "name",
                name_b,
                "netns",
                ns_b,
            ]
        )
        self.ip(ns_a, "link", "set", name_a, "up")
        self.ip(ns_b, "link", "set", name_b, "up")

    def _offload_off(self, ns: str, *devs: str) -> None:
        self.sh(ns, sys.executable, str(WIRE), "offload-off", *devs)

    # -------------------------------------------------------------- building

    def internet(self) -> str:
        """The namespace with the bridge all sites attach to (call first)."""
        if self.inet:
            return self.inet
        self.inet = self._ns("inet")
        self.ip(self.inet, "link", "add", "br0", "type", "bridge")
        self.ip(self.inet, "link", "set", "br0", "up")
        return self.inet

    def _uplink(self, ns: str, wan_ip: str, delay_ms: float, loss: float) -> None:
        """`wan` in `ns`, on the internet bridge directly or through a wire process."""
        inet = self.internet()
        i = len(self.sites) + 1
        if not delay_ms and not loss:
            self._veth(ns, "wan", inet, f"p{i}")
            self.ip(inet, "link", "set", f"p{i}", "master", "br0")
        else:
            # wan(ns) <-> w{i}(inet) ==wire== v{i}(inet) <-> p{i}(inet, bridged)
            self._veth(ns, "wan", inet, f"w{i}")
            self._veth(inet, f"v{i}", inet, f"p{i}")
            self.ip(inet, "link", "set", f"p{i}", "master", "br0")
            self._offload_off(ns, "wan")
            self._offload_off(inet, f"w{i}", f"v{i}", f"p{i}")
            self._start_wire(inet, f"w{i}", f"v{i}", delay_ms, loss)
        self.ip(ns, "addr", "add", f"{wan_ip}/24", "dev", "wan")

    def _start_wire(self, ns: str, a: str, b: str, delay_ms: float, loss: float) -> None:
        argv = [*self.exec_argv(ns), sys.executable, str(WIRE), "run", a, b]
        argv += ["--delay-ms", str(delay_ms), "--loss", str(loss)]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.wires.append(proc)
        self._save()
        assert proc.stdout is not None
        line = proc.stdout.readline().decode(errors="replace")
        if not line.startswith("wire "):
            raise TopoError(f"wire {a}<->{b} did not start: {line}")

    def public(self, name: str, wan_ip: str, *, delay_ms: float = 0, loss: float = 0.0) -> Host:
        """A host with a public address (bootstrap, relay)."""
        ns = self._ns(name)
        self._uplink(ns, wan_ip, delay_ms, loss)
        site = Site(name, ns, wan_ip, "public")
        self.sites[name] = site
        self._partition_chain(ns)
        host = Host(name, ns, wan_ip, site)
        site.hosts.append(host)
        self.hosts[name] = host
        return host

    def nat(
        self,
        name: str,
        wan_ip: str,
        lan: str,
        *,
        drop_unsolicited: bool = False,
        symmetric: bool = False,
        delay_ms: float = 0,
        loss: float = 0.0,
    ) -> Site:
        """A NAT router with a LAN behind it; add hosts with `lan_host`."""
        ns = self._ns(name)
        self._uplink(ns, wan_ip, delay_ms, loss)
        net = ipaddress.ip_network(lan)
        gw = str(next(net.hosts()))
        self.ip(ns, "link", "add", "lan", "type", "bridge")
        self.ip(ns, "link", "set", "lan", "up")
        self.ip(ns, "addr", "add", f"{gw}/{net.prefixlen}", "dev", "lan")
        self.sh(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        masq = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
        if symmetric:
            masq.append("--random-fully")
        self.sh(ns, *masq)
        if drop_unsolicited:
            for chain in ("INPUT", "FORWARD"):
                self.sh(ns, "iptables", "-A", chain, "-i", "wan", "-m", "conntrack",
                        "--ctstate", "NEW,INVALID", "-j", "DROP")  # fmt: skip
        kind = "symmetric" if symmetric else ("drop" if drop_unsolicited else "masquerade")
        site = Site(name, ns, wan_ip, "nat", lan=net, lan_ip=gw, nat_kind=kind)
        self.sites[name] = site
        self._partition_chain(ns)
        return site

    def lan_host(self, site: Site, name: str) -> Host:
        if site.lan is None:
            raise TopoError(f"{site.name} has no LAN")
        ns = self._ns(name)
        k = len(site.hosts) + 1
        self._veth(ns, "eth0", site.ns, f"h{k}")
        self.ip(site.ns, "link", "set", f"h{k}", "master", "lan")
        addr = str(list(site.lan.hosts())[k])
        self.ip(ns, "addr", "add", f"{addr}/{site.lan.prefixlen}", "dev", "eth0")
        self.ip(ns, "route", "add", "default", "via", site.lan_ip)
        self._offload_off(ns, "eth0")
        self._offload_off(site.ns, f"h{k}", "lan")
        host = Host(name, ns, addr, site)
        site.hosts.append(host)
        self.hosts[name] = host
        return host

    # -------------------------------------------------------------- faults

    def _partition_chain(self, ns: str) -> None:
        self.sh(ns, "iptables", "-N", PART_CHAIN)
        self.sh(ns, "iptables", "-I", "INPUT", "1", "-i", "wan", "-j", PART_CHAIN)
        self.sh(ns, "iptables", "-I", "FORWARD", "1", "-i", "wan", "-j", PART_CHAIN)
        self.sh(ns, "iptables", "-I", "FORWARD", "1", "-o", "wan", "-j", PART_CHAIN)
        self.sh(ns, "iptables", "-I", "OUTPUT", "1", "-o", "wan", "-j", PART_CHAIN)

    def partition(self, site: Site) -> None:
        """Cut `site` off the internet (packets silently dropped both ways)."""
        self.sh(site.ns, "iptables", "-F", PART_CHAIN)
        self.sh(site.ns, "iptables", "-A", PART_CHAIN, "-j", "DROP")

    def heal(self, site: Site) -> None:
        self.sh(site.ns, "iptables", "-F", PART_CHAIN)

    def nat_counters(self, site: Site) -> str:
        return self.sh(site.ns, "iptables", "-t", "nat", "-L", "-v", "-n").stdout
