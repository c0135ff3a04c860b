"""`make demo`: a local mesh of five daemons builds three real examples.

Run as ``python -m p2pci.demo`` (the Makefile's ``demo`` target first makes
the venv and makes sure a Docker engine answers). The demo

1. builds the base images the examples need (reused when present),
2. starts five daemons on loopback with homes under ``.demo/`` (``node1`` is
   the bootstrap node and publisher, ``--no-build``; ``node2..5`` are workers),
3. publishes examples/hello-c (replicas 3, quorum 2: REPRODUCED, artifacts
   fetched and verified), examples/unreproducible (DISPUTED, ``p2pci diff``
   names the bytes) and a copy of examples/traditional whose allowlist names
   one worker (quorum 1: REPRODUCED by that worker alone),
4. prints a table, and stops the mesh (``DEMO_KEEP=1`` leaves it running;
   ``python -m p2pci.demo stop`` stops it later).

Exit status 0 only when all three verdicts came out as expected.

The `Mesh` class (daemon processes, control calls, waiting for verdicts) is
reused by the end-to-end tests (tests/e2e/mesh.py) and the benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import trio

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


class MeshError(LocalError):
    """Something in the orchestration went wrong (a daemon died, a command failed)."""


def p2pci_argv() -> list[str]:
    """How to run the `p2pci` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("p2pci")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from p2pci.cli.main import main; sys.exit(main())"]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_text(doc: dict[str, Any]) -> str:
    """A tiny TOML writer: top-level scalars/lists, then one level of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
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
        self, root: Path, *, timing: dict[str, int] | None = None, env: dict[str, str] | None = None
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.timing = dict(FAST_TIMING if timing is None else timing)
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.pop("P2PCI_HOME", None)
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

    def write_config(self, node: Node) -> None:
        doc: dict[str, Any] = {
            "listen": [LOOPBACK_ANY_PORT],
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
        """Start (or restart) the daemon and wait for its ready line (no timeout: the caller's)."""
        if node.alive:
            raise MeshError(f"{node.name} is already running")
        argv = [*p2pci_argv(), "--home", str(node.home), "daemon", "--listen", LOOPBACK_ANY_PORT]
        for b in node.bootstrap:
            argv += ["--bootstrap", b]
        if not node.build:
            argv.append("--no-build")
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
        node.peer_id, node.addrs = parts[0], parts[1:]
        if not node.addrs:
            ident = await node.call("id")
            node.addrs = list(ident["addrs"])
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


# ====================================================================== the demo

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    label: str
    expect: str
    job: str = ""
    verdict: str = "ERROR"
    workers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == self.expect and not any(n.startswith("FAIL") for n in self.notes)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def recipe_image(project: Path) -> str:
    import tomllib

    doc = tomllib.loads((project / "p2pci.toml").read_text())
    image = doc.get("build", {}).get("image", "")
    if not isinstance(image, str) or not image:
        raise MeshError(f"{project}/p2pci.toml names no [build] image")
    return image


async def ensure_image(image: str) -> str:
    """The ID of the base image a recipe names, built only when it is not present."""
    from p2pci.runner.images import resolve_image

    t0 = time.monotonic()
    image_id = await trio.to_thread.run_sync(resolve_image, image)
    say(f"  image {image}: {image_id[:19]}… ({time.monotonic() - t0:.0f} s)")
    return image_id


def _has_package(name: str) -> bool:
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False)
    except OSError:  # not a Debian-like host: let the image build say what is missing
        return True
    return r.returncode == 0 and "installed" in r.stdout


def host_packages_needed(images: set[str]) -> tuple[list[str], list[str]]:
    """Debian packages the demo still needs: (required, optional).

    busybox-static and mmdebstrap only when an image has to be built;
    diffoscope (optional) explains the dispute byte by byte.
    """
    from p2pci.runner.images import debian_recipe, find_image

    required: list[str] = []
    for image in sorted(images):
        if image == "busybox":
            if find_image("busybox") is None and not _has_package("busybox-static"):
                required.append("busybox-static")
            continue
        m = re.match(r"^debian:([a-z][a-z0-9-]*)(?:\+(.*))?$", image)
        if m is None:
            continue
        if find_image(debian_recipe(m[1], (m[2] or "").split(","))) is not None:
            continue
        if not (shutil.which("mmdebstrap") or shutil.which("debootstrap")) and "mmdebstrap" not in required:
            required.append("mmdebstrap")
    optional = [] if shutil.which("diffoscope") else ["diffoscope"]
    return required, optional


