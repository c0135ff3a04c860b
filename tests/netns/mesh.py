"""Daemon processes inside network namespaces (`ip netns exec`), driven by the CLI.

`NetnsMesh` is the e2e `Mesh` (p2pci/demo.py) with one change: each node
runs in the namespace of a topology host and listens on that host's address
(port 4001) instead of 127.0.0.1. Control calls and the CLI go through the
node's unix socket, which the root namespace reaches like any file.
Only the process interface is used (daemon flags, config.toml, `show
--json`, `peers --json`, `status`), so the tests survive rewrites of the
daemon's insides.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pci.testing.mesh import Mesh, Node, p2pci_argv
from tests.netns.topo import Host

PORT = 4001
SRC = Path(__file__).resolve().parents[2]


class NetnsMesh(Mesh):
    def __init__(self, root: Path, **kw: Any) -> None:
        super().__init__(root, **kw)
        # The `p2pci` console script imports the installed package; make it
        # import this checkout (a worktree) instead.
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), self.env.get("PYTHONPATH", "")]))
        self.where: dict[str, Host] = {}
        self.flags: dict[str, list[str]] = {}

    async def add_in(
        self,
        host: Host,
        name: str,
        *,
        build: bool = True,
        bootstrap: Sequence[Node] = (),
        config: dict[str, Any] | None = None,
        flags: Sequence[str] = (),
    ) -> Node:
        self.where[name] = host
        self.flags[name] = list(flags)
        return await self.add(name, build=build, bootstrap=list(bootstrap), config=config)

    def listen_addr(self, node: Node) -> str:
        return f"/ip4/{self.where[node.name].ip}/tcp/{PORT}"

    def daemon_argv(self, node: Node) -> list[str]:
        """In the host's namespace; listen address and bootstrap come from config.toml."""
        argv = ["ip", "netns", "exec", self.where[node.name].ns, *p2pci_argv(), "--home", str(node.home), "daemon"]
        if not node.build:
            argv.append("--no-build")
        return argv + self.flags.get(node.name, [])

    async def ready_addrs(self, node: Node, printed: list[str]) -> list[str]:
        return [a for a in printed if "/p2p-circuit" not in a]

    async def net_stats(self, node: Node) -> dict[str, int]:
        st = await node.call("stats")
        net = st.get("net", {}) if isinstance(st, dict) else {}
        return {k: v for k, v in net.items() if isinstance(v, int)}

    async def peers(self, node: Node) -> list[dict[str, Any]]:
        res = await self.cli(node, "peers", "--json")
        out = res.json()
        return out if isinstance(out, list) else []
