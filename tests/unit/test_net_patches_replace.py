"""patches._replace: the one place that installs a py-libp2p patch, once, marked."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from p2pci.net.patches import _replace


class Upstream:
    def meth(self) -> str:
        return "upstream"


def _install(owners: tuple[Any, ...]) -> Any:
    @_replace("_p2pci_test", "meth", *owners)
    def meth(self: Any) -> str:
        return "patched"

    return meth


def test_installs_marked_on_every_owner_once() -> None:
    class A(Upstream):
        pass

    mod = SimpleNamespace(meth=Upstream.meth)
    first = _install((A, mod))
    assert A.__dict__["meth"] is first and mod.meth is first
    assert first._p2pci_test is True and A().meth() == "patched"
    assert not hasattr(Upstream.meth, "_p2pci_test")  # the original is not marked
    second = _install((A, mod))
    assert second is not first and A.__dict__["meth"] is first and mod.meth is first  # a second install: no-op
    assert not hasattr(second, "_p2pci_test")


def test_one_marked_owner_stops_the_install() -> None:
    class A(Upstream):
        pass

    marked = _install((A,))
    mod = SimpleNamespace(meth=Upstream.meth)
    _install((mod, A))
    assert mod.meth is Upstream.meth and A.__dict__["meth"] is marked
