"""What one identity costs at the default difficulty (p2pci.core.identity).

`python -m bench.identity [--quick]` prints one JSON object: the hash rate of `mint`
on one core (CPU time of this process), the expected seconds for one identity at
`DEFAULT_IDENTITY_BITS` (2**bits hashes on average), and real mints at a lower
difficulty as a check of the rate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def run(quick: bool = False) -> dict[str, Any]:
    from p2pci.core.identity import DEFAULT_IDENTITY_BITS, identity_bits, mint

    # rate: tries of the real loop with an unreachable target, timed in CPU seconds
    tries = 1 << (20 if quick else 22)
    key = os.urandom(32)
    done: list[int] = []
    t = time.process_time()
    try:
        mint(key, 64, progress=lambda n: (done.append(n), _stop(n, tries)), every=1 << 16)
    except _Enough:
        pass
    cpu = time.process_time() - t
    rate = done[-1] / cpu
    # check: real mints at 18 bits (262 144 hashes on average each)
    n_mints = 4 if quick else 16
    check_bits = 18
    t = time.process_time()
    for _ in range(n_mints):
        k = os.urandom(32)
        assert identity_bits(k, mint(k, check_bits)) >= check_bits
    per_mint = (time.process_time() - t) / n_mints
    return {
        "identity_bits_default": DEFAULT_IDENTITY_BITS,
        "identity_hashes_per_s": round(rate),
        "identity_mint_s_default": round((1 << DEFAULT_IDENTITY_BITS) / rate, 1),
        "identity_mint_s_18bits_measured": round(per_mint, 3),
        "identity_mint_s_18bits_expected": round((1 << check_bits) / rate, 3),
    }


class _Enough(Exception):
    pass


def _stop(n: int, limit: int) -> None:
    if n >= limit:
        raise _Enough


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1))
