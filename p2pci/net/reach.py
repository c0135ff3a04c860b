"""Reachability for nodes behind NAT: circuit relay v2 (client and server).

A node that is not publicly reachable (today decided from its listen
addresses, see `LibP2PNetwork(reachability=…)`) keeps a reservation on up to
`max_relays` relays among its bootstrap peers, renews it every
`refresh_s` and at once after the connection to the relay dropped
(reconnecting first), and announces `<relay addr>/p2p-circuit/p2p/<self>`
with its own addresses (peer exchange). Peers dial such an address through
the relay (`dial_circuit`); py-libp2p's `host.connect()` refuses relay
addresses, so the network calls us for those.

A node started with a `RelayServerLimits` (`p2pci daemon --relay`) also
serves the relay hop protocol, within its limits: reservations in total,
circuits per reserved peer, bytes and seconds per circuit, reservation TTL.

Finding out (`reachability="auto"` with a public or unspecified listen
address): the node asks up to two bootstrap peers over `/p2pci/dialback/1`
to open a *fresh* TCP connection back to the address they observe for us,
on our listen port. py-libp2p's AutoNAT cannot be used as it is: its
dial-back goes through `host.connect()`, which returns the connection we
already hold, so it reports PUBLIC for a closed port. Any "reachable" answer
makes the node public; "unreachable" from every asked peer makes it reserve
a relay slot; no answer leaves it undecided and asks again later.

The dial-back server is careful: it dials only the IP it observes on the
asking connection (never an address the asker names, so it cannot be aimed
at a third party), never for a relayed connection, at most one dial at a
time, once per peer per `DIALBACK_EVERY_S`, with a 3 s timeout, and it only
completes a TCP handshake and a multistream-select header exchange.

Only this module and libp2p_net.py touch py-libp2p's relay code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import multiaddr
import trio

from p2pci.core.errors import ProtocolError
from p2pci.net import wire
from p2pci.net.common import Lacking, Stats

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

CIRCUIT = "/p2p-circuit"
PROTO_DIALBACK = "/p2pci/dialback/1"
DIALBACK_EVERY_S = 60.0  # per asking peer
DIALBACK_ASKERS = 1024  # askers remembered for the rate limit: past it (all within the minute), refused
DIALBACK_TIMEOUT_S = 3.0
MULTISTREAM = b"\x13/multistream/1.0.0\n"  # varint length 19 + protocol line


@dataclass(frozen=True)
class RelayServerLimits:
    """What a relay grants (`[relay]` in config.toml; see docs/operator.md)."""

    max_reservations: int = 64  # peers holding a slot at once
    max_circuits_per_peer: int = 8  # concurrent relayed connections to one reserved peer
    circuit_bytes: int = 256 << 20  # per circuit (py-libp2p's relay), both directions
    circuit_seconds: int = 1800  # one relayed connection at most
    reservation_ttl: int = 600  # clients renew well before


@dataclass
class Reservation:
    relay: str  # peer id
    addr: str  # the relay's own address, ending /p2p/<relay>
    expires: float  # wall clock, from the relay's answer
    renew_at: float  # trio clock
    reserved_ms: float  # how long the last reservation round trip took


def is_circuit(addr: str) -> bool:
    return CIRCUIT in addr


def circuit_addr(relay_addr: str, self_id: str) -> str:
    """`/ip4/…/tcp/…/p2p/<relay>` → `…/p2p/<relay>/p2p-circuit/p2p/<self>`."""
    return f"{relay_addr}{CIRCUIT}/p2p/{self_id}"


def relay_of(addr: str) -> str | None:
    """The relay's peer id in a circuit address (None for a direct one)."""
    if not is_circuit(addr):
        return None
    head = addr.split(CIRCUIT, 1)[0]
    parts = head.split("/p2p/")
    return parts[-1] if len(parts) > 1 and parts[-1] else None


