"""`p2pci gc`: garbage-collect blobs, work dirs and loaded images now (docs/operator.md, "Disk")."""

from __future__ import annotations

import json
from typing import Any

import click


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def gc_lines(rep: dict[str, Any]) -> list[str]:
    """The human report of one collection."""
    verb = "would free" if rep["dry_run"] else "freed"
    budget = _size(rep["budget_bytes"]) if rep["budget_bytes"] else "no budget"
    lines = [
        f"{verb} {_size(rep['bytes_freed'])}: {rep['blobs_removed']} blob(s), {rep['work_dirs_removed']} work dir(s), "
        f"{len(rep['images_removed'])} image(s)",
        f"jobs let go: {rep['jobs_dropped']} ({rep['by_budget']} by the disk budget)",
        f"kept: {_size(rep['kept_bytes'])} of {budget}",
    ]
    if not rep["dry_run"]:
        lines.append(f"facts pruned: {rep['facts_pruned']}")
    for image in rep["images_removed"]:
        lines.append(f"image {'to remove' if rep['dry_run'] else 'removed'}: {image}")
    if rep["images_kept_in_use"]:
        lines.append(f"images no job needs but still in use (kept): {rep['images_kept_in_use']}")
    return lines


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def gc_command(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Collect garbage now: blobs, work dirs and images p2pci loaded that no job needs.

    A job needs its blobs until it is decided and older than [storage] retention_days;
    past [storage] max_gb the oldest decided jobs go first (other publishers' before this
    node's own). Undecided jobs and running builds are never touched, nor images the donor
    loaded. The daemon also collects every [storage] gc_interval_min minutes. Exit 0 done,
    2 error (no daemon).
    """
    from p2pci.cli.checks import home_of
    from p2pci.control.client import control_call

    rep = control_call(home_of(ctx), "gc", dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(rep))
        return
    for line in gc_lines(rep):
        click.echo(line)
