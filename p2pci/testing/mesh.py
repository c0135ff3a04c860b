"""A mesh of real `p2pci daemon` processes on loopback, for the demo, e2e tests and bench.

    async with open_mesh(root) as mesh:          # every process killed on exit (unless keep=True)
        boot = await mesh.add("boot", build=False)
        w1 = await mesh.add("w1")                 # bootstraps from the first node
        view = await mesh.wait_verdict(job)       # all running nodes agree

`p2pci.demo` (`make demo`) runs its script on it; `tests/e2e/mesh.py` adds test-only
helpers (adversary processes, container clean-up); `bench` measures with it.
"""


from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import trio

from p2pci.config import IDENTITY_BITS_ENV
from p2pci.control.client import acontrol_call
from p2pci.core.errors import LocalError

T = TypeVar("T")

READY = "p2pci daemon ready:"
LOOPBACK_ANY_PORT = "/ip4/127.0.0.1/tcp/0"
POLL_S = 0.2
PUBLISH_TIMEOUT_S = 900
FINAL = frozenset({"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"})

# Short timings so a local mesh reacts in seconds, not minutes.
FAST_TIMING: dict[str, int] = {
    "claim_window_ms": 500,
    "lease_ms": 6000,
    "sync_interval_ms": 3000,
    "commit_slack_ms": 10_000,
    "dial_timeout_ms": 5000,
}


# identity proof of a mesh's nodes and what their offers demand (`make demo` too): 12 bits is
# ~4,000 hashes (milliseconds), against ~76 s of one core at the default 27 (docs/operator.md)
MESH_IDENTITY_BITS = 12
DRAIN_GRACE_S = 2  # [worker] drain_grace_s of test nodes (a test may set its own)


class MeshError(LocalError):
    """Something in the orchestration went wrong (a daemon died, a command failed)."""


