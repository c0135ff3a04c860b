"""Networking (docs/protocol.md section 8): the only package that imports libp2p.

The light modules are re-exported here; `p2pci.net.libp2p_net.LibP2PNetwork`
is imported from its module (py-libp2p itself loads lazily, on `run`).
"""

from p2pci.net.base import (
    TOPIC,
    BlobUnavailable,
    Delivery,
    NetEvent,
    Network,
    PeerEvent,
    PeerInfo,
    SyncSource,
    Validator,
)
from p2pci.net.memory import MemoryHub, MemoryNetwork

__all__ = [
    "TOPIC",
    "BlobUnavailable",
    "Delivery",
    "MemoryHub",
    "MemoryNetwork",
    "NetEvent",
    "Network",
    "PeerEvent",
    "PeerInfo",
    "SyncSource",
    "Validator",
]
