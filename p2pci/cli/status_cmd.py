"""`p2pci status [--once]`: the live TUI, or a plain-text snapshot."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import trio

from p2pci.config import default_home
from p2pci.control.client import NoDaemon, request, socket_path
from p2pci.core.errors import P2pciError

__all__ = ["status_command", "home_from_context"]

STATUS_TIMEOUT_S = 10.0


def _as_path(value: Any) -> Path | None:
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    for attr in ("path", "dir", "root", "home"):  # a Home-like object
        inner = getattr(value, attr, None)
        if isinstance(inner, (str, os.PathLike)) and str(inner):
            return Path(inner)
    return None


def home_from_context(ctx: click.Context) -> Path:
    """The home dir: root `--home`, else ctx.obj, else $P2PCI_HOME / ~/.local/share/p2pci."""
    root = ctx.find_root()
    for candidate in (root.params.get("home"), ctx.obj):
        path = _as_path(candidate)
        if path is not None:
            return path.expanduser()
    return default_home()


@click.command("status")
@click.option("--once", is_flag=True, help="Print a plain-text snapshot and exit (no TUI).")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot {node, peers, jobs} as JSON and exit.")
@click.pass_context
def status_command(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Live view of this node, its peers, the jobs and their verdicts.

    Keys: arrows or j/k move, Enter opens a job, l shows its log, f filters
    by verdict, Escape goes back, q quits. When stdout is not a terminal it
    prints the snapshot as --once does. Exit 2 if no daemon is running.
    """
    from p2pci.tui import model as m

    sock = socket_path(home_from_context(ctx))
    async def first_status() -> Any:
        with trio.fail_after(STATUS_TIMEOUT_S):
            return await request(sock, "status")

    try:
        result = trio.run(first_status)
    except (NoDaemon, P2pciError, OSError) as exc:
        click.echo(f"p2pci status: {exc}", err=True)
        ctx.exit(2)
    except trio.TooSlowError:
        click.echo(f"p2pci status: the daemon at {sock} did not answer within {STATUS_TIMEOUT_S:.0f} s", err=True)
        ctx.exit(2)
    if as_json:
        import json

        click.echo(json.dumps(result, default=lambda o: o.hex() if isinstance(o, bytes) else str(o)))
        return
    model = m.StatusModel(connected=True)
    now = int(time.time() * 1000)
    if not model.apply_status(result, now):
        click.echo("p2pci status: the daemon sent a malformed status reply", err=True)
        ctx.exit(2)
    if once or not sys.stdout.isatty():  # scripts, pipes, terminals without a TUI
        click.echo(m.snapshot_text(model, now), nl=False)
        return
    from p2pci.tui.app import StatusApp

    StatusApp(sock, model=model).run()
