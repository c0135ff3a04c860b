"""The three kinds of failure (docs/internals.md "p2pci.core")."""


class P2pciError(Exception):
    """Base of every p2pci error."""


class ProtocolError(P2pciError):
    """A peer sent something bad: drop it, count it, never crash."""


class LocalError(P2pciError):
    """Our own misuse: a bad argument, a bad recipe, a missing file."""


class BuildError(P2pciError):
    """A build could not produce a result (bad outputs, runner failure).

    A build that ran and exited non-zero is a result, not a BuildError.
    """
