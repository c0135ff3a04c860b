"""The `p2pci` command line (docs/operator.md, docs/internals.md "Control socket"): thin commands over the control socket.

Every command parses, makes one call (the daemon's control socket, or the
pure core for `verify`), and prints. Errors are one line on stderr and exit
status 2; `publish --wait` exits 0 REPRODUCED, 1 DISPUTED/FAILED, 2 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from p2pci.config import Paths, default_home, load_config, write_default_config
from p2pci.core.errors import LocalError, P2pciError
from p2pci.daemon.control import ControlError, DaemonNotRunning, control_call, iter_events

FINAL = frozenset({"REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED"})
EXIT_OF_VERDICT = {"REPRODUCED": 0, "FAILED": 1, "DISPUTED": 1, "EXPIRED": 2, "CANCELLED": 2}


@dataclass(frozen=True)
class Home:
    """The node directory a command works on (`--home`)."""

    path: Path

    @property
    def paths(self) -> Paths:
        return Paths(self.path)

    def call(self, op: str, *, timeout: float | None = 600.0, **args: Any) -> Any:
        return control_call(self.path, op, timeout=timeout, **args)


class P2pciGroup(click.Group):
    """Turns our errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DaemonNotRunning as exc:
            fail(str(exc))
        except ControlError as exc:
            fail(f"error: {exc}")
        except P2pciError as exc:
            fail(f"error: {exc}")


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


@cli.command("init")
@pass_home
def init_command(home: Home) -> None:
    """Create the node key and a default config.toml; print the peer ID."""
    key, created = _load_or_create_key(home.paths, create=True)
    wrote = write_default_config(home.paths.config)
    if created or wrote:
        click.echo(f"initialised {home.path}", err=True)
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
    click.echo(info["peer_id"])
    for a in info["addrs"]:
        click.echo(a)


@cli.command("peers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {peer_id, addrs}.")
@pass_home
def peers_command(home: Home, as_json: bool) -> None:
    """Peers this node is connected to."""
    peers = home.call("peers")
    if as_json:
        echo_json([{"peer_id": p["peer_id"], "addrs": list(p["addrs"])} for p in peers])
        return
    if not peers:
        click.echo("no peers")
    for p in peers:
        click.echo(f"{p['peer_id']}  {' '.join(p['addrs'])}")


# ------------------------------------------------------------------ daemon


@cli.command("daemon")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR", help="Listen address (repeatable).")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR", help="Peer to join through (repeatable).")
@click.option("--no-build", is_flag=True, help="Never build: bootstrap / observer node only.")
@pass_home
def daemon_command(home: Home, listen: tuple[str, ...], bootstrap: tuple[str, ...], no_build: bool) -> None:
    """Run the node until SIGINT/SIGTERM."""
    from p2pci.daemon.run import run_daemon

    key, _ = _load_or_create_key(home.paths, create=True)
    write_default_config(home.paths.config)
    config = load_config(home.paths.config).with_overrides(
        listen=listen or None, bootstrap=bootstrap or None, build=False if no_build else None
    )
    run_daemon(home.path, config, key)


# ------------------------------------------------------------------ jobs


def _verdict_line(job: dict[str, Any]) -> str:
    votes = max((len(g["workers"]) for g in job.get("groups", [])), default=0)
    return f"{job['job'][:12]}  {job['project']:<20.20}  {job['verdict']:<10}  {votes}/{job['quorum']} of {job['replicas']}"


