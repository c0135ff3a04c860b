"""Run by test_sigterm.py in a pytest of its own (a `*_child.py` is not collected by itself).

The test starts one daemon through the e2e `mesh` fixture, writes the daemon's pid and waits
for the SIGTERM that test_sigterm.py sends to this pytest.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from tests.e2e.mesh import Mesh

PID_FILE_ENV = "P2PCI_SIGTERM_PID_FILE"


async def test_daemon_until_sigterm(mesh: Mesh) -> None:
    node = await mesh.add("solo", build=False)
    assert node.proc is not None
    out = Path(os.environ[PID_FILE_ENV])
    out.with_suffix(".tmp").write_text(str(node.proc.pid))
    os.replace(out.with_suffix(".tmp"), out)
    await trio.sleep_forever()  # until the SIGTERM
