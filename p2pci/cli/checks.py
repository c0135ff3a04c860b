"""Recipe checks shared by `p2pci publish` and `p2pci try`, so that the two agree.

Range errors come from `p2pci.recipe` (in recipe terms); here they are applied
to command-line overrides too, and the limits a default worker would refuse
are printed as warnings on stderr.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from p2pci.core.errors import LocalError
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
