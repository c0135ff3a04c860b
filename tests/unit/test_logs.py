"""Daemon logging: quiet by default, py-libp2p's dial noise filtered, P2PCI_LOG levels (p2pci.logs)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from p2pci.logs import QUIET_LIBRARIES, SILENT, parse_levels, setup_logging


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    names = ("p2pci", *QUIET_LIBRARIES)
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names}
    yield
    for n, (level, handlers, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


def tcp_logger() -> logging.Logger:
    """The logger py-libp2p's TCP transport really logs "Failed to open TCP stream" with."""
    from libp2p.transport.tcp import tcp

    import p2pci.net.libp2p_net  # noqa: F401  (imports py-libp2p, which resets its logger)

    logger: logging.Logger = tcp.logger
    return logger


def test_parse_levels() -> None:
    assert parse_levels("") == {}
    assert parse_levels("info") == {"p2pci": logging.INFO}
    assert parse_levels("DEBUG, libp2p=warning") == {"p2pci": logging.DEBUG, "libp2p": logging.WARNING}
    with pytest.raises(ValueError, match="bad entry 'LOUD'"):
        parse_levels("LOUD")


def test_default_is_quiet_and_libp2p_is_silent() -> None:
    lib = tcp_logger()
    buf = io.StringIO()
    levels = setup_logging({}, buf)
    assert levels["p2pci"] == logging.WARNING and levels["libp2p"] == SILENT
    lib.error("Failed to open TCP stream: %s", "connection refused")
    lib.error("some other libp2p error")
    logging.getLogger("p2pci.node").info("claimed a job")
    logging.getLogger("p2pci.worker").warning("build of ab12 timed out")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING p2pci.worker: build of ab12 timed out")


def test_levels_from_the_environment_and_the_noise_filter() -> None:
    lib = tcp_logger()
    buf = io.StringIO()
    setup_logging({"P2PCI_LOG": "INFO,libp2p=WARNING"}, buf)
    setup_logging({"P2PCI_LOG": "INFO,libp2p=WARNING"}, buf)  # twice: still one line per record
    lib.error("Failed to open TCP stream: %s", "connection refused")  # routine dial noise: dropped
    lib.error("pubsub router crashed")
    logging.getLogger("p2pci.node").info("claimed a job")
    out = buf.getvalue()
    assert "Failed to open TCP stream" not in out
    assert out.count("pubsub router crashed") == 1 and out.count("claimed a job") == 1
    debug = io.StringIO()
    setup_logging({"P2PCI_LOG": "libp2p=DEBUG"}, debug)
    lib.error("Failed to open TCP stream: %s", "connection refused")
    assert "Failed to open TCP stream" in debug.getvalue()  # asked for everything: nothing dropped


def test_bad_environment_falls_back_to_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    levels = setup_logging({"P2PCI_LOG": "verbose"}, io.StringIO())
    assert levels["p2pci"] == logging.WARNING
    assert "P2PCI_LOG: bad entry 'verbose'" in capsys.readouterr().err
