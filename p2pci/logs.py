"""Logging for `p2pci daemon`: quiet by default, py-libp2p's noise filtered, one place.

`P2PCI_LOG` sets the levels, as a comma-separated list: a bare level is
p2pci's own (default WARNING), `NAME=LEVEL` sets one logger, e.g.

    P2PCI_LOG=INFO                  # what this node claims, builds, commits, reveals
    P2PCI_LOG=DEBUG,libp2p=INFO     # everything, py-libp2p included

py-libp2p logs every failed dial (to a peer that went away, a stale address
from peer exchange) at ERROR: on a healthy mesh that is a screenful of
"Failed to open TCP stream" lines. So py-libp2p (and multiaddr) are silent
unless `libp2p=LEVEL` is given, and even then the known dial noise is
dropped below DEBUG.

py-libp2p configures its own logger when it is first imported (it removes
the handlers of "libp2p"): call `setup_logging()` after the network module
is imported (`p2pci.daemon.run` does); calling it again is harmless.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

ENV = "P2PCI_LOG"
DEFAULT_LEVEL = logging.WARNING
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers of libraries we stand on, silent unless named in P2PCI_LOG.
QUIET_LIBRARIES = ("libp2p", "multiaddr", "async_service")
SILENT = logging.CRITICAL + 10
# Messages of py-libp2p that are routine on a live mesh (a peer went away, a dial raced).
NOISE = (
    "Failed to open TCP stream",
    "failed to open connection",
    "Failed to dial",
    "failed to upgrade",
    "Stream reset",
    "Connection closed",
)

_HANDLER_NAME = "p2pci"


class NoiseFilter(logging.Filter):
    """Drops py-libp2p's routine connection failures, unless that library was set to DEBUG."""

    def __init__(self, verbose: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.verbose = verbose  # libraries asked for at DEBUG: nothing of theirs is dropped

    def filter(self, record: logging.LogRecord) -> bool:
        lib = record.name.split(".", 1)[0]
        if lib not in QUIET_LIBRARIES or lib in self.verbose:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a library's bad format string: keep the record, let logging report it
            return True
        return not any(n.lower() in msg.lower() for n in NOISE)


def parse_levels(spec: str) -> dict[str, int]:
    """ "INFO,libp2p=DEBUG" -> {"p2pci": 20, "libp2p": 10}; ValueError naming a bad entry."""
    out: dict[str, int] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, level = item.rpartition("=")
        name = name.strip() if sep else "p2pci"
        value = logging.getLevelName(level.strip().upper())
        if not isinstance(value, int) or not name:
            raise ValueError(f"{ENV}: bad entry {item!r} (use e.g. INFO or libp2p=DEBUG)")
        out[name] = value
    return out


def setup_logging(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> dict[str, int]:
    """Configure p2pci's and the libraries' loggers from `P2PCI_LOG`; returns the levels used."""
    environ = os.environ if env is None else env
    try:
        levels = parse_levels(environ.get(ENV, ""))
    except ValueError as e:
        print(f"p2pci: {e}; using the defaults", file=sys.stderr)
        levels = {}
    levels.setdefault("p2pci", DEFAULT_LEVEL)
    for lib in QUIET_LIBRARIES:
        levels.setdefault(lib, SILENT)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(NoiseFilter(frozenset(n for n in QUIET_LIBRARIES if levels[n] <= logging.DEBUG)))
    for name, level in levels.items():
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if h.get_name() == _HANDLER_NAME:
                logger.removeHandler(h)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # one line per record, whatever the root logger does
    return levels
