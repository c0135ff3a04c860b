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

The mesh of daemon processes itself is `p2pci.testing.mesh`, shared with the
end-to-end tests (tests/e2e/mesh.py) and the benchmarks.
"""


from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pci.testing.mesh import (
    PUBLISH_TIMEOUT_S,
    Mesh,
    MeshError,
    Node,
    open_mesh,
    short,
    stop_kept_mesh,
    toml_value,
)

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

    busybox-static and mmdebstrap only when an image has to be built. Nothing is
    optional on the host any more: `p2pci diff` runs diffoscope only inside the build
    sandbox, from the debian:bookworm+diffoscope-minimal image (see `diff_note`).
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
    optional: list[str] = []
    return required, optional


def diff_note() -> str | None:
    """What to do for a byte-level `p2pci diff`, if its sandbox image is missing."""
    from p2pci.runner.diffbox import BUILD_HINT, DIFF_IMAGE
    from p2pci.runner.images import find_image

    try:
        if find_image(DIFF_IMAGE) is not None:
            return None
    except Exception:  # no Docker: the demo fails earlier with a clearer message
        return None
    return f"note: `{BUILD_HINT}` once for a byte-level `p2pci diff` (diffoscope in the sandbox)"


def ensure_host_packages(images: set[str]) -> None:
    """Install what the image builds need (as root, with apt-get), or say what to install."""
    required, optional = host_packages_needed(images)
    note = diff_note()
    if note:
        say("  " + note)
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
    trust = f"workers = {toml_value(list(peer_ids))}\nreplicas = {replicas}\nquorum = {quorum}\n"
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
        if " != " in body and ":" in body:  # the built-in comparison without diffoscope: "path: sha != sha"
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
