"""The three kinds of failure (docs/internals.md "p2pci.core")."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class P2pciError(Exception):
    """Base of every p2pci error."""


class ProtocolError(P2pciError):
    """A peer sent something bad: drop it, count it, never crash.

    `reason` is a short stable code for counters (`p2pci status --json` → `facts.rejected`):
    for envelopes `oversize`, `encoding`, `version`, `body` or `signature`
    (`signing.open_envelope` sets them); for manifest blobs `size`, `sha256`, `digest`,
    `encoding`, `count` or `entry` (`results.parse_manifest`); `invalid` when nothing more
    precise is known.
    """

    def __init__(self, message: str = "", reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class LocalError(P2pciError):
    """Our own misuse: a bad argument, a bad recipe, a missing file."""


class BuildError(P2pciError):
    """A build could not produce a result (bad outputs, runner failure).

    A build that ran and exited non-zero is a result, not a BuildError.
    """


def first_error(exc: BaseException, kind: type[E]) -> E | None:
    """The first leaf of `exc` that is a `kind` (`exc` itself when it is one), depth first: what
    a nursery's exception group holds besides the cancellations its first failure caused."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = first_error(sub, kind)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, kind) else None