def ensure_host_packages(images: set[str]) -> None:
    """Install what the image builds need (as root, with apt-get), or say what to install."""
    required, optional = host_packages_needed(images)
    if not required and not optional:
        return
    if os.geteuid() != 0:
        if optional:
            say(f"  note: apt-get install {' '.join(optional)} for a byte-level `p2pci diff`")
        if required:
            raise MeshError(f"the base images need Debian packages: sudo apt-get install {' '.join(required)}")
        return
    pkgs = required + optional
    say(f"  installing {' '.join(pkgs)} (apt-get) ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if r.returncode != 0 and required:
            raise MeshError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")


def set_allowlist(project: Path, peer_ids: Sequence[str], *, replicas: int, quorum: int) -> None:
    """Rewrite `[trust]` of a recipe copy: allowlist, replicas, quorum."""
    path = project / "p2pci.toml"
    text = path.read_text()
    kept: list[str] = []
    in_trust = False
    for line in text.splitlines():
        head = re.match(r"^\s*\[([^\]]+)\]", line)
        if head:
            in_trust = head.group(1).strip() == "trust"
        if in_trust and re.match(r"^\s*(workers|replicas|quorum)\s*=", line):
            continue
        kept.append(line)
    out = "\n".join(kept) + "\n"
    trust = f"workers = {_toml_value(list(peer_ids))}\nreplicas = {replicas}\nquorum = {quorum}\n"
    if re.search(r"^\s*\[trust\]\s*$", out, flags=re.M):
        out = re.sub(r"^\s*\[trust\]\s*$", "[trust]\n" + trust.rstrip("\n"), out, count=1, flags=re.M)
    else:
        out += "\n[trust]\n" + trust
    path.write_text(out)


async def publish(mesh: Mesh, node: Node, project: Path, *args: str) -> tuple[dict[str, Any], float]:
    """`p2pci publish DIR --wait --json ARGS`; returns the job object and the seconds it took."""
    t0 = time.monotonic()
    with trio.fail_after(PUBLISH_TIMEOUT_S):
        res = await mesh.cli(node, "publish", str(project), "--wait", "--json", *args, check=False)
    took = time.monotonic() - t0
    try:
        view = res.json()
    except (MeshError, ValueError) as exc:
        raise MeshError(
            f"publish {project.name} exited {res.returncode}: {res.stderr.strip()}\n{res.stdout}"
        ) from exc
    if not isinstance(view, dict):
        raise MeshError(f"publish {project.name}: not a job object: {view!r}")
    return view, took


def workers_of(view: dict[str, Any]) -> list[str]:
    groups = view.get("groups") or []
    return [w for g in groups for w in g.get("workers", [])]


async def demo_reproducible(mesh: Mesh, pub: Node, out: Outcome, project: Path, fetch_dir: Path) -> None:
    view, out.seconds = await publish(mesh, pub, project, "--replicas", "3", "--quorum", "2")
    out.job, out.verdict, out.workers = view["job"], view["verdict"], workers_of(view)
    if out.verdict != "REPRODUCED":
        return
    shutil.rmtree(fetch_dir, ignore_errors=True)
    res = await mesh.cli(pub, "fetch", out.job, "--out", str(fetch_dir), check=False)
    if res.returncode != 0:
        out.notes.append(f"FAIL fetch: {res.stderr.strip()}")
        return
    files = _files_under(fetch_dir)
    out.notes.append(f"fetched and verified {len(files)} file(s) into {fetch_dir}")
    for f in files:
        if os.access(f, os.X_OK):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                cp = await trio.run_process([str(f)], capture_stdout=True, capture_stderr=True, check=False)
                first = cp.stdout.decode(errors="replace").strip().splitlines()[:1]
                out.notes.append(f"ran {f.name}: {first[0] if first else '(no output)'}")
            break


async def demo_unreproducible(mesh: Mesh, pub: Node, out: Outcome, project: Path) -> None:
    view, out.seconds = await publish(mesh, pub, project, "--replicas", "3", "--quorum", "2")
    out.job, out.verdict, out.workers = view["job"], view["verdict"], workers_of(view)
    if out.verdict != "DISPUTED":
        return
    with trio.fail_after(600):
        res = await mesh.cli(pub, "diff", out.job, check=False)
    text = res.stdout.strip()
    if res.returncode not in (0, 1) or not text:
        out.notes.append(f"FAIL diff exited {res.returncode}: {res.stderr.strip()[:300]}")
        return
    lines = diff_highlights(text)
    if not lines:
        out.notes.append(f"FAIL p2pci diff names no differing content:\n{text[:2000]}")
        return
    out.notes.append(f"p2pci --home {pub.home} diff {out.job[:12]}  (what differs, metadata left out):")
    out.notes += ["    " + ln for ln in lines[:12]]


_TEMP_PREFIX = re.compile(r"/tmp/[^ ]*?/[0-9a-f]{12}/")
_METADATA = re.compile(r"(Modify|Change|Access|Birth|Size|Device):")


def diff_highlights(text: str) -> list[str]:
    """The lines of a diffoscope --text report that name files and differing content.

    Leaves out the file-system metadata of the unpacked artifact sets (mtimes
    and sizes of the temp copies), which say nothing about the build.
    """
    out: list[str] = []
    header: str | None = None
    for line in text.splitlines():
        body = line.lstrip("│├└─ ")
        if " != " in body and ":" in body:  # the daemon's fallback without diffoscope: "path: sha != sha"
            out.append("file " + body)
        elif body.startswith("+++ "):
            header = "file " + _TEMP_PREFIX.sub("", body[4:])
        elif body.startswith(("--- ", "@@")) or body[:1] not in ("-", "+") or _METADATA.search(body):
            continue
        else:
            if header is not None:
                out.append(header)
                header = None
            out.append("  " + body)
    return out


async def demo_traditional(mesh: Mesh, pub: Node, out: Outcome, project: Path, worker: Node) -> None:
    view, out.seconds = await publish(mesh, pub, project)
    out.job, out.verdict, out.workers = view["job"], view["verdict"], workers_of(view)
    if out.verdict == "REPRODUCED" and out.workers != [worker.peer_id]:
        out.notes.append(
            f"FAIL expected only {worker.name} ({short(worker.peer_id)}) to vote, got {out.workers}"
        )


async def check_agreement(mesh: Mesh, outcomes: Sequence[Outcome]) -> None:
    """Every node's `show` of every job is the same object."""
    for o in outcomes:
        if not o.job:
            continue
        try:
            with trio.fail_after(60):
                view = await mesh.wait_verdict(o.job)
            o.workers = workers_of(view)
            o.notes.append(f"all {len(mesh.running)} nodes show the same verdict")
        except trio.TooSlowError:
            o.notes.append("FAIL the nodes did not agree within 60 s")


def print_table(mesh: Mesh, outcomes: Sequence[Outcome]) -> None:
    names = {n.peer_id: n.name for n in mesh.nodes.values()}
    say()
    say(f"{'job':<14}{'project':<16}{'expected':<12}{'verdict':<12}{'time':>7}  workers")
    for o in outcomes:
        ws = ", ".join(names.get(w, short(w)) for w in o.workers) or "-"
        mark = "ok" if o.ok else "UNEXPECTED"
        say(f"{o.job[:12]:<14}{o.label:<16}{o.expect:<12}{o.verdict:<12}{o.seconds:>6.1f}s  {ws}   {mark}")
    for o in outcomes:
        for n in o.notes:
            say(f"  [{o.label}] {n}")


async def run_demo(root: Path, *, keep: bool, examples: Path) -> int:
    t_start = time.monotonic()
    hello, unrep = examples / "hello-c", examples / "unreproducible"
    trad = _fresh_demo_dir(root, examples)

    outcomes = [
        Outcome("hello-c", "REPRODUCED"),
        Outcome("unreproducible", "DISPUTED"),
        Outcome("traditional", "REPRODUCED"),
    ]
    async with open_mesh(root) as mesh:
        say("p2pci demo: base images")
        images: set[str] = set()
        for project in (hello, unrep, trad):
            images.add(recipe_image(project))
        try:
            await trio.to_thread.run_sync(ensure_host_packages, images)
        except MeshError:
            raise
        except Exception as exc:  # most likely: no Docker engine answers
            raise MeshError(
                f"cannot look up the base images: {type(exc).__name__}: {exc}\n"
                "(`make demo` makes sure a Docker engine answers; is one running?)"
            ) from exc
        for image in sorted(images):
            try:
                await ensure_image(image)
            except Exception as exc:  # docker missing or not answering, mirror unreachable, ...
                raise MeshError(
                    f"cannot get the base image {image}: {type(exc).__name__}: {exc}\n"
                    "(`make demo` makes sure a Docker engine answers; is one running?)"
                ) from exc

        say(f"p2pci demo: starting 5 daemons on 127.0.0.1 (homes under {root})")
        with trio.fail_after(120):
            node1 = await mesh.add("node1", build=False)
        workers: list[Node] = []
        with trio.fail_after(120):
            async with trio.open_nursery() as n:
                for i in range(2, 6):
                    n.start_soon(_add_worker, mesh, f"node{i}", node1, workers)
        workers.sort(key=lambda w: w.name)
        with trio.fail_after(60):
            await mesh.wait_connected(minimum=1)
        for node in mesh.nodes.values():
            role = "bootstrap, publisher, --no-build" if node is node1 else "worker"
            say(f"  {node.name}  {node.peer_id}  {' '.join(node.addrs)}  ({role})")
        say(f"  watch it live in another terminal:  p2pci --home {root / 'node1'} status")
        say("p2pci demo: publishing three jobs from node1")
        set_allowlist(trad, [workers[0].peer_id], replicas=1, quorum=1)
        async with trio.open_nursery() as n:
            n.start_soon(
                _guard,
                outcomes[0],
                demo_reproducible(mesh, node1, outcomes[0], hello, root / "out" / "hello-c"),
            )
            n.start_soon(_guard, outcomes[1], demo_unreproducible(mesh, node1, outcomes[1], unrep))
            n.start_soon(_guard, outcomes[2], demo_traditional(mesh, node1, outcomes[2], trad, workers[0]))
        await check_agreement(mesh, outcomes)
        print_table(mesh, outcomes)
        if keep:
            mesh.detach()
            say(f"\nDEMO_KEEP=1: the mesh keeps running. Watch: p2pci --home {root / 'node1'} status")
            say(f"Stop it with: {_python_cmd()} -m p2pci.demo stop  (pids in {root / 'pids.json'})")
        else:
            say("\nstopping the mesh (DEMO_KEEP=1 keeps it running)")
    ok = all(o.ok for o in outcomes)
    say(
        f"p2pci demo: {'all three verdicts as expected' if ok else 'UNEXPECTED verdicts'} "
        f"({time.monotonic() - t_start:.0f} s)"
    )
    return 0 if ok else 1


def _python_cmd() -> str:
    """This interpreter, relative to the working directory when inside it (`.venv/bin/python`)."""
    cwd = os.getcwd()
    return os.path.relpath(sys.executable, cwd) if sys.executable.startswith(cwd + os.sep) else sys.executable


def _files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())


