"""`[net]` in config.toml, `daemon --relay`, and how a peer's `via` is shown."""

from __future__ import annotations

import pytest

from p2pci.config import Config, parse_config
from p2pci.core.errors import LocalError
from p2pci.tui import model as m


def test_net_defaults_and_relay_limits() -> None:
    c = parse_config({})
    assert c.net.reachability == "auto" and not c.net.relay and c.net.relay_limits() is None
    c = parse_config({"net": {"relay": True, "relay_circuit_mb": 16, "relay_max_reservations": 3}})
    lim = c.net.relay_limits()
    assert lim.circuit_bytes == 16 << 20 and lim.max_reservations == 3
    assert Config().with_overrides(relay=True).net.relay


@pytest.mark.parametrize(
    "net",
    [
        {"reachability": "maybe"},
        {"relay": "yes"},
        {"relay_circuit_mb": 0},
        {"relay_max_reservations": -1},
        {"relay_fast": True},
    ],
)
def test_bad_net_config_is_refused(net: dict[str, object]) -> None:
    with pytest.raises(LocalError, match="net"):
        parse_config({"net": net})


def test_peer_via_is_one_of_the_known_words() -> None:
    base = {"peer_id": "12D3KooWx", "addrs": [], "connected_since": None}
    assert m.parse_peer({**base, "via": "relayed"}).via == "relayed"
    assert m.parse_peer(base).via == ""
    assert m.parse_peer({**base, "via": "\x1b[31mdirect"}).via == "?"  # never shown raw
    assert m.peer_row(m.parse_peer({**base, "via": "direct"}), 0)[1] == "direct"
