"""The `p2pci` command line (docs/operator.md, docs/internals.md "Control socket"): thin commands over the control socket.

Every command parses, makes one call (the daemon's control socket, or the
pure core for `verify`), and prints. Errors are one line on stderr and exit
status 2; `publish --wait` exits 0 REPRODUCED, 1 DISPUTED/FAILED, 2 otherwise.
docs/cli.md lists every command's exit codes and `--json` document.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from p2pci.config import Paths, default_home, load_config, write_default_config
from p2pci.control.client import ControlError, DaemonNotRunning, control_call, iter_events
from p2pci.core.errors import LocalError, P2pciError
from p2pci.textsafe import safe_text

FINAL = frozenset({"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"})
EXIT_OF_VERDICT = {"REPRODUCED": 0, "FAILED": 1, "DISPUTED": 1, "EXPIRED": 2, "CANCELLED": 2}


@dataclass(frozen=True)
class Home:
    """The node directory a command works on (`--home`)."""

    path: Path

    @property
    def paths(self) -> Paths:
        return Paths(self.path)

    def call(
        self,
        op: str,
        *,
        timeout: float | None = 600.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **args: Any,
    ) -> Any:
        return control_call(self.path, op, timeout=timeout, on_event=on_event, **args)


class P2pciGroup(click.Group):
    """Turns our errors into one line on stderr and exit status 2; takes `--home` anywhere."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:  # the root: `p2pci jobs --home H` means `p2pci --home H jobs`
            from p2pci.cli.checks import hoist_option

            args = hoist_option(args, "--home")
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaemonNotRunning as exc:
            fail(str(exc))
        except ControlError as exc:
            fail(f"error: {safe_text(exc)}")  # the daemon's errors may quote peer-supplied text
        except P2pciError as exc:
            fail(f"error: {safe_text(exc)}")
        except OSError as exc:  # a local file problem (a home that is a file, a full disk): one line
            fail(f"error: {safe_text(exc)}")


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


pass_home = click.make_pass_decorator(Home)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, sort_keys=False, separators=(", ", ": ")))


@click.group(cls=P2pciGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Node directory (default: $P2PCI_HOME or ~/.local/share/p2pci).",
)
@click.version_option(package_name="p2pci")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """p2pci: peer-to-peer CI for reproducible builds."""
    ctx.obj = Home((home or default_home()).expanduser().absolute())


# ------------------------------------------------------------------ identity


def _load_or_create_key(paths: Paths, create: bool) -> tuple[Any, bool]:
    from p2pci.core.signing import NodeKey

    try:
        seed = paths.key.read_bytes()
    except FileNotFoundError:
        if not create:
            raise LocalError(f"no node key in {paths.home}: run `p2pci init` first") from None
        paths.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = NodeKey.generate()
        fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.seed)
        return key, True
    if len(seed) != 32:
        raise LocalError(f"{paths.key} is not a 32-byte key seed")
    return NodeKey.from_seed(seed), False


def _secure_home(home: Home) -> None:
    from p2pci.homeperm import secure_home

    for line in secure_home(home.path):
        click.echo(line, err=True)


def _ensure_identity(home: Home, key: Any, bits: int) -> Any:
    """The node's identity proof of at least `bits`: the stored one, or minted now with progress."""
    from p2pci.cli.progress import MintProgress
    from p2pci.identity_home import ensure_identity, load_identity

    have = load_identity(home.paths, key)
    if have is not None and have.bits >= bits:
        return ensure_identity(home.paths, key, bits)
    show = MintProgress(bits)
    show.start()
    got = ensure_identity(home.paths, key, bits, show)
    show.done(got.identity.bits, got.seconds)
    return got


@cli.command("init")
@click.option(
    "--json", "as_json", is_flag=True,
    help="Print {peer_id, home, created, identity_bits, identity_minted, identity_seconds} as JSON.",
)
@click.option(
    "--identity-bits",
    type=click.IntRange(0, 40),
    default=None,
    metavar="N",
    help="Strength of the identity proof to mint (leading zero bits; default 27, or $P2PCI_IDENTITY_BITS). "
    "An offer is only built by workers whose proof has at least its identity_bits.",
)
@pass_home
def init_command(home: Home, as_json: bool, identity_bits: int | None) -> None:
    """Create the node key, a default config.toml and the identity proof; print the peer ID.

    The identity proof is a proof of work bound to the node key, made once (about 76 s of
    one core at the default 27 bits; progress on stderr) and stored in HOME/identity.
    Running init again reuses it unless --identity-bits asks for more. The node
    directory is made 0700 and its secrets 0600 (an existing directory is tightened, and
    the command says so on stderr).
    """
    from p2pci.config import default_identity_bits

    bits = default_identity_bits() if identity_bits is None else identity_bits
    _secure_home(home)
    key, created = _load_or_create_key(home.paths, create=True)
    wrote = write_default_config(home.paths.config)
    got = _ensure_identity(home, key, bits)
    if created or wrote:
        click.echo(f"initialised {home.path}", err=True)
    if as_json:
        echo_json(
            {
                "peer_id": key.peer_id,
                "home": str(home.path),
                "created": created,
                "identity_bits": got.identity.bits,
                "identity_minted": got.minted,
                "identity_seconds": round(got.seconds, 3),
            }
        )
        return
    click.echo(key.peer_id)


