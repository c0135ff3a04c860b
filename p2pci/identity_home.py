"""The node's identity proof in its home (docs/operator.md "Identity", docs/protocol.md 4.2).

`p2pci init` mints the proof once per node key (`p2pci.core.identity.mint`: a nonce whose
hash with the key has `bits` leading zero bits) and stores it in `HOME/identity`, 0600:

    {"peer_id": "12D3Koo…", "nonce": "<hex>", "bits": 27}

The daemon reads it at start and carries the nonce in every claim. `bits` is informative:
the strength is always recomputed from the key and the nonce, so an edited file can only
lose strength. A file for another key, or one that does not parse, is an error naming the
file (never silently replaced: the proof cost real minutes). `init --identity-bits N` with
a stored proof of at least N bits reuses it; a weaker one is replaced by a stronger mint.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from p2pci.config import Paths
from p2pci.core.errors import LocalError
from p2pci.core.identity import NONCE_LEN, identity_bits, mint
from p2pci.core.messages import MAX_IDENTITY_BITS, MAX_IDENTITY_NONCE
from p2pci.core.signing import NodeKey

MAX_FILE = 4096


@dataclass(frozen=True)
class Identity:
    nonce: bytes
    bits: int  # recomputed strength of `nonce` for the key


def load_identity(paths: Paths, key: NodeKey) -> Identity | None:
    """The stored proof of `key`, or None when the home has none."""
    path = paths.identity
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if len(raw) > MAX_FILE:
            raise ValueError("too large")
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("nonce"), str):
            raise ValueError("no nonce")
        nonce = bytes.fromhex(doc["nonce"])
        if len(nonce) > MAX_IDENTITY_NONCE:
            raise ValueError("nonce too long")
        peer = doc.get("peer_id")
    except (ValueError, UnicodeDecodeError) as exc:
        raise LocalError(f"{path} is not an identity proof ({exc}); remove it and run `p2pci init`") from None
    if peer != key.peer_id:
        raise LocalError(
            f"{path} is the identity proof of another key ({str(peer)[:60]!r}); remove it and run `p2pci init`"
        )
    return Identity(nonce, identity_bits(key.public, nonce))


def save_identity(paths: Paths, key: NodeKey, nonce: bytes) -> None:
    """Write the proof 0600, atomically (a crash leaves the old file or the new one)."""
    doc = {"peer_id": key.peer_id, "nonce": nonce.hex(), "bits": identity_bits(key.public, nonce)}
    tmp = paths.identity.with_name("identity.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, paths.identity)


@dataclass(frozen=True)
class Minted:
    identity: Identity
    minted: bool  # False: the stored proof was strong enough and is reused
    seconds: float  # minting time (0 when reused)
    tries: int


def ensure_identity(
    paths: Paths,
    key: NodeKey,
    bits: int,
    progress: Callable[[int], None] | None = None,
    *,
    every: int = 1 << 18,
) -> Minted:
    """The stored proof when it has at least `bits`, else a new one minted now and stored."""
    if not 0 <= bits <= MAX_IDENTITY_BITS:
        raise LocalError(f"identity bits must be 0..{MAX_IDENTITY_BITS}, not {bits}")
    have = load_identity(paths, key)
    if have is not None and have.bits >= bits:
        return Minted(have, False, 0.0, 0)
    t0 = time.monotonic()
    nonce = mint(key.public, bits, progress=progress, every=every)
    seconds = time.monotonic() - t0
    save_identity(paths, key, nonce)
    return Minted(Identity(nonce, identity_bits(key.public, nonce)), True, seconds, int.from_bytes(nonce, "big") + 1)


__all__ = ["Identity", "Minted", "load_identity", "save_identity", "ensure_identity", "NONCE_LEN"]
