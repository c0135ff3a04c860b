"""The pure protocol: no I/O, no clocks, no trio, libp2p, docker or sqlite."""
