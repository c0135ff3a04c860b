"""Suite-wide settings: nothing here may depend on how fast the machine is."""

import os
import signal
import threading
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# No per-example wall-clock deadline and no "too slow" health check: on a loaded machine (two
# cores shared with other jobs) a slow example is not a bug. Examples stay bounded by their
# strategies and the suite by pytest-timeout.
# Identity proofs at a test price: `p2pci init` mints 8 bits (~256 hashes) and offers demand 8
# (the default, 27, costs ~76 s of one core; tests of the default unset this).
os.environ.setdefault("P2PCI_IDENTITY_BITS", "8")

settings.register_profile(
    "p2pci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
# `make mutate` runs the tests once per mutant: fewer examples there (P2PCI_HYPOTHESIS=mutate).
settings.register_profile("mutate", parent=settings.get_profile("p2pci"), max_examples=25)
settings.load_profile(os.environ.get("P2PCI_HYPOTHESIS", "p2pci"))


def _sigterm_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, a CI cancel) stops pytest as Ctrl-C does, so that fixture teardown
    stops the daemons and containers the tests started: they run in sessions of their own, which
    the signal does not reach. The SIGINT handler of the moment does it: inside a trio run trio's
    (KeyboardInterrupt at a safe point, then the run unwinds), elsewhere Python's."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored or not Python's: still stop as Ctrl-C would
        raise KeyboardInterrupt


_previous_sigterm: Any = None


def pytest_configure(config: pytest.Config) -> None:
    global _previous_sigterm
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            # Started in the background of a shell without job control (`make test &`, nohup):
            # SIGINT arrives ignored, so Python installs no KeyboardInterrupt handler and trio none
            # of its own; a KeyboardInterrupt raised straight from the SIGTERM handler then lands
            # in trio's run loop (epoll wait) instead of a task, and the run is abandoned without
            # teardown, daemons left running. Python's handler restores the Ctrl-C path.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _previous_sigterm is not None:
        signal.signal(signal.SIGTERM, _previous_sigterm)