def _echo_job(job: dict[str, Any]) -> None:
    click.echo(f"job      {job['job']}")
    click.echo(f"project  {job['project']}")
    click.echo(f"verdict  {job['verdict']}" + (f"  {job['digest']}" if job.get("digest") else ""))
    click.echo(f"quorum   {job['quorum']} of {job['replicas']} replicas")
    for g in job.get("groups", []):
        click.echo(f"group    {g['digest'][:16]}  exit {g['exit_code']}  {len(g['workers'])} vote(s)")
        for w in g["workers"]:
            click.echo(f"           {w}")
    for w in job.get("dissenters", []):
        click.echo(f"dissent  {w}")
    for w in job.get("equivocators", []):
        click.echo(f"EQUIVOCATED  {w}")
    for ig in job.get("ignored", []):
        click.echo(f"ignored  {ig['worker']}: {ig['reason']}")
    if job.get("reason"):
        click.echo(f"reason   {job['reason']}")
    for r in job.get("rounds", []):
        click.echo(f"round {r['round']:<3} selected {len(r['workers'])}: {' '.join(r['workers'])}")
    for b in job.get("ignored_selects", []):
        click.echo(f"ignored select (round {b['round']}) by {b['signer']}: {b['reason']}")
    for w in job.get("missing", []):
        click.echo(f"missing  {w}: selected, no reveal here")
    for d in job.get("declines", []):
        detail = "".join(c if c.isprintable() else "?" for c in str(d["detail"]))[:200]
        click.echo(f"declined {d['worker']}: {d['reason']}" + (f" ({detail})" if detail else ""))


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
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (with --wait: the final one).")
@pass_home
def publish_command(
    home: Home,
    dir: Path,
    replicas: int | None,
    quorum: int | None,
    timeout_s: int | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Offer the project in DIR (its p2pci.toml) to the mesh."""
    from p2pci.core.offer import check_request
    from p2pci.recipe import load_recipe
    from p2pci.runner.source import pack_source
    from p2pci.store.blobs import BlobStore

    recipe = load_recipe(dir)
    trust = recipe.trust
    m = replicas if replicas is not None else trust.replicas
    n = quorum if quorum is not None else trust.quorum
    if replicas is not None and quorum is None:
        n = min(n, m)
    if quorum is not None and replicas is None:
        m = max(m, n)
    # the node checks again, for every client: this is only the early exit 2 before packing
    check_request(m, n, open_mode=trust.workers == "open", require=trust.require is not None)
    home.call("id")  # fail early (exit 2) when no daemon runs: nothing packed, nothing published
    limits = {
        "timeout_s": timeout_s or recipe.limits.timeout_s,
        "memory_mb": recipe.limits.memory_mb,
        "cpus": recipe.limits.cpus,
        "pids": recipe.limits.pids,
        "out_mb": recipe.limits.out_mb,
    }
    store = BlobStore(home.paths.blobs)
    with tempfile.TemporaryDirectory(dir=store.dir / "tmp") as tmp:
        tar = Path(tmp) / "source.tar"
        pack_source(recipe.dir, tar)
        ref = store.put_file(tar)
    require = None
    if trust.require is not None:
        require = {"keys": list(trust.require.keys), "min": trust.require.min}
    args: dict[str, Any] = {
        "project": recipe.project,
        "source": {"sha256": ref.sha256.hex(), "size": ref.size},
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
    if not wait:
        job = home.call("publish", timeout=None, **args)  # may build the base image first
        if as_json:
            echo_json(job)
        else:
            click.echo(job["job"])
        click.echo(STAY_ONLINE, err=True)
        return
    events = iter_events(home.path)
    try:
        job = home.call("publish", timeout=None, **args)
        job_id = job["job"]
        if not as_json:
            click.echo(f"published {job_id}", err=True)
        else:
            echo_json(job)
        click.echo(STAY_ONLINE, err=True)
        final = job if job["verdict"] in FINAL else None
        while final is None:
            try:
                ev = next(events)
            except StopIteration:
                fail("the daemon went away before the verdict")
            except DaemonNotRunning:
                fail("the daemon went away before the verdict")
            j = ev.get("job") if ev.get("event") == "job" else None
            if isinstance(j, dict) and j.get("job") == job_id and j.get("verdict") in FINAL:
                final = j
    finally:
        events.close()
    if as_json:
        echo_json(final)
    else:
        _echo_job(final)
    sys.exit(EXIT_OF_VERDICT.get(final["verdict"], 2))


@cli.command("jobs")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of job objects.")
@pass_home
def jobs_command(home: Home, as_json: bool) -> None:
    """The job board: every job this node knows and its verdict."""
    jobs = home.call("jobs")
    if as_json:
        echo_json(jobs)
        return
    if not jobs:
        click.echo("no jobs")
    for j in jobs:
        click.echo(_verdict_line(j))


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
@pass_home
def cancel_command(home: Home, job: str) -> None:
    """Cancel a job this node published."""
    view = home.call("cancel", job=job)
    click.echo(f"{view['job']} {view['verdict']}")


@cli.command("fetch")
@click.argument("job")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write the artifacts to.")
@pass_home
def fetch_command(home: Home, job: str, out: Path) -> None:
    """Fetch a job's agreed artifacts, each checked against the agreed manifest."""
    res = home.call("fetch", job=job, out=str(out.expanduser().absolute()), timeout=None)
    for f in res["files"]:
        click.echo(f"{f['sha256']}  {f['path']}")


@cli.command("logs")
@click.argument("job")
@click.option("--worker", default=None, metavar="PEER", help="Whose build log (peer ID or a unique prefix/suffix).")
@pass_home
def logs_command(home: Home, job: str, worker: str | None) -> None:
    """Build logs of a job (one worker's, or every revealed one)."""
    text = home.call("logs", job=job, worker=worker)
    click.echo(text, nl=not text.endswith("\n"))


@cli.command("diff")
@click.argument("job")
@pass_home
def diff_command(home: Home, job: str) -> None:
    """Why builds differ: diffoscope on one artifact set per group."""
    text = home.call("diff", job=job, timeout=None)
    click.echo(text, nl=not text.endswith("\n"))


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
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON.")
@click.option("--now", "now_ms", type=int, default=None, hidden=True)
def verify_command(file: Path, require: tuple[str, ...], trust: tuple[str, ...], as_json: bool, now_ms: int | None) -> None:
    """Re-tally an evidence bundle offline (no daemon) and say whether it is complete.

    Complete: it holds a valid selection round and a reveal of every selected worker that owes
    one. Exit 0 REPRODUCED from a complete bundle, 1 otherwise."""
    import time

    from p2pci.core.evidence import completeness, completeness_json, load_bundle
    from p2pci.core.messages import Require
    from p2pci.core.signing import public_of
    from p2pci.core.tally import ObserverPolicy, tally, verdict_json

    view = load_bundle(file.read_bytes())
    policy = ObserverPolicy(
        trust=frozenset(public_of(p) for p in trust) if trust else None,
        require=Require(keys=tuple(public_of(p) for p in require), min=len(require)) if require else None,
    )
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    verdict = tally(view, now, policy)
    obj = verdict_json(view, verdict)
    comp = completeness(view, verdict)
    obj["bundle"] = completeness_json(comp)
    if as_json:
        echo_json(obj)
    else:
        _echo_job(obj)
        if comp.complete:
            click.echo("bundle   complete")
        else:
            click.echo(f"bundle   INCOMPLETE: the verdict {obj['verdict']} comes from an incomplete bundle")
            for p in comp.problems():
                click.echo(f"           {p}")
    sys.exit(0 if obj["verdict"] == "REPRODUCED" and comp.complete else 1)


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
@pass_home
def trust_add(home: Home, peer_id: str) -> None:
    """Count votes of PEER_ID (and, once the set is non-empty, only of trusted keys)."""
    _trust(home, "trust_add", peer_id)
    click.echo(f"trusted {peer_id}")


@trust_group.command("remove")
@click.argument("peer_id")
@pass_home
def trust_remove(home: Home, peer_id: str) -> None:
    """Stop counting votes of PEER_ID."""
    keys = _trust(home, "trust_remove", peer_id)
    click.echo(f"untrusted {peer_id}")
    if not keys:
        click.echo(
            "the trust set is now empty: this node counts no votes until you add a key "
            "(or run `p2pci trust count all`)",
            err=True,
        )


@trust_group.command("count")
@click.argument("mode", type=click.Choice(["all", "listed"]))
@pass_home
def trust_count(home: Home, mode: str) -> None:
    """Count every vote the offer allows (all), or only votes of the trust set (listed)."""
    try:
        home.call("trust_count", mode=mode)
    except DaemonNotRunning:
        _trust_count_offline(home, mode)
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
        click.echo(k)


# ------------------------------------------------------------------ commands from other packages

try:
    from p2pci.cli.build_cmds import image_group, try_command

    cli.add_command(image_group, "image")
    cli.add_command(try_command, "try")
except ImportError:  # pragma: no cover - until the runner engineer's commands land
    pass

try:
    from p2pci.cli.status_cmd import status_command

    cli.add_command(status_command, "status")
except ImportError:  # pragma: no cover
    pass


def main() -> None:
    cli(prog_name="p2pci")


if __name__ == "__main__":
    main()
