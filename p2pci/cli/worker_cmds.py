"""`p2pci worker policy | pause | resume | drain`: what this donor agrees to build, and when.

It reads the same settings the daemon reads (`[worker]` of config.toml,
`build`), adds the caps the runner enforces on its own, says how each
`[worker] images` name resolves on this machine (without building
anything), and whether a recipe with the default limits fits.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from p2pci.core.errors import P2pciError


def image_entries(images: str | tuple[str, ...]) -> list[dict[str, Any]]:
    """[{name, id, note}] for `[worker] images`: IDs as they are, names looked up among local images."""
    if images == "any":
        return []
    out: list[dict[str, Any]] = []
    for name in images:
        if re.match(r"^sha256:[0-9a-f]{64}$", name):
            out.append({"name": name, "id": name, "note": "an image ID"})
            continue
        try:
            from p2pci.runner.images import debian_recipe, find_image

            m = re.match(r"^debian:([a-z][a-z0-9-]*)(?:\+(.*))?$", name)
            recipe = debian_recipe(m.group(1), (m.group(2) or "").split(",")) if m else name
            found = find_image(recipe)
        except P2pciError as e:
            out.append({"name": name, "id": None, "note": f"not resolved: {e}"})
            continue
        note = "built here" if found else "not built here: the daemon builds it when it starts"
        out.append({"name": name, "id": found, "note": note})
    return out


def effective_policy(config: Any, *, resolve_images: bool = True) -> dict[str, Any]:
    from p2pci.core.offer import DEFAULT_LIMITS
    from p2pci.runner.base import RunnerPolicy

    w, rp = config.worker, RunnerPolicy()
    fits = not any(
        getattr(DEFAULT_LIMITS, f) > cap
        for f, cap in (("timeout_s", w.max_timeout_s), ("memory_mb", w.max_memory_mb), ("cpus", w.max_cpus),
                       ("out_mb", w.max_out_mb))
    )
    return {
        "build": config.build,
        "slots": w.slots,
        "open_jobs": w.open_jobs,
        "max_timeout_s": w.max_timeout_s,
        "max_memory_mb": w.max_memory_mb,
        "max_cpus": w.max_cpus,
        "max_out_mb": w.max_out_mb,
        "max_pids": rp.max_pids,
        "images": "any" if w.images == "any" else (image_entries(w.images) if resolve_images else list(w.images)),
        "default_recipe_fits": fits and w.slots > 0 and config.build,
    }


@click.group("worker")
def worker_group() -> None:
    """This node as a donor: what it agrees to build, and pause / resume / drain."""


@worker_group.command("policy")
@click.option("--json", "as_json", is_flag=True, help="Print the policy as one JSON object.")
@click.pass_context
def policy_command(ctx: click.Context, as_json: bool) -> None:
    """The effective worker policy, from config.toml (no daemon needed).

    An offer outside it is refused, not capped: its timeout, memory, CPUs and
    output size must each be at most these, its image one of `images`, and
    with open_jobs false the offer must name this node.
    """
    from p2pci.cli.checks import home_of
    from p2pci.config import Paths, load_config
    from p2pci.recipe import format_duration, format_size_mb

    paths = Paths(home_of(ctx))
    cfg = load_config(paths.config)
    pol = effective_policy(cfg)
    if as_json:
        click.echo(json.dumps({"config": str(paths.config), **pol}))
        return
    src = str(paths.config) if paths.config.exists() else f"{paths.config} (missing: the defaults)"
    rows = [
        ("config", src),
        ("build", "yes" if cfg.build else "no (observer: never builds)"),
        ("slots", f"{pol['slots']} concurrent build(s)"),
        ("open jobs", "yes: any publisher" if pol["open_jobs"] else "no: only offers that name this node"),
        ("timeout", f"at most {format_duration(pol['max_timeout_s'])}"),
        ("memory", f"at most {format_size_mb(pol['max_memory_mb'])}"),
        ("cpus", f"at most {pol['max_cpus']}"),
        ("output", f"at most {format_size_mb(pol['max_out_mb'])} in /out"),
        ("pids", f"capped at {pol['max_pids']} by the runner"),
    ]
    for k, v in rows:
        click.echo(f"{k:<10}  {v}")
    if pol["images"] == "any":
        click.echo(
            f"{'images':<10}  any publisher's archive (checked against the offer's image ID) or a recipe image "
            "built here; never your other local images"
        )
    else:
        for i, e in enumerate(pol["images"]):
            label = "images" if i == 0 else ""
            click.echo(f"{label:<10}  {e['name']}: {e['id'] or '-'} ({e['note']})")
    verdict = "yes" if pol["default_recipe_fits"] else "no: recipes with the default limits are refused"
    click.echo(f"{'defaults':<10}  a recipe with the default limits (10m, 2g, 2 CPUs, 1g) fits: {verdict}")


def _control(ctx: click.Context, action: str, as_json: bool) -> None:
    from p2pci.cli.checks import home_of
    from p2pci.control.client import control_call
    from p2pci.textsafe import safe_text

    node = control_call(home_of(ctx), "worker_control", action=action)
    if as_json:
        click.echo(json.dumps(node))
        return
    state = node.get("accepting", "?")
    why = node.get("paused_why") or ""
    busy = len(node.get("building") or [])
    line = f"worker {state}" + (f" ({why})" if why and state != "open" else "")
    line += f"; {busy} build(s) running"
    if action == "drain":
        line += ": the daemon stops once they are done" if busy else ": the daemon stops now"
    click.echo(safe_text(line))


@worker_group.command("pause")
@click.option("--json", "as_json", is_flag=True, help="Print the node object as JSON.")
@click.pass_context
def pause_command(ctx: click.Context, as_json: bool) -> None:
    """Take no new work: no new claims, and claims not yet building are declined (reason
    `paused`, so publishers replace this worker at once). Running builds finish, commit and
    reveal. Lasts until `p2pci worker resume` or a restart."""
    _control(ctx, "pause", as_json)


@worker_group.command("resume")
@click.option("--json", "as_json", is_flag=True, help="Print the node object as JSON.")
@click.pass_context
def resume_command(ctx: click.Context, as_json: bool) -> None:
    """Take new work again (within `[worker] schedule` and `idle_load`, when set)."""
    _control(ctx, "resume", as_json)


@worker_group.command("drain")
@click.option("--json", "as_json", is_flag=True, help="Print the node object as JSON.")
@click.pass_context
def drain_command(ctx: click.Context, as_json: bool) -> None:
    """Pause, let the running builds finish and commit, then stop the daemon (a restarted
    worker still reveals what it built). SIGTERM does the same within `[worker] drain_grace_s`."""
    _control(ctx, "drain", as_json)
