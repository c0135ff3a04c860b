"""Pinned build inputs on the runner side: pack a directory, check and unpack a tarball.

An offer may pin an inputs tarball by SHA-256 (what the publisher's `[fetch]`
and `[[input]]` gave, see p2pci.runner.fetch). A build gets it unpacked
read-only at /build/inputs, exactly like the source at /build/src. The
tarball came from the network: `unpack_inputs` checks its SHA-256 against the
spec's before anything is unpacked and refuses a mismatch naming both hashes,
then unpacks it with `unpack_source`'s rules (regular files, directories and
symlinks only, no escaping names, capped sizes).

`pack_dir` is the publisher side: the same deterministic tar format as
`pack_source` (sorted names, mtime 0, uid/gid 0, modes 0644/0755, symlinks
kept), of a plain directory walk (no git).
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from p2pci.core.errors import BuildError, LocalError
from p2pci.runner.base import BuildSpec
from p2pci.runner.source import _git_entries, _walk_entries, _write, unpack_source

MAX_INPUT_BYTES = 16 << 30  # unpacked; a worker's own disk is the real limit
MAX_INPUT_ENTRIES = 1_000_000
_CHUNK = 1 << 20


def file_sha256(path: Path) -> tuple[bytes, int]:
    """(sha256, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def pack_dir(dir: Path, dest: Path, *, order_seed: int | None = None) -> tuple[bytes, int, int]:
    """Pack the directory `dir` (a plain walk; `.git` and `.p2pci` dirs left out) into `dest`.

    Returns (sha256, size, number of regular files). Same format as `pack_source`.
    """
    dir = Path(dir)
    if not dir.is_dir():
        raise LocalError(f"not a directory: {dir}")
    entries = list(_walk_entries(dir))
    sha, size = _write(entries, dest, order_seed, 0, None)
    return sha, size, sum(1 for e in entries if e.kind == "file")


def reorder(tar_path: Path, dest: Path, order_seed: int) -> tuple[bytes, int]:
    """The same entries as `tar_path` (one of ours) with siblings shuffled: for `p2pci try`."""
    with tarfile.open(tar_path, "r:") as src:
        entries = list(_git_entries(src))
        return _write(entries, dest, order_seed, 0, src)


def check_inputs(spec: BuildSpec, inputs_tar: Path | None) -> None:
    """Refuse a build whose inputs tarball is missing, unexpected or not the pinned one."""
    if spec.inputs_sha256 is None:
        if inputs_tar is not None:
            raise BuildError("an inputs tarball was given but the build pins none")
        return
    if inputs_tar is None:
        raise BuildError(f"the build pins inputs sha256 {spec.inputs_sha256.hex()} but none were given")
    actual, _ = file_sha256(inputs_tar)
    if actual != spec.inputs_sha256:
        raise BuildError(
            f"inputs refused: the tarball's sha256 is {actual.hex()}, "
            f"the build pins {spec.inputs_sha256.hex()} (tampered or corrupt)"
        )


def unpack_inputs(spec: BuildSpec, inputs_tar: Path | None, dest: Path) -> Path | None:
    """Check, then unpack into `dest`; None when the build has no inputs."""
    check_inputs(spec, inputs_tar)
    if inputs_tar is None:
        return None
    try:
        unpack_source(inputs_tar, dest, max_bytes=MAX_INPUT_BYTES, max_entries=MAX_INPUT_ENTRIES)
    except BuildError as e:
        raise BuildError(f"inputs: {e}") from None
    return dest