def _fresh_demo_dir(root: Path, examples: Path) -> Path:
    """Stop a kept mesh, clear old homes, copy examples/traditional; returns the copy."""
    stop_kept_mesh(root)
    for old in root.glob("node*"):
        shutil.rmtree(old, ignore_errors=True)
    work = root / "projects"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    trad = work / "traditional"
    shutil.copytree(examples / "traditional", trad)
    return trad


async def _add_worker(mesh: Mesh, name: str, boot: Node, out: list[Node]) -> None:
    # Two slots: the three demo jobs run side by side instead of queueing.
    out.append(await mesh.add(name, bootstrap=[boot], config={"worker": {"slots": 2}}))


async def _guard(outcome: Outcome, coro: Awaitable[None]) -> None:
    """One demo step failing must not hide the others' results."""
    try:
        await coro
    except Exception as exc:  # reported in the table, exit status 1
        outcome.notes.append(f"FAIL {type(exc).__name__}: {str(exc)[:600]}")


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(os.environ.get("DEMO_DIR", str(REPO / ".demo"))).resolve()
    examples = Path(os.environ.get("DEMO_EXAMPLES", str(REPO / "examples"))).resolve()
    keep = os.environ.get("DEMO_KEEP", "") not in ("", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["stop"]:  # stop a mesh left running by DEMO_KEEP=1
        stop_kept_mesh(root)
        print(f"p2pci demo: stopped the mesh under {root} (if one was running)")
        return 0
    if args:
        print("usage: python -m p2pci.demo [stop]   (env: DEMO_KEEP=1, DEMO_DIR)", file=sys.stderr)
        return 2
    try:
        return trio.run(lambda: run_demo(root, keep=keep, examples=examples))
    except MeshError as exc:
        print(f"p2pci demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
