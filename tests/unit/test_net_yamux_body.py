"""patches.yamux_body_read: a frame body already decrypted (it came with its header) is taken
without a deadline; one that must still arrive is read under the Yamux read timeout."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from p2pci.net import patches


class _Conn:
    """A SecureSession as secure_read_views leaves it: the rest of the last message as a view."""

    def __init__(self, pend: bytes, later: list[bytes]) -> None:
        self._p2pci_pend: memoryview | None = memoryview(pend) if pend else None
        self.conn = self
        self._later = later

    async def read(self, n: int | None = None) -> bytes:  # marked below like the patched read
        raise AssertionError("not used")

    async def read_msg(self) -> bytes:
        return self._later.pop(0) if self._later else b""

    read._p2pci_views = True  # type: ignore[attr-defined]


def _body(conn: _Conn, length: int) -> Any:
    from libp2p.stream_muxer.yamux import yamux as ymod

    assert patches.apply()["yamux_body_read"]
    yamux = object.__new__(ymod.Yamux)
    yamux.secured_conn = conn
    return ymod.Yamux._read_data_body(yamux, length)


def _no_deadlines(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    asked: list[float] = []

    def fail_after(seconds: float) -> Any:
        asked.append(seconds)
        return trio.move_on_after(seconds)

    monkeypatch.setattr(trio, "fail_after", fail_after)
    return asked


def test_a_decrypted_body_is_taken_without_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _no_deadlines(monkeypatch)
    conn = _Conn(b"BODYrest", [])
    assert trio.run(_body, conn, 4) == b"BODY"
    assert asked == []
    assert conn._p2pci_pend is not None and bytes(conn._p2pci_pend) == b"rest"
    assert trio.run(_body, conn, 4) == b"rest" and conn._p2pci_pend is None and asked == []


def test_a_body_still_on_the_wire_is_read_under_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _no_deadlines(monkeypatch)
    conn = _Conn(b"BO", [b"DY", b"next"])
    assert trio.run(_body, conn, 4) == b"BODY"
    assert len(asked) == 1 and asked[0] > 0
    assert trio.run(_body, conn, 4) == b"next" and len(asked) == 2