class Reach:
    """Relay client (reserve, renew, announce, dial) and optional relay server for one host."""

    def __init__(
        self,
        host: Any,
        peer_id: str,
        stats: Stats,
        *,
        serve: RelayServerLimits | None = None,
        use_relays: bool = False,
        candidates: Callable[[], list[tuple[str, list[str]]]] = list,
        max_relays: int = 2,
        refresh_s: float = 60.0,
        retry_s: float = 5.0,
        dial_timeout: float = 5.0,
        on_reserved: Callable[[str], None] | None = None,
        probe: bool = False,
        listen_port: Callable[[], int | None] = lambda: None,
        lacking: Lacking | None = None,
    ) -> None:
        self._host = host
        self._peer_id = peer_id
        self._stats = stats
        self.serve = serve
        self.use_relays = use_relays
        self._candidates = candidates
        self.max_relays = max_relays
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self.dial_timeout = dial_timeout
        self._on_reserved = on_reserved
        self.probe = probe  # find out by dial-back whether we are reachable
        self._listen_port = listen_port
        self._lacking = lacking if lacking is not None else Lacking()
        self.reachable: bool | None = None if probe else not use_relays
        self._dialback_last: dict[str, float] = {}
        self._dialback_lock = trio.Lock()
        self.reservations: dict[str, Reservation] = {}
        self._retry_at: dict[str, float] = {}
        self._wake = trio.Event()
        self._transport: Any = None
        self._protocol: Any = None
        self._dcutr: Any = None
        self._was_relayed: set[str] = set()  # peers seen over a relayed connection (bounded)
        self.dial_ms: list[float] = []  # relayed dial times (tests, docs figures)

    # -- lifecycle -------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
        from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
        from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
        from libp2p.relay.circuit_v2.resources import RelayLimits
        from libp2p.relay.circuit_v2.transport import CircuitV2Transport
        from libp2p.tools.anyio_service import background_trio_service

        s = self.serve or RelayServerLimits()
        limits = RelayLimits(
            duration=s.circuit_seconds,
            data=s.circuit_bytes,
            max_circuit_conns=s.max_circuits_per_peer,
            max_reservations=s.max_reservations,
            reservation_ttl=s.reservation_ttl,
        )
        # Every node accepts relayed connections (STOP); only --relay serves HOP.
        self._protocol = CircuitV2Protocol(self._host, limits=limits, allow_hop=self.serve is not None)
        # No CLIENT role: py-libp2p's dial would otherwise also reserve a slot on
        # the relay for the *dialer* on every relayed dial (gap 4 in issue 19).
        self._transport = CircuitV2Transport(self._host, self._protocol, RelayConfig(roles=RelayRole.STOP))
        self._host.set_stream_handler(PROTO_DIALBACK, self._handle_dialback)
        # DCUtR: both ends of a relayed connection try to punch a direct one
        # (its auto-drive looks at relayed connections every 2 s). A short dial
        # timeout: most of a punch's time went into dials to private addresses.
        self._dcutr = DCUtRProtocol(self._host, dial_timeout=max(1, int(self.dial_timeout / 2)))
        async with background_trio_service(self._protocol), background_trio_service(self._dcutr):
            await self._protocol.event_started.wait()
            task_status.started()
            if self.probe:
                await self._find_out()
            if self.use_relays:
                await self._keep_reservations()
            else:
                await trio.sleep_forever()

    def peer_down(self, peer: str) -> None:
        """The connection to `peer` is gone: if it was our relay, reserve again (after reconnecting)."""
        res = self.reservations.pop(peer, None)
        if res is not None:
            self._stats.inc("relay_lost")
            self._wake.set()

    def announce(self) -> list[str]:
        """Our circuit addresses (one per live reservation)."""
        now = time.time()
        return [circuit_addr(r.addr, self._peer_id) for r in self.reservations.values() if r.expires > now]

    # -- reservations -----------------------------------------------------------------
    async def _keep_reservations(self) -> None:
        while True:
            now = trio.current_time()
            for relay, addrs in self._candidates():
                if relay == self._peer_id or not addrs:
                    continue
                res = self.reservations.get(relay)
                if res is None and len(self.reservations) >= self.max_relays:
                    continue
                if res is not None and now < res.renew_at:
                    continue
                if res is None and now < self._retry_at.get(relay, 0.0):
                    continue
                await self._reserve(relay, addrs)
            nexts = [r.renew_at for r in self.reservations.values()] + list(self._retry_at.values())
            wait = max(0.05, min(nexts, default=now + self.refresh_s) - trio.current_time())
            with trio.move_on_after(min(wait, self.refresh_s)):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _reserve(self, relay: str, addrs: list[str]) -> None:
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import PeerInfo as LPeerInfo
        from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID

        rid = ID.from_base58(relay)
        t0 = trio.current_time()
        ok = False
        try:
            with trio.fail_after(self.dial_timeout * 2):
                if not self._host.get_network().get_connections(rid):
                    self._host.get_network().unblock_peer(rid)
                    await self._host.connect(LPeerInfo(rid, [multiaddr.Multiaddr(a) for a in addrs]))
                stream = await self._host.new_stream(rid, [PROTOCOL_ID])
                try:
                    ok = bool(await self._transport._make_reservation(stream, rid))
                finally:
                    with trio.move_on_after(1):
                        try:
                            await stream.close()
                        except Exception:
                            pass
        except Exception as exc:
            log.debug("reservation on %s failed: %r", relay, exc)
        took = (trio.current_time() - t0) * 1000
        if not ok:
            self._stats.inc("relay_reserve_failures")
            self.reservations.pop(relay, None)
            self._retry_at[relay] = trio.current_time() + self.retry_s
            return
        expires = float(self._transport._reservations.get(rid, 0) or time.time() + self.refresh_s)
        ttl = max(1.0, expires - time.time())
        self._retry_at.pop(relay, None)
        new = relay not in self.reservations
        self.reservations[relay] = Reservation(
            relay=relay,
            addr=_with_peer(addrs[0], relay),
            expires=expires,
            renew_at=trio.current_time() + min(self.refresh_s, ttl / 2),
            reserved_ms=took,
        )
        self._stats.inc("relay_reserved" if new else "relay_renewed")
        self._stats.inc("relay_reserve_ms_total", int(took))
        if new:
            log.info("reserved a slot on relay %s in %.0f ms", relay, took)
            if self._on_reserved is not None:
                self._on_reserved(relay)

    # -- finding out ----------------------------------------------------------------
    async def _find_out(self) -> None:
        """Ask bootstrap peers to dial us back until one answers; decide use_relays."""
        wait = 1.0
        while self.reachable is None:
            answers = []
            for relay, addrs in self._candidates()[:2]:
                ans = await self.ask_dialback(relay, addrs)
                if ans is not None:
                    answers.append(ans)
            if answers:
                self.reachable = any(answers)
                self.use_relays = not self.reachable
                self._stats.inc("reach_public" if self.reachable else "reach_private")
                log.info("dial-back: we are %s", "reachable" if self.reachable else "NOT reachable (using relays)")
                return
            with trio.move_on_after(wait):
                await self._wake.wait()
            self._wake = trio.Event()
            wait = min(wait * 2, 60.0)

    async def ask_dialback(self, peer: str, addrs: list[str]) -> bool | None:
        """True/False: `peer` could / could not open a fresh connection to us; None: no answer."""
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import PeerInfo as LPeerInfo

        port = self._listen_port()
        if not port or self._lacking.lacks(peer, PROTO_DIALBACK):
            return None
        pid = ID.from_base58(peer)
        try:
            with trio.fail_after(self.dial_timeout + DIALBACK_TIMEOUT_S + 2):
                if not self._host.get_network().get_connections(pid):
                    await self._host.connect(LPeerInfo(pid, [multiaddr.Multiaddr(a) for a in addrs]))
                stream = await self._host.new_stream(pid, [PROTO_DIALBACK])
                try:
                    await stream.write(wire.encode({"port": port}))
                    n = wire.parse_length(await _read_exact(stream, wire.LEN.size), 1024)
                    d = wire.decode_map(await _read_exact(stream, n), {"reachable": bool})
                finally:
                    with trio.move_on_after(1):
                        try:
                            await stream.close()
                        except Exception:
                            pass
        except Exception as exc:
            if lacks_protocol(exc):  # optional (docs/protocol.md §8): once per peer, at debug
                self._stats.inc("peer_lacks_protocol")
                if self._lacking.note(peer, PROTO_DIALBACK):
                    log.debug("peer %s does not speak %s (optional): not asked again while connected", peer, PROTO_DIALBACK)
                return None
            self._stats.inc("dialback_failures")
            log.debug("dial-back via %s failed: %r", peer, exc)
            return None
        return bool(d["reachable"])

    async def _handle_dialback(self, stream: Any) -> None:
        """Server side: dial the asker's observed IP on the port it names, fresh, and say if it worked."""
        try:
            peer = str(stream.muxed_conn.peer_id.to_base58())
            if self.via(peer) not in ("direct", "hole-punched"):
                raise ProtocolError("dial-back over a relayed connection")
            remote = stream.get_remote_address()
            if not remote:
                raise ProtocolError("no observed address")
            with trio.fail_after(DIALBACK_TIMEOUT_S):
                n = wire.parse_length(await _read_exact(stream, wire.LEN.size), 1024)
                d = wire.decode_map(await _read_exact(stream, n), {"port": int})
            port = d["port"]
            if not 0 < port < 65536:
                raise ProtocolError("bad port")
            now = trio.current_time()
            if now - self._dialback_last.get(peer, -1e9) < DIALBACK_EVERY_S or self._dialback_lock.locked():
                raise ProtocolError("dial-back rate limit")
            last = self._dialback_last
            if len(last) >= DIALBACK_ASKERS:  # forget askers served over a minute ago, no one else
                for p in [p for p, t in last.items() if now - t >= DIALBACK_EVERY_S]:
                    del last[p]
                if len(last) >= DIALBACK_ASKERS:  # (clearing it let fresh keys skip the limit)
                    raise ProtocolError("dial-back: too many askers this minute")
            last[peer] = now
            async with self._dialback_lock:
                ok = await _probe_tcp(remote[0], port)
            self._stats.inc("dialback_served")
            with trio.fail_after(DIALBACK_TIMEOUT_S):
                await stream.write(wire.encode({"reachable": ok}))
                await stream.close()
        except Exception as exc:
            self._stats.inc("dialback_refused")
            log.debug("dial-back refused: %r", exc)
            with trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:
                    pass

    # -- dialing ------------------------------------------------------------------------
    async def dial_circuit(self, addr: str) -> None:
        """Connect to the peer at circuit address `addr` through its relay."""
        from libp2p.connection_types import ConnectionType

        if self._transport is None:
            raise ConnectionError("relay transport not running")
        ma = multiaddr.Multiaddr(addr)
        t0 = trio.current_time()
        conn = await self._transport.dial(ma)
        took = (trio.current_time() - t0) * 1000
        self.dial_ms.append(took)
        del self.dial_ms[:-64]
        self._stats.inc("relay_dial_ms_total", int(took))
        try:
            conn.set_transport_info([ma], ConnectionType.RELAYED)
        except Exception:
            pass
        self._stats.inc("relay_dials")
        if len(self._was_relayed) < 4096:
            self._was_relayed.add(str(ma).rsplit("/p2p/", 1)[-1])

    def via(self, peer: str) -> str:
        """'direct', 'hole-punched', 'relayed' or '' (not connected) for the connection(s) to `peer`."""
        from libp2p.connection_types import ConnectionType
        from libp2p.peer.id import ID

        try:
            conns = self._host.get_network().get_connections(ID.from_base58(peer))
        except Exception:
            return ""
        if not conns:
            return ""
        direct_ips = []
        for c in conns:
            try:
                kind = c._get_connection_type_metadata()
            except Exception:
                kind = ConnectionType.UNKNOWN
            if kind != ConnectionType.RELAYED:
                direct_ips.append(_remote_ip(c))
        if not direct_ips:
            if len(self._was_relayed) < 4096:
                self._was_relayed.add(peer)
            return "relayed"
        # Hole-punched: DCUtR says so (the side that dialled), or the peer was
        # relayed before and is now reached directly on a public address (the
        # other side; a LAN peer found by mDNS has a private one).
        if self._dcutr is not None and ID.from_base58(peer) in self._dcutr._direct_connections:
            return "hole-punched"
        if peer in self._was_relayed and any(ip and _is_global(ip) for ip in direct_ips):
            return "hole-punched"
        return "direct"