@cli.command("id")
@click.option("--json", "as_json", is_flag=True, help="Print {peer_id, addrs} as JSON.")
@pass_home
def id_command(home: Home, as_json: bool) -> None:
    """This node's peer ID and listen addresses (addresses need the daemon)."""
    try:
        info = home.call("id")
    except DaemonNotRunning:
        key, _ = _load_or_create_key(home.paths, create=False)
        info = {"peer_id": key.peer_id, "addrs": []}
    if as_json:
        echo_json({"peer_id": info["peer_id"], "addrs": list(info["addrs"])})
        return
    click.echo(safe_text(info["peer_id"]))
    for a in info["addrs"]:
        click.echo(safe_text(a))


@cli.command("peers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {peer_id, addrs, via}.")
@pass_home
def peers_command(home: Home, as_json: bool) -> None:
    """Peers this node is connected to, and how: `direct`, or `relayed` through a circuit relay."""
    peers = home.call("peers")
    if as_json:
        echo_json([{"peer_id": p["peer_id"], "addrs": list(p["addrs"]), "via": p.get("via", "")} for p in peers])
        return
    if not peers:
        click.echo("no peers")
        return
    width = max(len(str(p["peer_id"])) for p in peers)
    click.echo(f"{'PEER':<{width}}  {'VIA':<8}  ADDRESSES")
    for p in peers:
        click.echo(safe_text(f"{p['peer_id']:<{width}}  {p.get('via') or '?':<8}  {' '.join(p['addrs'])}"))


# ------------------------------------------------------------------ daemon


@cli.command("daemon")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR", help="Listen address (repeatable).")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR", help="Peer to join through (repeatable).")
@click.option("--no-build", is_flag=True, help="Never build: bootstrap / observer node only.")
@click.option(
    "--relay",
    is_flag=True,
    help="Also serve as a circuit relay for peers behind NAT (limits: [net] relay_* in config.toml).",
)
@pass_home
def daemon_command(
    home: Home, listen: tuple[str, ...], bootstrap: tuple[str, ...], no_build: bool, relay: bool
) -> None:
    """Run the node until SIGINT/SIGTERM (the node directory is made 0700, its secrets 0600)."""
    from p2pci.daemon.run import run_daemon

    _secure_home(home)
    key, _ = _load_or_create_key(home.paths, create=True)
    write_default_config(home.paths.config)
    config = load_config(home.paths.config).with_overrides(
        listen=listen or None,
        bootstrap=bootstrap or None,
        build=False if no_build else None,
        relay=True if relay else None,
    )
    from p2pci.cli.checks import resolve_config_images

    config = resolve_config_images(config, home.paths.config)  # [worker] images names -> IDs
    from p2pci.identity_home import load_identity

    if load_identity(home.paths, key) is None:  # a home from before identities, or made without init
        from p2pci.config import default_identity_bits

        _ensure_identity(home, key, default_identity_bits())
    run_daemon(home.path, config, key)


# ------------------------------------------------------------------ jobs


JOBS_HEADER = f"{'JOB':<12}  {'PROJECT':<20}  {'VERDICT':<10}  {'VOTES':>5}  {'AGREE':>5}  REPLICAS/QUORUM"


def _verdict_line(job: dict[str, Any]) -> str:
    """One `jobs` row. VOTES counts every counted vote (the TUI's "votes"); AGREE, the largest group."""
    sizes = [len(g["workers"]) for g in job.get("groups", [])]
    return safe_text(
        f"{job['job'][:12]:<12}  {safe_text(job['project']):<20.20}  {job['verdict']:<10}  {sum(sizes):>5}  "
        f"{max(sizes, default=0):>5}  {job['replicas']}/{job['quorum']}"
    )


def _echo(line: str) -> None:
    """One line of a human-readable view: peer-supplied text shown escaped, never interpreted."""
    click.echo(safe_text(line))


