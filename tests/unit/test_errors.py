"""p2pci.core.errors.first_error: the failure a nursery's exception group carries."""

from __future__ import annotations

from p2pci.core.errors import LocalError, P2pciError, ProtocolError, first_error


def test_first_error_finds_the_leaf_of_a_kind_depth_first() -> None:
    bug, local, proto = RuntimeError("bug"), LocalError("local"), ProtocolError("proto")
    group = BaseExceptionGroup("outer", [KeyboardInterrupt(), ExceptionGroup("inner", [bug, local]), proto])
    assert first_error(group, Exception) is bug
    assert first_error(group, P2pciError) is local
    assert first_error(group, ProtocolError) is proto
    assert first_error(BaseExceptionGroup("c", [KeyboardInterrupt()]), Exception) is None
    assert first_error(local, P2pciError) is local and first_error(bug, P2pciError) is None
