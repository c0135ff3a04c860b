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
