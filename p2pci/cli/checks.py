"""Recipe checks shared by `p2pci publish` and `p2pci try`, so that the two agree.

Range errors come from `p2pci.recipe` (in recipe terms); here they are applied
to command-line overrides too, and the limits a default worker would refuse
are printed as warnings on stderr.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from p2pci.config import Config
from p2pci.core.errors import LocalError, P2pciError
from p2pci.recipe import Recipe, check_limit, check_limits, default_worker_warnings


def checked_limits(recipe: Recipe, timeout_s: int | None = None, *, warn: bool = True) -> dict[str, Any]:
    """The offer's limits (the recipe's, `--timeout` overriding), range-checked; warnings on stderr."""
    limits = recipe.limits
    if timeout_s is not None:
        try:
            check_limit("timeout", timeout_s)
        except ValueError as e:
            raise LocalError(f"--timeout: {e}") from None
        limits = replace(limits, timeout_s=timeout_s)
    check_limits(limits)
    if warn:
        for line in default_worker_warnings(limits):
            click.echo(f"warning: {line}", err=True)
    return {
        "timeout_s": limits.timeout_s,
        "memory_mb": limits.memory_mb,
        "cpus": limits.cpus,
        "pids": limits.pids,
        "out_mb": limits.out_mb,
    }


# ---------------------------------------------------------------- command-line helpers


def hoist_option(args: list[str], name: str) -> list[str]:
    """Move every `NAME VALUE` / `NAME=VALUE` of `args` (before a `--`) to the front.

    The root group's options may then follow the subcommand:
    `p2pci jobs --home H` parses as `p2pci --home H jobs`.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a == name and i + 1 < len(args):
            front += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith(name + "="):
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


def check_fetch_dest(out: Path, force: bool) -> Path:
    """The absolute destination of `p2pci fetch`: missing or an empty directory unless `force`."""
    dest = out.expanduser().absolute()
    for parent in [dest, *dest.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "is" if parent == dest else f"is under {parent}, which is"
                raise LocalError(f"cannot fetch into {dest}: it {what} not a directory")
            break
    if dest.is_dir() and not force:
        entries = sum(1 for _ in dest.iterdir())
        if entries:
            raise LocalError(
                f"{dest} is not empty ({entries} entr{'y' if entries == 1 else 'ies'}): "
                "fetch into an empty or new directory, or pass --force to write into it"
            )
    return dest


NOTHING_TO_COMPARE = "nothing to compare:"


def results_differ(diff_text: str) -> bool:
    """Whether the daemon's `diff` text compares two different results (it starts with
    "nothing to compare:" when every revealed result is the same)."""
    return not diff_text.startswith(NOTHING_TO_COMPARE)


def resolve_config_images(config: Config, config_path: Path) -> Config:
    """`[worker] images` names resolved to image IDs at daemon start (found among the images
    built here, else built: deterministic, so the ID is the one publishers get). An image that
    cannot be resolved is an error naming the config file and line."""
    from p2pci.config import key_line, resolve_worker_images

    if not config.build or not config.worker.image_names():
        return config

    def resolve(name: str) -> str:
        from p2pci.runner.images import resolve_image

        try:
            image_id = resolve_image(name, progress=lambda m: click.echo(m, err=True))
        except P2pciError as e:
            try:
                line = key_line(config_path.read_text(encoding="utf-8"), "worker.images")
            except (OSError, UnicodeDecodeError):
                line = None
            where = f"{config_path} line {line}" if line is not None else str(config_path)
            raise LocalError(f"{where}: worker.images: cannot resolve {name!r}: {e}") from None
        click.echo(f"[worker] images: {name} is {image_id}", err=True)
        return image_id

    return resolve_worker_images(config, resolve)


def home_of(ctx: click.Context) -> Path:
    """The node directory of the command being run (the root group's `Home`, whatever
    module object defined it: `python -m p2pci.cli.main` runs it as `__main__`)."""
    obj = ctx.find_root().obj
    path = getattr(obj, "path", None)
    if isinstance(path, Path):
        return path
    from p2pci.config import default_home

    return default_home().expanduser().absolute()