def p2pci_argv() -> list[str]:
    """How to run the `p2pci` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("p2pci")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from p2pci.cli.main import main; sys.exit(main())"]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # TOML floats: Python's repr ("1.5", "1e-06") is valid TOML
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_text(doc: dict[str, Any]) -> str:
    """A tiny TOML writer: top-level scalars/lists, then one level of tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines += [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def short(peer_id: str) -> str:
    return peer_id[-8:]


@dataclass
class Node:
    """One daemon process and its home directory."""

    name: str
    home: Path
    build: bool = True
    bootstrap: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    proc: trio.Process | None = None
    started: int = 0  # how many times this node's daemon was started

    @property
    def log(self) -> Path:
        return self.home / "daemon.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def dial_addr(self) -> str:
        """A multiaddr with /p2p/ that other nodes can bootstrap from."""
        if not self.addrs:
            raise MeshError(f"{self.name} has no listen address yet")
        a = self.addrs[0]
        return a if "/p2p/" in a else f"{a}/p2p/{self.peer_id}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def call(self, op: str, **args: Any) -> Any:
        """One control-socket request to this daemon."""
        return await acontrol_call(self.home, op, **args)


@dataclass
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The last non-empty stdout line, parsed as JSON."""
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        if not lines:
            raise MeshError(f"{' '.join(self.argv)} printed nothing (stderr: {self.stderr.strip()})")
        return json.loads(lines[-1])


class Mesh:
    """Daemon processes on loopback, each in its own process group.

    Use `open_mesh(root)`; every process is killed on exit, also on errors.
    """

    def __init__(
        self,
        root: Path,
        *,
        timing: dict[str, int] | None = None,
        env: dict[str, str] | None = None,
        identity_bits: int = MESH_IDENTITY_BITS,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.timing = dict(FAST_TIMING if timing is None else timing)
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.pop("P2PCI_HOME", None)
        # `init` mints at this strength and offers demand it ([publish] identity_bits): a real
        # proof, at a throwaway mesh's price (an environment that sets it already wins)
        self.env.setdefault(IDENTITY_BITS_ENV, str(identity_bits))
        if env:
            self.env.update(env)
        self.nodes: dict[str, Node] = {}
        self.on_stop: list[Callable[[], Awaitable[None]]] = []  # extra clean-ups (helper processes)
        self._logs: dict[str, IO[bytes]] = {}

    # ------------------------------------------------------------ processes

    async def cli(self, node: Node | Path, *args: str, check: bool = True) -> CliResult:
        """Run `p2pci --home HOME ARGS…` to completion (timeouts are the caller's cancel scope)."""
        home = node.home if isinstance(node, Node) else Path(node)
        argv = [*p2pci_argv(), "--home", str(home), *args]
        cp = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False, env=self.env)
        res = CliResult(
            argv, cp.returncode, cp.stdout.decode(errors="replace"), cp.stderr.decode(errors="replace")
        )
        if check and cp.returncode != 0:
            raise MeshError(
                f"`p2pci {' '.join(args)}` exited {cp.returncode}:\n{res.stderr.strip()}\n{res.stdout.strip()}"
            )
        return res

    async def add(
        self,
        name: str,
        *,
        build: bool = True,
        bootstrap: Sequence[Node] | None = None,
        config: dict[str, Any] | None = None,
        start: bool = True,
    ) -> Node:
        """Create a home (`p2pci init`), write its config, start the daemon.

        `bootstrap` defaults to the first node added (none for the first).
        """
        if name in self.nodes:
            raise MeshError(f"node {name} exists")
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        boots = list(self.nodes.values())[:1] if bootstrap is None else list(bootstrap)
        node = Node(
            name, home, build=build, bootstrap=[b.dial_addr() for b in boots], config=dict(config or {})
        )
        self.nodes[name] = node
        await self.cli(node, "init")
        self.write_config(node)
        if start:
            await self.start(node)
        return node

    def listen_addr(self, node: Node) -> str:
        """The address `node` listens on (a subclass may place it elsewhere)."""
        return LOOPBACK_ANY_PORT

    def write_config(self, node: Node) -> None:
        doc: dict[str, Any] = {
            "listen": [self.listen_addr(node)],
            "bootstrap": node.bootstrap,
            "build": node.build,
        }
        extra = dict(node.config)
        timing = dict(self.timing)
        timing.update(extra.pop("timing", {}))
        # SIGTERM drains; a test mesh stops in seconds, not the default grace of minutes
        worker = {"drain_grace_s": DRAIN_GRACE_S, **extra.pop("worker", {})}
        doc.update(extra)
        doc["timing"] = timing
        doc["worker"] = worker
        (node.home / "config.toml").write_text(toml_text(doc))

    def daemon_argv(self, node: Node) -> list[str]:
        """The command line that runs `node`'s daemon."""
        argv = [*p2pci_argv(), "--home", str(node.home), "daemon", "--listen", self.listen_addr(node)]
        for b in node.bootstrap:
            argv += ["--bootstrap", b]
        if not node.build:
            argv.append("--no-build")
        return argv

    async def ready_addrs(self, node: Node, printed: list[str]) -> list[str]:
        """The addresses others dial `node` at, from those its ready line printed."""
        if printed:
            return printed
        ident = await node.call("id")
        return list(ident["addrs"])

    async def start(self, node: Node) -> Node:
        """Start (or restart) the daemon and wait for its ready line (no timeout: the caller's)."""
        if node.alive:
            raise MeshError(f"{node.name} is already running")
        argv = self.daemon_argv(node)
        old = self._logs.pop(node.name, None)
        if old is not None:
            old.close()
        log = _open_log(node.log, f"===== start {node.started + 1}: {' '.join(argv)}")
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
        node.peer_id = parts[0]
        node.addrs = await self.ready_addrs(node, parts[1:])
        return node

    async def _wait_ready(self, node: Node, offset: int) -> str:
        async def ready() -> str | None:
            for raw in _read_from(node.log, offset).splitlines():
                if raw.startswith(READY):
                    return raw.strip()
            if not node.alive:
                raise MeshError(f"{node.name} exited before it was ready:\n{node.log_tail()}")
            return None

        return await wait_for(ready, f"{node.name} to print its ready line", node=node)

    async def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the node's whole process group and reap it."""
        proc = node.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        with trio.move_on_after(15):
            await proc.wait()
        if proc.returncode is None:  # did not die on `sig`
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group

    async def stop(self, node: Node) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 15 s)."""
        await self.kill(node, signal.SIGTERM)

    async def stop_all(self) -> None:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as n:
                for cleanup in self.on_stop:
                    n.start_soon(cleanup)
                for node in self.nodes.values():
                    n.start_soon(self.stop, node)
        self.on_stop.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def detach(self) -> None:
        """Leave the daemons running (DEMO_KEEP=1); write their pids."""
        pids = {n.name: n.proc.pid for n in self.nodes.values() if n.proc is not None and n.alive}
        (self.root / "pids.json").write_text(json.dumps(pids))
        self.nodes.clear()

    # ------------------------------------------------------------ observing

    @property
    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive]

    def by_peer(self, peer_id: str) -> Node:
        for n in self.nodes.values():
            if n.peer_id == peer_id:
                return n
        raise MeshError(f"no node with peer ID {peer_id}")

    async def wait_connected(self, *, minimum: int | None = None) -> None:
        """Wait until every running node sees at least `minimum` peers (default: all others)."""

        async def ok() -> bool:
            for n in self.running:
                want = len(self.running) - 1 if minimum is None else minimum
                peers = await n.call("peers")
                if len(peers) < want:
                    return False
            return True

        await wait_for(ok, "the mesh to connect")

    async def show(self, node: Node, job: str) -> dict[str, Any] | None:
        """The job object as `node` sees it, or None when it does not know the job yet."""
        try:
            view = await node.call("show", job=job)
        except Exception as exc:  # unknown job is an error reply until the offer arrives
            if not node.alive:
                raise MeshError(f"{node.name} died:\n{node.log_tail()}") from exc
            return None
        return view if isinstance(view, dict) else None

    async def wait_verdict(
        self,
        job: str,
        nodes: Sequence[Node] | None = None,
        *,
        states: frozenset[str] = FINAL,
        agree: bool = True,
        check: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Wait until every node in `nodes` (default: all running) reports a verdict in `states`.

        With `agree`, also wait until their job objects are identical; then
        return that object (else the first node's).
        """
        targets = list(self.running if nodes is None else nodes)
        last: dict[str, Any] = {}

        async def done() -> dict[str, Any] | None:
            views = []
            for n in targets:
                v = await self.show(n, job)
                last[n.name] = v
                if v is None or v.get("verdict") not in states or (check is not None and not check(v)):
                    return None
                views.append(v)
            if agree and any(canon(v) != canon(views[0]) for v in views[1:]):
                return None
            return views[0]

        def describe() -> str:
            return "\n".join(f"  {name}: {json.dumps(v)}" for name, v in last.items())

        what = f"job {job[:12]} to reach {sorted(states)} on {[n.name for n in targets]}"
        return await wait_for(done, what, detail=describe)

    async def building(self, node: Node) -> list[Any]:
        status = await node.call("status")
        b = status.get("node", {}).get("building", []) if isinstance(status, dict) else []
        return list(b) if isinstance(b, list) else []


def canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


async def wait_for(
    pred: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    node: Node | None = None,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll `pred` until it returns something truthy.

    No timeout of its own: run it under the caller's `trio.fail_after`. When
    that cancels the wait, what we waited for (and `detail()`, and the node's
    log tail) goes to stderr so the failing test says why.
    """
    try:
        while True:
            v = await pred()
            if v:
                return v
            await trio.sleep(POLL_S)
    except trio.Cancelled:
        extra = detail() if detail is not None else ""
        if node is not None:
            extra += f"\n{node.name} log:\n{node.log_tail()}"
        print(f"gave up waiting for {what}\n{extra}", file=sys.stderr, flush=True)
        raise


def _open_log(path: Path, header: str) -> IO[bytes]:
    log = open(path, "ab")  # noqa: SIM115 - closed by Mesh.stop_all
    log.write(f"\n{header}\n".encode())
    log.flush()
    return log


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


@contextlib.asynccontextmanager
async def open_mesh(root: Path, **kw: Any) -> AsyncIterator[Mesh]:
    """A `Mesh` whose daemons are all stopped on exit, whatever happened."""
    mesh = Mesh(root, **kw)
    try:
        yield mesh
    finally:
        await mesh.stop_all()


def stop_kept_mesh(root: Path) -> None:
    """Stop daemons a previous `DEMO_KEEP=1` run left behind."""
    pids_file = root / "pids.json"
    try:
        pids = json.loads(pids_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 15
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)
    pids_file.unlink(missing_ok=True)
