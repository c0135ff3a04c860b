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

from p2pci.net.common import Stats

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

CIRCUIT = "/p2p-circuit"


@dataclass(frozen=True)
class RelayServerLimits:
    """What a relay grants (`[relay]` in config.toml; see docs/operator.md)."""

    max_reservations: int = 64  # peers holding a slot at once
    max_circuits_per_peer: int = 8  # concurrent relayed connections to one reserved peer
    circuit_bytes: int = 256 << 20  # per reservation, both directions
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
        self.reservations: dict[str, Reservation] = {}
        self._retry_at: dict[str, float] = {}
        self._wake = trio.Event()
        self._transport: Any = None
        self._protocol: Any = None
        self.dial_ms: list[float] = []  # relayed dial times (tests, docs figures)

    # -- lifecycle -------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
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
        async with background_trio_service(self._protocol):
            await self._protocol.event_started.wait()
            task_status.started()
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

    def via(self, peer: str) -> str:
        """'direct', 'relayed' or '' (not connected) for the live connection(s) to `peer`."""
        from libp2p.connection_types import ConnectionType
        from libp2p.peer.id import ID

        try:
            conns = self._host.get_network().get_connections(ID.from_base58(peer))
        except Exception:
            return ""
        if not conns:
            return ""
        kinds = set()
        for c in conns:
            try:
                kind = c._get_connection_type_metadata()
            except Exception:
                kind = ConnectionType.UNKNOWN
            kinds.add("relayed" if kind == ConnectionType.RELAYED else "direct")
        return "direct" if "direct" in kinds else "relayed"


def _with_peer(addr: str, peer: str) -> str:
    return addr if addr.endswith(f"/p2p/{peer}") else f"{addr}/p2p/{peer}"
