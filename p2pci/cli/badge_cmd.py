"""`p2pci badge PROJECT`: an SVG badge with the project's last verdict and how many workers agreed.

The verdict comes from the daemon's board (the newest final job of the
project), or, when no daemon runs, from the `p2pci watch` history in the
home. Everything shown is escaped for XML: a project name is data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import click

from p2pci.core.errors import LocalError

FINAL = ("REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED")
COLOURS = {
    "REPRODUCED": "#4c1",
    "FAILED": "#e05d44",
    "DISPUTED": "#fe7d37",
    "EXPIRED": "#9f9f9f",
    "CANCELLED": "#9f9f9f",
    "PENDING": "#007ec6",
}
LABEL = "p2pci"
MAX_PROJECT = 100


def last_result(home: Path, project: str) -> dict[str, Any]:
    """{project, job, verdict, agreed, replicas, source} of the project's newest final job."""
    from p2pci.cli.watch_cmds import HISTORY_FILE, agreed_count, open_history
    from p2pci.control.client import DaemonNotRunning, control_call

    try:
        jobs = control_call(home, "jobs")
    except DaemonNotRunning:
        jobs = None
    if isinstance(jobs, list):  # newest first
        mine = [j for j in jobs if isinstance(j, dict) and j.get("project") == project]
        for j in mine:
            if j.get("verdict") in FINAL:
                return {"project": project, "job": j["job"], "verdict": j["verdict"], "agreed": agreed_count(j),
                        "replicas": int(j.get("replicas", 0)), "source": "daemon"}
        if mine:
            j = mine[0]
            return {"project": project, "job": j["job"], "verdict": "PENDING", "agreed": agreed_count(j),
                    "replicas": int(j.get("replicas", 0)), "source": "daemon"}
    if (home / HISTORY_FILE).exists():
        with open_history(home) as hist:
            for e in hist.entries(project, limit=50):
                if e.verdict in FINAL:
                    return {"project": project, "job": e.job, "verdict": e.verdict, "agreed": e.agreed,
                            "replicas": e.replicas, "source": "history"}
    where = "the board" if jobs is not None else "the watch history (no daemon is running)"
    raise LocalError(f"no finished job of project {project!r} in {where}")


def _width(text: str) -> int:
    """Approximate rendered width at 11px Verdana (shields.io's metric, rounded up)."""
    return 10 + sum(8 if c.isupper() or c in "mwMW@%" else 6 if c.isalnum() else 4 for c in text)


def badge_svg(verdict: str, agreed: int, replicas: int, project: str = "") -> str:
    """A flat two-part badge: "p2pci | reproduced 3/3"."""
    message = f"{verdict.lower()} {agreed}/{replicas}" if replicas else verdict.lower()
    colour = COLOURS.get(verdict, "#9f9f9f")
    lw, mw = _width(LABEL), _width(message)
    w = lw + mw
    title = f"{project[:MAX_PROJECT]}: {message}" if project else message
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        f'<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{colour}"/>'
        f'<rect width="{w}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lw / 2:g}" y="14">{escape(LABEL)}</text>'
        f'<text x="{lw + mw / 2:g}" y="14">{escape(message)}</text></g></svg>\n'
    )


@click.command("badge")
@click.argument("project")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the SVG here (default: stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print {project, job, verdict, agreed, replicas} instead of SVG.")
@click.pass_context
def badge_command(ctx: click.Context, project: str, output: Path | None, as_json: bool) -> None:
    """An SVG badge for a README: PROJECT's last verdict and how many workers agreed.

    Reads the daemon's board, or the `p2pci watch` history when no daemon
    runs. Exit 0, or 2 when the project has no finished job.
    """
    from p2pci.cli.checks import home_of

    home = home_of(ctx)
    res = last_result(home, project)
    if as_json:
        click.echo(json.dumps(res))
        return
    svg = badge_svg(res["verdict"], res["agreed"], res["replicas"], project)
    if output is None:
        click.echo(svg, nl=False)
        return
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(svg, encoding="utf-8")
    os.replace(tmp, output)
    click.echo(f"wrote {output}", err=True)
