"""Identity proof of work: what one node key costs (docs/protocol.md section 4.2).

A key's *identity nonce* is any byte string of 0..32 bytes; its strength is the
number of leading zero bits of

    sha256(b"p2pci/v2/identity" || key || nonce)

(bits counted from the most significant bit of the first byte). An offer states
the strength it requires (`identity_bits`); a claim carries the signer's nonce,
and a claimant whose nonce is too weak is not eligible for selection. The proof
is bound to the key (a nonce is worthless for any other key) and made once per
key, at `p2pci init`, then reused for every offer.

Cost: finding a nonce of `bits` takes 2**bits hashes on average. One core of the
reference machine does 1.76 to 2.1 million hashes/s in `mint` (measured with
`python -m bench.identity`, shared machine), so the default
`DEFAULT_IDENTITY_BITS = 27` costs 64 to 76 s of one core on average (the number
of tries is geometric: 1 key in 20 takes three times the mean).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

IDENTITY_DOMAIN = b"p2pci/v2/identity"
DEFAULT_IDENTITY_BITS = 27
NONCE_LEN = 8  # what `mint` produces; any 0..32 bytes verify


def identity_hash(key: bytes, nonce: bytes) -> bytes:
    return hashlib.sha256(IDENTITY_DOMAIN + key + nonce).digest()


def leading_zero_bits(h: bytes) -> int:
    n = int.from_bytes(h, "big")
    return len(h) * 8 - n.bit_length()


def identity_bits(key: bytes, nonce: bytes) -> int:
    """The strength of `nonce` as the identity proof of `key` (0 for a nonce over 32 bytes)."""
    if len(nonce) > 32:
        return 0
    return _bits(key, nonce)


@functools.lru_cache(maxsize=4096)
def _bits(key: bytes, nonce: bytes) -> int:
    # memoised: eligibility is checked per claim on every selection and tally of a job
    # (bounded: 4096 (key, nonce) pairs, each nonce at most 32 bytes)
    return leading_zero_bits(identity_hash(key, nonce))


def mint(
    key: bytes,
    bits: int = DEFAULT_IDENTITY_BITS,
    *,
    start: int = 0,
    progress: Callable[[int], None] | None = None,
    every: int = 1 << 20,
) -> bytes:
    """Search nonces `start, start+1, ...` (8-byte big-endian) until one has `bits` leading zero bits.

    `progress(tries)` is called every `every` tries (for a progress display). CPU-bound
    and pure: run it in a thread or process if the caller must stay responsive.
    """
    if not 0 <= bits <= 64:
        raise ValueError("bits must be in 0..64")
    base = hashlib.sha256(IDENTITY_DOMAIN + key)
    limit = 1 << (256 - bits)  # digest as an int must be below this
    i = start
    done = 0
    while True:
        nonce = i.to_bytes(NONCE_LEN, "big")
        h = base.copy()
        h.update(nonce)
        if int.from_bytes(h.digest(), "big") < limit:
            return nonce
        i += 1
        done += 1
        if progress is not None and done % every == 0:
            progress(done)
