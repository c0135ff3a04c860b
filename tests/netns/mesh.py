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
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from p2pci.testing.mesh import READY, Mesh, MeshError, Node, _open_log, p2pci_argv, toml_text
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

    def write_config(self, node: Node) -> None:
        doc: dict[str, Any] = {
            "listen": [self.listen_addr(node)],
            "bootstrap": node.bootstrap,
            "build": node.build,
        }
        extra = dict(node.config)
        timing = dict(self.timing)
        timing.update(extra.pop("timing", {}))
        doc.update(extra)
        doc["timing"] = timing
        (node.home / "config.toml").write_text(toml_text(doc))

    async def start(self, node: Node) -> Node:
        if node.alive:
            raise MeshError(f"{node.name} is already running")
        host = self.where[node.name]
        argv = ["ip", "netns", "exec", host.ns, *p2pci_argv(), "--home", str(node.home), "daemon"]
        if not node.build:
            argv.append("--no-build")
        argv += self.flags.get(node.name, [])
        old = self._logs.pop(node.name, None)
        if old is not None:
            old.close()
        log = _open_log(node.log, f"===== start {node.started + 1} in {host.ns}: {' '.join(argv)}")
        self._logs[node.name] = log
        offset = log.tell()
        node.proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        node.started += 1
        line = await self._wait_ready(node, offset)
        parts = line[len(READY) :].split()
        if not parts:
            raise MeshError(f"{node.name}: ready line without a peer ID: {line!r}")
        node.peer_id, node.addrs = parts[0], [a for a in parts[1:] if "/p2p-circuit" not in a]
        return node

    async def net_stats(self, node: Node) -> dict[str, int]:
        st = await node.call("stats")
        net = st.get("net", {}) if isinstance(st, dict) else {}
        return {k: v for k, v in net.items() if isinstance(v, int)}

    async def peers(self, node: Node) -> list[dict[str, Any]]:
        res = await self.cli(node, "peers", "--json")
        out = res.json()
        return out if isinstance(out, list) else []
