"""Patches to py-libp2p 0.8.1, in one place, each behind a version guard.

Every patch names the upstream code it changes and why; each has a test in
tests/integration/test_net_reach.py that fails without it. `apply()` is
idempotent and runs once per process (LibP2PNetwork.run calls it). On any
other py-libp2p version the patches are *not* applied: a warning is logged
and the affected behaviour falls back to upstream's, because a patch written
against 0.8.1 internals may be wrong for a later release (re-check each one,
then bump PATCHED_FOR).

Patches written so that they could be sent upstream as they are:

* `stream_handler_guard`: an exception raised by any stream handler
  propagated out of `SwarmConn._handle_muxed_stream`
  (network/connection/swarm_connection.py:309) into the connection's
  nursery and from there out of `host.run()`: one bad handler (ours, or
  one of py-libp2p's own, e.g. a relay STOP stream from a hostile peer)
  killed the whole daemon. The patch catches `Exception` (never
  cancellation), logs it, counts it and resets the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from typing import Any

log = logging.getLogger(__name__)

PATCHED_FOR = "0.8.1"

_applied: dict[str, bool] = {}
handler_errors = 0  # stream handler exceptions caught by stream_handler_guard


def libp2p_version() -> str:
    try:
        return metadata.version("libp2p")
    except metadata.PackageNotFoundError:
        return "unknown"


def _stream_handler_guard() -> None:
    from libp2p.network.connection.swarm_connection import SwarmConn

    original: Callable[..., Any] = SwarmConn._handle_muxed_stream
    if getattr(original, "_p2pci_guard", False):
        return

    async def guarded(self: Any, muxed_stream: Any) -> None:
        global handler_errors
        try:
            await original(self, muxed_stream)
        except Exception as exc:  # never BaseException: cancellation must pass
            handler_errors += 1
            log.warning("stream handler failed (stream reset, connection kept): %r", exc)
            try:
                await muxed_stream.reset()
            except Exception:
                pass

    guarded._p2pci_guard = True  # type: ignore[attr-defined]
    SwarmConn._handle_muxed_stream = guarded  # type: ignore[method-assign]


PATCHES: dict[str, Callable[[], None]] = {
    "stream_handler_guard": _stream_handler_guard,
}


def apply(version: str | None = None) -> dict[str, bool]:
    """Apply every patch once if py-libp2p is the version they were written for.

    Returns {patch name: applied}. `version` overrides the installed version
    (tests use it to check the guard).
    """
    ver = libp2p_version() if version is None else version
    if ver != PATCHED_FOR:
        log.warning("py-libp2p %s is not %s: p2pci's patches are NOT applied", ver, PATCHED_FOR)
        return {name: _applied.get(name, False) for name in PATCHES}
    for name, patch in PATCHES.items():
        if not _applied.get(name):
            patch()
            _applied[name] = True
    return dict(_applied)