def _with_peer(addr: str, peer: str) -> str:
    return addr if addr.endswith(f"/p2p/{peer}") else f"{addr}/p2p/{peer}"


async def _read_exact(stream: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise ProtocolError("stream closed early")
        buf += chunk
    return buf


async def _probe_tcp(ip: str, port: int) -> bool:
    """A fresh TCP connection to ip:port that answers a multistream-select header."""
    try:
        with trio.fail_after(DIALBACK_TIMEOUT_S):
            sock = await trio.open_tcp_stream(ip, port)
            async with sock:
                await sock.send_all(MULTISTREAM)
                got = b""
                while len(got) < len(MULTISTREAM):
                    chunk = await sock.receive_some(len(MULTISTREAM) - len(got))
                    if not chunk:
                        break
                    got += chunk
                return got == MULTISTREAM
    except (OSError, trio.TooSlowError):
        return False


def _remote_ip(conn: Any) -> str:
    try:
        addr = conn.muxed_conn.secured_conn.get_remote_address()
        return str(addr[0]) if addr else ""
    except Exception:
        return ""


def _is_global(ip: str) -> bool:
    import ipaddress

    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (a.is_private or a.is_loopback or a.is_link_local or a.is_unspecified)


def lacks_protocol(exc: BaseException) -> bool:
    """Whether a failed `new_stream` means: the peer does not speak the protocol (`na`),
    rather than a dead connection or a timeout."""
    from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError

    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        if isinstance(e, ProtocolNotSupportedError):
            return True
        if isinstance(e, MultiselectClientError) and "protocols not supported" in str(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False
