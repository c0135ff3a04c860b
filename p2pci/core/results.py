"""Build results: manifest entries, the manifest blob and the result digest (docs/protocol.md §4.4, §7).

result digest = sha256(canonical([exit_code, manifest])) where the manifest
is the list of `{path, size, mode, sha256}` maps of every regular file under
/out, sorted by path, mode reduced to the permission bits (mode & 0o777).

The manifest travels as a blob (`manifest_bytes`: canonical msgpack of that
list); a reveal names it by `{sha256, size}` plus its entry count `files`.
The digest is one hash over the exit code and the manifest bytes,
sha256(0x92 ‖ msgpack(exit_code) ‖ manifest bytes), so a tally needs no
manifest, and a fetched manifest blob is checked against the reveal with
`parse_manifest` (hash, size, entry count, digest, every entry) before use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from p2pci.core.codec import canonical
from p2pci.core.errors import ProtocolError

MAX_PATH = 4096  # chars of one manifest path
MAX_SIZE = 2**63 - 1

# Limits of the manifest blob (a reveal beyond them is invalid; a worker whose /out is beyond
# them declines with reason `outputs` instead of revealing).
MAX_MANIFEST_ENTRIES = 1_000_000
MAX_MANIFEST_BYTES = 256 << 20  # a million entries of ~200-byte paths; 4096-char paths hit this first
# the smallest and the largest canonical entry: {mode, path, sha256, size} with a 1-char path and
# 1-byte ints, resp. a 4096-char path of 4-byte chars, a uint16 mode and a uint64 size
ENTRY_MIN_BYTES = 1 + (5 + 1) + (5 + 2) + (7 + 34) + (5 + 1)
ENTRY_MAX_BYTES = 1 + (5 + 3) + (5 + 3 + 4 * MAX_PATH) + (7 + 34) + (5 + 9)


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


def manifest_bytes(manifest: Sequence[ManifestEntry]) -> bytes:
    """The manifest blob: canonical msgpack of the entry maps, sorted by path."""
    return canonical(manifest_obj(manifest))


def digest_of_manifest_bytes(exit_code: int, data: bytes) -> bytes:
    """sha256(canonical([exit_code, manifest])) from the manifest blob's bytes, without parsing it."""
    h = hashlib.sha256(canonical([exit_code, []])[:-1])  # the array header and the exit code
    h.update(data)
    return h.digest()


def _array_header(n: int) -> int:
    return 1 if n < 16 else 3 if n <= 0xFFFF else 5


def manifest_size_error(files: int, size: int) -> str | None:
    """Why a manifest blob of `size` bytes cannot hold exactly `files` entries, or None.

    Checked on every reveal (a reveal that fails it is invalid) and before a manifest blob is
    fetched: nothing larger than MAX_MANIFEST_BYTES is ever stored."""
    if not 0 <= files <= MAX_MANIFEST_ENTRIES:
        return f"{files} files exceed the limit of {MAX_MANIFEST_ENTRIES}"
    if size > MAX_MANIFEST_BYTES:
        return f"manifest of {size} bytes exceeds the limit of {MAX_MANIFEST_BYTES}"
    head = _array_header(files)
    if not head + files * ENTRY_MIN_BYTES <= size <= head + files * ENTRY_MAX_BYTES:
        return f"a manifest of {files} entries cannot be {size} bytes"
    return None


@dataclass(frozen=True, slots=True)
class PackedManifest:
    """A build's manifest as its blob: the bytes, their {sha256, size}, the entry count, the digest."""

    data: bytes
    sha256: bytes
    files: int
    digest: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def pack_manifest(exit_code: int, manifest: Sequence[ManifestEntry]) -> PackedManifest:
    """The manifest blob of a result. ValueError when it exceeds the limits (the worker declines
    with reason `outputs`: such a result cannot be revealed)."""
    if len(manifest) > MAX_MANIFEST_ENTRIES:
        raise ValueError(f"{len(manifest)} output files exceed the limit of {MAX_MANIFEST_ENTRIES}")
    data = manifest_bytes(manifest)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"the manifest of {len(manifest)} files is {len(data)} bytes, over the limit of {MAX_MANIFEST_BYTES}")
    return PackedManifest(data, hashlib.sha256(data).digest(), len(manifest), digest_of_manifest_bytes(exit_code, data))