def _echo_job(job: dict[str, Any]) -> None:
    _echo(f"job      {job['job']}")
    _echo(f"project  {job['project']}")
    _echo(f"verdict  {job['verdict']}" + (f"  {job['digest']}" if job.get("digest") else ""))
    _echo(f"quorum   {job['quorum']} of {job['replicas']} replicas")
    _echo_provenance(job.get("provenance"))
    for i, g in enumerate(job.get("groups", []), 1):
        _echo(f"group {i:<3}{g['digest'][:16]}  exit {g['exit_code']}  {len(g['workers'])} vote(s)")
        for w in g["workers"]:
            _echo(f"           {w}")
    for w in job.get("dissenters", []):
        _echo(f"dissent  {w}")
    if job.get("verdict") == "DISPUTED":
        _echo(f"why      p2pci diff {job['job'][:12]}   (what differs between the groups)")
    for w in job.get("equivocators", []):
        _echo(f"EQUIVOCATED  {w}")
    for ig in job.get("ignored", []):
        _echo(f"ignored  {ig['worker']}: {ig['reason']}")
    if job.get("reason"):
        _echo(f"reason   {job['reason']}")
    if job.get("cause"):
        _echo(f"cause    {job['cause']}")
    for r in job.get("rounds", []):
        _echo(f"round {r['round']:<3} selected {len(r['workers'])}: {' '.join(r['workers'])}")
    for b in job.get("ignored_selects", []):
        _echo(f"ignored select (round {b['round']}) by {b['signer']}: {b['reason']}")
    for w in job.get("missing", []):
        _echo(f"missing  {w}: selected, no reveal here")
    for d in job.get("declines", []):
        detail = str(d["detail"])[:200]
        _echo(f"declined {d['worker']}: {d['reason']}" + (f" ({detail})" if detail else ""))
    _echo_workers(job)


def _echo_workers(job: dict[str, Any]) -> None:
    """Per worker: claimed / selected / committed / revealed / declined (why) / timed out, and the
    deadlines (absolute, UTC) of the job."""
    from p2pci.cli.progress import PHASE_WORDS

    for w in job.get("workers") or []:
        text = f"worker   {w['worker']}  {PHASE_WORDS.get(str(w['phase']), str(w['phase']))}"
        if w.get("reason"):
            detail = " ".join(str(w.get("detail") or "").split())[:200]
            text += f" ({w['reason']}" + (f": {detail}" if detail else "") + ")"
        if w.get("log"):
            text += f"  log sha256 {w['log']}"
        _echo(text)
    dl = job.get("deadlines") or {}
    for name, label in (("claim_window_end", "claim window ends"), ("reveal", "reveal by"), ("offer", "deadline")):
        t = dl.get(name)
        if isinstance(t, int):
            _echo(f"{label:<18}{_utc(t)}")


