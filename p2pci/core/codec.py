"""Canonical msgpack: sorted map keys, no floats, bytes as bin.

Only None, bool, int (64-bit range), str, bytes, list/tuple and dict with
str keys are encodable. `decode` is strict: it rejects anything whose
re-encoding differs from the input, so every value has exactly one encoding.
"""

from __future__ import annotations

from typing import Any

import msgpack

from p2pci.core.errors import LocalError, ProtocolError

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
MAX_DEPTH = 16


def _normalise(obj: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise LocalError("value nested too deeply to encode")
    if obj is None or isinstance(obj, (bool, str, bytes)):
        return obj
    if isinstance(obj, int):
        if not INT_MIN <= obj <= INT_MAX:
            raise LocalError(f"integer out of range: {obj}")
        return obj
    if isinstance(obj, (list, tuple)):
        return [_normalise(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise LocalError(f"map keys must be str, got {type(k).__name__}")
        # msgpack has no key order of its own: sort by the UTF-8 bytes of the key.
        return {k: _normalise(obj[k], depth + 1) for k in sorted(obj, key=lambda s: s.encode())}
    raise LocalError(f"cannot encode {type(obj).__name__} canonically")


def canonical(obj: Any) -> bytes:
    """The one encoding of `obj`. Raises LocalError for values we never encode."""
    out: bytes = msgpack.packb(_normalise(obj), use_bin_type=True, strict_types=False)
    return out


def decode(data: bytes, *, max_size: int = 65536) -> Any:
    """Decode canonical msgpack strictly; anything else is a ProtocolError."""
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("expected bytes")
    if len(data) > max_size:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        obj = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise ProtocolError(f"not valid msgpack: {type(exc).__name__}: {exc}") from None
    try:
        again = canonical(obj)
    except LocalError as exc:
        raise ProtocolError(f"not canonical: {exc}") from None
    if again != bytes(data):
        raise ProtocolError("not canonical: re-encoding differs (key order, int width or float)")
    return obj
