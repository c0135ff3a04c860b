"""p2pci.core stays pure: importing every module loads no trio, libp2p, docker or sqlite3."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import p2pci.core

FORBIDDEN = ("trio", "libp2p", "docker", "sqlite3", "_sqlite3")


def test_core_modules_import_nothing_forbidden() -> None:
    modules = sorted(m.name for m in pkgutil.iter_modules(p2pci.core.__path__, "p2pci.core."))
    assert {"p2pci.core.messages", "p2pci.core.signing", "p2pci.core.board", "p2pci.core.tally",
            "p2pci.core.worker", "p2pci.core.evidence", "p2pci.core.selection"} <= set(modules)  # fmt: skip
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"p2pci.core loaded {out.stdout.strip()}"