# --------------------------------------------------------------------------
# checking a manifest from the network

_FIELDS = frozenset({"path", "size", "mode", "sha256"})
ENTRY_ORDER = ("mode", "path", "sha256", "size")  # canonical key order (sorted UTF-8)
_new_entry = object.__new__
_set = object.__setattr__


def entry_error(e: Any) -> str | None:
    """Why `e` (a decoded map) is not a valid manifest entry, or None."""
    if type(e) is not dict or e.keys() != _FIELDS:
        return "not a map of exactly mode, path, sha256, size"
    path, size, mode, sha = e["path"], e["size"], e["mode"], e["sha256"]
    if type(path) is not str or not 0 < len(path) <= MAX_PATH:
        return f"path must be a string of 1-{MAX_PATH} chars"
    wrapped = "/" + path + "/"
    if "//" in wrapped or "/./" in wrapped or "/../" in wrapped or "\x00" in path:
        return "path is not a normalised relative path"
    if type(size) is not int or not 0 <= size <= MAX_SIZE:
        return "size out of range"
    if type(mode) is not int or not 0 <= mode <= 0o777:
        return "mode must be permission bits (0-0o777)"
    if type(sha) is not bytes or len(sha) != 32:
        return "sha256 must be 32 bytes"
    return None


def entries_of(items: list[Any]) -> tuple[ManifestEntry, ...]:
    """Validated entries of a decoded manifest list (canonical key order, paths sorted and
    distinct). ProtocolError naming the first bad entry."""
    entries = []
    prev = ""  # paths are non-empty: "" sorts before all of them
    for i, e in enumerate(items):
        if type(e) is not dict or tuple(e) != ENTRY_ORDER:
            why = entry_error(e) or "map keys not in canonical order"
            raise ProtocolError(f"manifest blob: manifest[{i}]: {why}", "entry")
        mode, path, sha, size = e.values()
        if not (
            type(path) is str
            and 0 < len(path) <= MAX_PATH
            and type(size) is int
            and 0 <= size <= MAX_SIZE
            and type(mode) is int
            and 0 <= mode <= 0o777
            and type(sha) is bytes
            and len(sha) == 32
        ) or _bad_path(path):
            raise ProtocolError(f"manifest blob: manifest[{i}]: {entry_error(e) or 'invalid entry'}", "entry")
        if not prev < path:
            raise ProtocolError(f"manifest blob: manifest[{i}]: paths not sorted or not distinct", "entry")
        entry = _new_entry(ManifestEntry)
        _set(entry, "path", path)
        _set(entry, "size", size)
        _set(entry, "mode", mode)
        _set(entry, "sha256", sha)
        entries.append(entry)
        prev = path
    return tuple(entries)


def _bad_path(path: str) -> bool:
    wrapped = "/" + path + "/"
    return "//" in wrapped or "/./" in wrapped or "/../" in wrapped or "\x00" in path


def parse_manifest(data: bytes, *, sha256: bytes, files: int, exit_code: int, digest: bytes) -> tuple[ManifestEntry, ...]:
    """The entries of a manifest blob, checked against the reveal that names it: its hash, a size
    within the limits for `files` entries, the result digest, canonical msgpack, exactly `files`
    valid entries sorted by path. ProtocolError (a hostile or corrupt blob) on anything else, its
    `reason` one of `size`, `sha256`, `digest`, `encoding`, `count`, `entry`."""
    why = manifest_size_error(files, len(data))
    if why is not None:
        raise ProtocolError(f"manifest blob: {why}", "size")
    if hashlib.sha256(data).digest() != sha256:
        raise ProtocolError("manifest blob: sha256 does not match the reveal", "sha256")
    if digest_of_manifest_bytes(exit_code, data) != digest:
        raise ProtocolError("manifest blob: does not match the reveal's digest and exit code", "digest")
    try:
        items = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise ProtocolError(f"manifest blob: not valid msgpack: {type(exc).__name__}", "encoding") from None
    if type(items) is not list:
        raise ProtocolError("manifest blob: not a list", "encoding")
    if len(items) != files:
        raise ProtocolError(f"manifest blob: {len(items)} entries, the reveal says {files}", "count")
    entries = entries_of(items)
    if msgpack.packb(items, use_bin_type=True) != data:
        raise ProtocolError("manifest blob: not canonical (re-encoding differs)", "encoding")
    return entries
