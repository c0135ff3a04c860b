"""Build results: manifest entries and the result digest (docs/protocol.md section 7).

result digest = sha256(canonical([exit_code, manifest])) where the manifest
is the list of `{path, size, mode, sha256}` maps of every regular file under
/out, sorted by path, mode reduced to the permission bits (mode & 0o777).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2pci.core.codec import canonical


@dataclass(frozen=True, order=True, slots=True)
class ManifestEntry:
    path: str  # relative to /out, "/"-separated, no leading "/", no "." or ".." parts
    size: int
    mode: int  # permission bits only (mode & 0o777)
    sha256: bytes  # 32 bytes

    def to_obj(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mode": self.mode, "sha256": self.sha256}


def manifest_obj(manifest: Sequence[ManifestEntry]) -> list[dict[str, Any]]:
    return [e.to_obj() for e in sorted(manifest, key=lambda e: e.path)]


def result_digest(exit_code: int, manifest: Sequence[ManifestEntry]) -> bytes:
    """sha256(canonical([exit_code, manifest])), the manifest sorted by path."""
    return hashlib.sha256(canonical([exit_code, manifest_obj(manifest)])).digest()


# --------------------------------------------------------------------------
# the manifest as a blob (outputs of any size)
#
# A reveal names the manifest blob by hash; the digest stays one hash over the
# exit code and the manifest bytes: sha256(0x92 ‖ msgpack(exit_code) ‖ manifest
# bytes), which is exactly sha256(canonical([exit_code, manifest])) above, so a
# tally needs no manifest and the manifest blob is verified against the digest
# when it is fetched.

MAX_MANIFEST_ENTRIES = 1_000_000
MAX_MANIFEST_BYTES = 512 << 20  # a million entries of 4096-byte paths would not fit: checked


def manifest_bytes(manifest: Sequence[ManifestEntry]) -> bytes:
    """The manifest blob: canonical msgpack of the entry maps, sorted by path."""
    return canonical(manifest_obj(manifest))


def digest_of_manifest_bytes(exit_code: int, data: bytes) -> bytes:
    """sha256(canonical([exit_code, manifest])) from the manifest blob's bytes, without parsing it."""
    h = hashlib.sha256(canonical([exit_code, []])[:-1])  # the array header and the exit code
    h.update(data)
    return h.digest()