def _utc(ms: int) -> str:
    import datetime

    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _echo_provenance(p: dict[str, Any] | None) -> None:
    """What the verdict is about, as the signed offer states it (every line escaped by _echo)."""
    import shlex

    if not p:
        return
    _echo(f"source   sha256 {p['source_sha256']}  ({p['source_size']} bytes)")
    if p.get("commit"):
        _echo(f"git      commit {p['commit']}  tree {p.get('tree') or '-'}")
    recipe = p.get("image_recipe")
    _echo(f"image    {p['image']}" + (f"  (recipe {recipe})" if recipe else ""))
    _echo(f"command  {shlex.join(p['command'])}")
    env = p.get("env") or {}
    if env:
        _echo("env      " + " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items())))
    if p.get("source_date_epoch") is not None:
        _echo(f"SOURCE_DATE_EPOCH {p['source_date_epoch']}")
    if p.get("inputs_sha256"):
        _echo(f"inputs   sha256 {p['inputs_sha256']}  ({p['inputs_size']} bytes, at /build/inputs)")
    else:
        _echo("inputs   none")


STAY_ONLINE = (
    "keep this node online until selection is done: it serves the source and signs the selection "
    "rounds (a job whose publisher never selects ends EXPIRED)"
)


@cli.command("publish")
@click.argument("dir", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replicas", type=click.IntRange(1, 64), default=None, help="How many workers build (M).")
@click.option("--quorum", type=click.IntRange(1, 64), default=None, help="How many must agree (N).")
@click.option("--timeout", "timeout_s", type=click.IntRange(1), default=None, help="Build timeout in seconds.")
@click.option("--wait", is_flag=True, help="Wait for the verdict (exit 0 REPRODUCED, 1 DISPUTED/FAILED, 2 else).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as one JSON document (with --wait: the final one).")
@click.option("--dirty", is_flag=True, help="Build the working tree as it is (default: refuse uncommitted changes).")
@click.option(
    "--events",
    "as_events",
    is_flag=True,
    help="With --wait: print NDJSON on stdout, one object per step and job/log event, the final job last.",
)
@pass_home
def publish_command(
    home: Home,
    dir: Path,
    replicas: int | None,
    quorum: int | None,
    timeout_s: int | None,
    wait: bool,
    as_json: bool,
    dirty: bool = False,
    as_events: bool = False,
) -> None:
    """Offer the project in DIR (its p2pci.toml) to the mesh.

    In a git work tree the commit HEAD is built, with the p2pci.toml of that
    commit; uncommitted changes make it refuse unless --dirty.

    With --wait it shows each step on stderr (pack, offer, selection rounds,
    each worker's phase with the reason of a decline or timeout, this node's
    live build log, the verdict and its cause); --json prints one final
    document on stdout, --events NDJSON.
    """
    from p2pci.cli.progress import Progress

    if as_events and not wait:
        raise click.UsageError("--events needs --wait")
    if as_events and as_json:
        raise click.UsageError("--events and --json are exclusive")
    progress = Progress()

    def step(name: str, text: str) -> None:
        if as_events:
            echo_json({"event": "step", "step": name, "text": text})
        else:
            progress.step(text)

    def daemon_step(ev: dict[str, Any]) -> None:  # the daemon's long steps: image build, export, offer
        if ev.get("event") != "step":
            return
        if as_events:
            echo_json(ev)
        else:
            progress.daemon_step(ev)

    from p2pci.cli.checks import checked_limits
    from p2pci.cli.source_cmds import pack_project
    from p2pci.core.offer import check_request
    from p2pci.runner.images import image_recipe
    from p2pci.runner.tree import read_recipe, refuse_dirty, select_tree
    from p2pci.store.blobs import BlobStore

    tree = select_tree(dir, dirty=dirty)
    if not dirty:
        refuse_dirty(tree)  # before anything else: nothing is packed or offered
    recipe = read_recipe(tree)
    trust = recipe.trust
    m = replicas if replicas is not None else trust.replicas
    n = quorum if quorum is not None else trust.quorum
    if replicas is not None and quorum is None:
        n = min(n, m)
    if quorum is not None and replicas is None:
        m = max(m, n)
    # the node checks again, for every client: this is only the early exit 2 before packing
    check_request(m, n, open_mode=trust.workers == "open", require=trust.require is not None)
    limits = checked_limits(recipe, timeout_s)  # same checks as `p2pci try`; warnings on stderr
    home.call("id")  # fail early (exit 2) when no daemon runs: nothing packed, nothing published
    store = BlobStore(home.paths.blobs)
    step("pack", f"packing {tree.describe()} (source and pinned inputs)")
    packed = pack_project(  # the source and the pinned inputs ([fetch] runs here), into the store
        tree, recipe, store, progress=lambda text: step("pack" if text.startswith("source ") else "inputs", text)
    )
    require = None
    if trust.require is not None:
        require = {"keys": list(trust.require.keys), "min": trust.require.min}
    args: dict[str, Any] = {
        "project": recipe.project,
        "source": {"sha256": packed.source_sha256.hex(), "size": packed.source_size},
        "image": recipe.image,
        "command": list(recipe.command),
        "env": dict(recipe.env),
        "source_date_epoch": recipe.source_date_epoch,
        "limits": limits,
        "replicas": m,
        "quorum": n,
        "workers": "open" if trust.workers == "open" else list(trust.workers),
        "require": require,
    }
    if packed.inputs is not None:  # the daemon checks it is in its store and pins it in the offer
        args["inputs"] = {"sha256": packed.inputs.sha256.hex(), "size": packed.inputs.size}
    args["provenance"] = {**packed.offer_provenance, "recipe": image_recipe(recipe.image)}
    if not wait:
        try:  # the daemon resolves (or builds) the base image and exports it: its steps on stderr
            job = home.call("publish", timeout=None, on_event=daemon_step, **args)
        finally:
            progress.done()
        if as_json:
            echo_json(job)
        else:
            _echo(job["job"])
        click.echo(STAY_ONLINE, err=True)
        return
    try:
        job = home.call("publish", timeout=None, on_event=daemon_step, **args)
        job_id = job["job"]
        if as_events:
            echo_json({"event": "step", "step": "published", "text": job_id})
        else:
            progress.done()
            click.echo(safe_text(f"published {job_id}"), err=True)  # stdout: one document, the final one
            click.echo(STAY_ONLINE, err=True)
            progress.job(job)
        # subscribed with the job: the stream starts with what the job did so far (a fast
        # verdict too), and every later `job` event is newer (no line printed twice)
        events = iter_events(home.path, job=job_id)
        final = None
        try:
            while final is None:
                try:
                    ev = next(events)
                except StopIteration:
                    fail("the daemon went away before the verdict")
                except DaemonNotRunning:
                    fail("the daemon went away before the verdict")
                j = ev.get("job")
                if ev.get("event") == "log" and j == job_id:
                    if as_events:
                        echo_json(ev)
                    else:
                        progress.log(str(ev.get("worker", "")), str(ev.get("text", "")))
                if ev.get("event") != "job" or not isinstance(j, dict) or j.get("job") != job_id:
                    continue
                if as_events:
                    echo_json(ev)
                else:
                    progress.job(j)
                if j.get("verdict") in FINAL:
                    final = j
        except StopIteration:
            fail("the daemon went away before the verdict")
        finally:
            events.close()
    finally:
        progress.done()
    if as_events:
        pass  # the final job event was the last line
    elif as_json:
        echo_json(final)
    else:
        _echo_job(final)
    sys.exit(EXIT_OF_VERDICT.get(final["verdict"], 2))


@cli.command("jobs")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of job objects.")
@click.option("--mine", is_flag=True, help="Only the jobs this node built (or declined after claiming), with its phase.")
@pass_home
def jobs_command(home: Home, as_json: bool, mine: bool = False) -> None:
    """The job board: every job this node knows and its verdict."""
    jobs = home.call("jobs", mine=True) if mine else home.call("jobs")
    if as_json:
        echo_json(jobs)
        return
    if not jobs:
        click.echo("no jobs" if not mine else "this node has built no job yet")
        return
    if not mine:
        click.echo(JOBS_HEADER)
        for j in jobs:
            click.echo(_verdict_line(j))
        return
    from p2pci.cli.progress import PHASE_WORDS

    me = home.call("id")["peer_id"]
    click.echo(JOBS_HEADER + "  MY PART")
    for j in jobs:
        row = next((w for w in j.get("workers") or [] if w.get("worker") == me), None)
        part = "building" if row is None else PHASE_WORDS.get(str(row["phase"]), str(row["phase"]))
        if row is not None and row.get("reason"):
            part += f" ({row['reason']})"
        click.echo(_verdict_line(j) + safe_text(f"  {part}"))


@cli.command("show")
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON.")
@pass_home
def show_command(home: Home, job: str, as_json: bool) -> None:
    """One job's votes, groups and verdict (JOB: a unique hex prefix)."""
    view = home.call("show", job=job)
    echo_json(view) if as_json else _echo_job(view)


@cli.command("cancel")
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON.")
@pass_home
def cancel_command(home: Home, job: str, as_json: bool) -> None:
    """Cancel a job this node published."""
    view = home.call("cancel", job=job)
    echo_json(view) if as_json else _echo(f"{view['job']} {view['verdict']}")


@cli.command("fetch")
@click.argument("job")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write the artifacts to.")
@click.option("--force", is_flag=True, help="Write into a directory that is not empty.")
@click.option("--json", "as_json", is_flag=True, help="Print {job, digest, files: [{path, sha256, …}]} as JSON.")
@click.option("--group", "group", type=click.IntRange(1), default=None, help="DISPUTED: fetch group N (as `show` lists them).")
@pass_home
def fetch_command(home: Home, job: str, out: Path, force: bool, as_json: bool, group: int | None = None) -> None:
    """Fetch a job's agreed artifacts, each checked against the agreed manifest.

    OUT must be missing or empty (--force writes into a non-empty one). A
    DISPUTED job has no agreed result: --group N fetches the artifacts of its
    N-th group (`show` lists the groups, largest first), checked against that
    group's manifest.
    """
    from p2pci.cli.checks import check_fetch_dest

    dest = check_fetch_dest(out, force)
    extra: dict[str, Any] = {} if group is None else {"group": group}
    res = home.call("fetch", job=job, out=str(dest), timeout=None, **extra)
    if as_json:
        echo_json(res)
        return
    for f in res["files"]:
        _echo(f"{f['sha256']}  {f['path']}")


class ByteSize(click.ParamType[int]):
    """A byte count: 1048576, 64K, 10M, 1G."""

    name = "bytes"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in ("K", "M", "G") else ""
        try:
            n = int(text[: len(text) - len(unit)]) * self._UNITS[unit]
        except ValueError:
            self.fail(f"{value!r} is not a byte count (e.g. 65536, 64K, 10M)", param, ctx)
        if n < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return n


def _stream_log(home: Home, job: str, entry: dict[str, Any], max_bytes: int, tail: int | None) -> None:
    """One revealed log to stdout, a range at a time (never the whole log in memory)."""
    import codecs

    size, who = int(entry["size"]), str(entry["worker"])
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out = sys.stdout

    def show(data: bytes, final: bool = False) -> None:
        out.write(safe_text(decoder.decode(data, final), multiline=True))

    if tail is None:  # the start of the log, at most max_bytes
        offset, end = 0, min(size, max_bytes)
        while offset < end:
            r = home.call("log_range", job=job, worker=who, offset=offset, length=end - offset)
            if not r["data"]:
                break
            show(r["data"])
            offset = r["offset"] + len(r["data"])
        show(b"", final=True)
        if size > end:
            out.write(f"\n(… {size - end} more bytes not shown: --max)\n")
        return
    # the last `tail` lines: ranges read from the end until enough newlines (or max_bytes)
    chunks: list[bytes] = []  # at most max_bytes in all
    start, got, newlines = size, 0, 0
    while start > 0 and got < max_bytes and newlines <= tail:
        length = min(start, max_bytes - got, 1 << 20)
        r = home.call("log_range", job=job, worker=who, offset=start - length, length=length)
        data = r["data"]
        if not data:
            break
        chunks.insert(0, data)
        start, got, newlines = r["offset"], got + len(data), newlines + data.count(b"\n")
    lines = b"".join(chunks).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    shown = lines[-tail:]
    if start > 0 or len(lines) > len(shown):
        out.write("(… earlier lines not shown: --tail)\n")
    show(b"\n".join(shown) + b"\n", final=True)


def _log_json(home: Home, job: str, entry: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """One log for `logs --json` (revealed, or a decline's): its first `max_bytes`, exact text
    (decoded as UTF-8, errors replaced)."""
    out = {k: entry[k] for k in ("worker", "exit_code", "digest", "size", "too_large")}
    out["declined"] = entry.get("declined")
    data = b""
    if not entry["too_large"]:
        end = min(int(entry["size"]), max_bytes)
        try:
            while len(data) < end:
                r = home.call("log_range", job=job, worker=str(entry["worker"]), offset=len(data), length=end - len(data))
                if not r["data"]:
                    break
                data += r["data"]
        except ControlError as exc:
            out["error"] = str(exc)
    out["text"] = data.decode("utf-8", "replace")
    return out


@cli.command("logs")
@click.argument("job")
@click.option("--worker", default=None, metavar="PEER", help="Whose build log (peer ID or a unique prefix/suffix).")
@click.option("--max", "max_bytes", type=ByteSize(), default="1M", show_default=True,
              help="Show at most this much of each log (its start; with --tail, of its end).")
@click.option("--tail", "tail", type=click.IntRange(1), default=None, metavar="N", help="Only the last N lines of each log.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {job, logs: [{worker, exit_code, digest, size, too_large, declined, text}]} as JSON "
                   "(each text at most --max; a decline's log has exit_code and digest null).")
@pass_home
def logs_command(home: Home, job: str, worker: str | None, max_bytes: int, tail: int | None, as_json: bool) -> None:
    """Build logs of a job (one worker's, or every revealed one, then those of
    workers that declined with a log: a build that timed out or could not start).

    Logs are fetched from their revealers by range and streamed to the terminal,
    control characters shown escaped. A log that declares more than the daemon's
    limit (32 MiB) is refused unfetched. Exit 2 if every selected log was refused.
    """
    index = home.call("log_index", job=job, worker=worker)
    if as_json:
        echo_json({"job": job, "logs": [_log_json(home, job, e, max_bytes) for e in index]})
        return
    if not index:  # nothing revealed yet: this node's own build log, if any (bounded by the daemon)
        text = safe_text(home.call("logs", job=job, worker=worker), multiline=True)
        click.echo(text, nl=not text.endswith("\n"))
        return
    refused = 0
    for entry in index:
        if entry.get("declined"):
            _echo(f"==> {entry['worker']} declined ({entry['declined']}) ({entry['size']} bytes) <==")
        else:
            _echo(f"==> {entry['worker']} exit {entry['exit_code']} digest {entry['digest'][:16]} ({entry['size']} bytes) <==")
        if entry["too_large"]:
            refused += 1
            _echo(f"(refused: the log declares {entry['size']} bytes, over the daemon's limit; not fetched)")
            continue
        try:
            _stream_log(home, job, entry, max_bytes, tail)
        except ControlError as exc:
            refused += 1
            _echo(f"(log unavailable: {exc})")
        sys.stdout.flush()
    if refused == len(index):
        fail("error: no log could be shown")


@cli.command("diff")
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print {job, differs, text} as JSON.")
@pass_home
def diff_command(home: Home, job: str, as_json: bool) -> None:
    """Why builds differ: diffoscope on one artifact set per group.

    Exit 0 when the revealed results are all the same, 1 when they differ
    (as diff(1) does), 2 on an error.
    """
    from p2pci.cli.checks import results_differ

    text = home.call("diff", job=job, timeout=None)
    differs = results_differ(text)
    if as_json:
        echo_json({"job": job, "differs": differs, "text": text})
    else:
        shown = safe_text(text, multiline=True)
        click.echo(shown, nl=not shown.endswith("\n"))
    sys.exit(1 if differs else 0)


@cli.command("export")
@click.argument("job")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write (default: stdout).")
@pass_home
def export_command(home: Home, job: str, output: Path | None) -> None:
    """Write the job's evidence bundle (its signed facts) for `p2pci verify`."""
    data = home.call("export", job=job)
    if not isinstance(data, bytes):
        raise ControlError("the daemon sent no bundle")
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, output)
        click.echo(f"wrote {output} ({len(data)} bytes)", err=True)


@cli.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--require", "require", multiple=True, metavar="PEER", help="A key that must be among the agreeing votes (repeatable).")
@click.option("--trust", "trust", multiple=True, metavar="PEER", help="Count only votes of these keys (repeatable).")
@click.option("--quorum", "quorum", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Your own quorum: N agreeing votes at least (only raises the offer's).")
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON.")
@click.option("--now", "now_ms", type=int, default=None, hidden=True)
def verify_command(
    file: Path, require: tuple[str, ...], trust: tuple[str, ...], quorum: int | None, as_json: bool, now_ms: int | None
) -> None:
    """Re-tally an evidence bundle offline (no daemon) and say whether it is complete.

    Complete: it holds a valid selection round and a reveal of every selected worker that owes
    one. Exit 0 REPRODUCED from a complete bundle, 1 otherwise (any other verdict, or an
    incomplete bundle), 2 an unreadable or corrupt bundle.
    """
    import time

    from p2pci.core.evidence import completeness, completeness_json, load_bundle
    from p2pci.core.messages import Require
    from p2pci.core.signing import public_of
    from p2pci.core.tally import ObserverPolicy, tally, verdict_json

    view = load_bundle(file.read_bytes())
    policy = ObserverPolicy(
        trust=frozenset(public_of(p) for p in trust) if trust else None,
        require=Require(keys=tuple(public_of(p) for p in require), min=len(require)) if require else None,
        quorum=quorum,
    )
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    verdict = tally(view, now, policy)
    obj = verdict_json(view, verdict)
    comp = completeness(view, verdict)
    obj["bundle"] = completeness_json(comp)
    obj["manifests"] = manifests_json(view, verdict)
    if as_json:
        echo_json(obj)
    else:
        _echo_job(obj)
        for m in obj["manifests"]:
            click.echo(
                f"manifest {m['digest'][:12]}: {m['files']} files, blob {m['sha256'][:12]} ({m['size']} bytes;"
                " not in the bundle: `fetch` gets it by hash and checks it against these reveals)"
            )
        if comp.complete:
            click.echo("bundle   complete")
        else:
            click.echo(f"bundle   INCOMPLETE: the verdict {obj['verdict']} comes from an incomplete bundle")
            for p in comp.problems():
                click.echo(f"           {p}")
    sys.exit(0 if obj["verdict"] == "REPRODUCED" and comp.complete else 1)


def manifests_json(view: Any, verdict: Any) -> list[dict[str, Any]]:
    """The manifest blobs the counted groups' reveals name (docs/protocol.md §4.4.1): one row per
    distinct (digest, blob, files), in group order. A bundle holds facts only, never blobs."""
    from p2pci.core.messages import Reveal

    rows: list[dict[str, Any]] = []
    for g in verdict.groups:
        for w in g.workers:
            for f in view.reveals.get(w, ()):
                rev = f.body
                if isinstance(rev, Reveal) and rev.digest == g.digest:
                    row = {
                        "digest": g.digest.hex(),
                        "sha256": rev.manifest.sha256.hex(),
                        "size": rev.manifest.size,
                        "files": rev.files,
                    }
                    if row not in rows:
                        rows.append(row)
    return rows


# ------------------------------------------------------------------ trust


@cli.group("trust", cls=P2pciGroup)
def trust_group() -> None:
    """This node's trust set: whose votes it counts.

    Mode "all" counts every vote the offer allows; mode "listed" counts only the set's keys
    (an empty set then counts none: removing the last key never widens it). `trust add`
    switches to "listed"; `trust count all|listed` switches explicitly."""


def _trust_offline(home: Home, op: str, peer_id: str | None) -> list[str]:
    from p2pci.core.signing import public_of
    from p2pci.store.facts import FactStore

    if peer_id is not None:
        public_of(peer_id)
    with FactStore(home.paths.db) as st:
        stored = st.kv_get("trust", None)
        if stored is None:  # never changed: the config's keys seed the set (as in the daemon)
            stored = list(load_config(home.paths.config).trust.keys)
        keys: list[str] = list(stored)
        if op == "trust_add" and peer_id not in keys:
            keys.append(peer_id or "")
        elif op == "trust_remove" and peer_id in keys:
            keys.remove(peer_id)
        keys.sort()
        if op != "trust_list":
            st.kv_put("trust", keys)
        if op == "trust_add":
            st.kv_put("trust_mode", "listed")
    return keys


def _trust_count_offline(home: Home, mode: str) -> str:
    from p2pci.store.facts import FactStore

    with FactStore(home.paths.db) as st:
        st.kv_put("trust_mode", mode)
    return mode


def _trust(home: Home, op: str, peer_id: str | None = None) -> list[str]:
    args: dict[str, Any] = {} if peer_id is None else {"peer_id": peer_id}
    try:
        return list(home.call(op, **args))
    except DaemonNotRunning:
        return _trust_offline(home, op, peer_id)


@trust_group.command("add")
@click.argument("peer_id")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting trust set as a JSON list.")
@pass_home
def trust_add(home: Home, peer_id: str, as_json: bool) -> None:
    """Count votes of PEER_ID (and, once the set is non-empty, only of trusted keys)."""
    keys = _trust(home, "trust_add", peer_id)
    echo_json(keys) if as_json else click.echo(f"trusted {peer_id}")


@trust_group.command("remove")
@click.argument("peer_id")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting trust set as a JSON list.")
@pass_home
def trust_remove(home: Home, peer_id: str, as_json: bool) -> None:
    """Stop counting votes of PEER_ID."""
    keys = _trust(home, "trust_remove", peer_id)
    echo_json(keys) if as_json else click.echo(f"untrusted {peer_id}")
    if not keys:
        click.echo(
            "the trust set is now empty: this node counts no votes until you add a key "
            "(or run `p2pci trust count all`)",
            err=True,
        )


@trust_group.command("count")
@click.argument("mode", type=click.Choice(["all", "listed"]))
@click.option("--json", "as_json", is_flag=True, help='Print {"count": MODE} as JSON.')
@pass_home
def trust_count(home: Home, mode: str, as_json: bool) -> None:
    """Count every vote the offer allows (all), or only votes of the trust set (listed)."""
    try:
        home.call("trust_count", mode=mode)
    except DaemonNotRunning:
        _trust_count_offline(home, mode)
    if as_json:
        echo_json({"count": mode})
        return
    click.echo(f"counting {'every vote the offer allows' if mode == 'all' else 'only votes of the trust set'}")


@trust_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_home
def trust_list(home: Home, as_json: bool) -> None:
    """The trust set."""
    keys = _trust(home, "trust_list")
    if as_json:
        echo_json(keys)
        return
    for k in keys:
        _echo(k)


# ------------------------------------------------------------------ commands from other packages

try:
    from p2pci.cli.build_cmds import image_group, try_command

    cli.add_command(image_group, "image")
    cli.add_command(try_command, "try")
except ImportError:  # pragma: no cover - until the runner engineer's commands land
    pass

from p2pci.cli.source_cmds import source_hash_command  # noqa: E402

cli.add_command(source_hash_command, "source-hash")

try:
    from p2pci.cli.status_cmd import status_command

    cli.add_command(status_command, "status")
except ImportError:  # pragma: no cover
    pass


from p2pci.cli.badge_cmd import badge_command  # noqa: E402  (CI integration: issue 16)
from p2pci.cli.watch_cmds import history_command, watch_command  # noqa: E402

cli.add_command(watch_command, "watch")
cli.add_command(history_command, "history")
cli.add_command(badge_command, "badge")

from p2pci.cli.worker_cmds import worker_group  # noqa: E402  (donor controls: issue 16)

cli.add_command(worker_group, "worker")

from p2pci.cli.gc_cmd import gc_command  # noqa: E402  (garbage collection: issue 14)

cli.add_command(gc_command, "gc")


def main() -> None:
    cli(prog_name="p2pci")


if __name__ == "__main__":
    main()
