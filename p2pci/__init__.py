"""p2pci: peer-to-peer CI for reproducible builds."""

__version__ = "0.1.0"
