"""Who builds a job (docs/protocol.md section 5).

rank(J, W) = sha256(J || W); the `replicas` lowest-ranked claimants are
selected. A claimant counts while its lease is live (`now < lease_until`, the
latest of its claims) or once it has committed (its work is done, it keeps
its place). When a lease expires without a commit the claimant drops out and
the next-ranked one moves in. In allowlist mode only allowed workers count.
Claims that arrive before the offer are kept by the board and counted once
the offer is known; with no offer nobody is selected.

Caveat (documented in docs/security.md by design): a claim's lease is what
the claimant says, capped at the offer's deadline; a hostile claimant can
hold a slot until then. Extra builds by the next in line are harmless.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from p2pci.core.messages import Claim

if TYPE_CHECKING:
    from p2pci.core.board import JobView


def rank(job: bytes, worker: bytes) -> bytes:
    return hashlib.sha256(job + worker).digest()


def live_claimants(view: JobView, now: int) -> dict[bytes, int]:
    """worker -> lease_until of every allowed claimant whose lease is live at `now`."""
    out: dict[bytes, int] = {}
    offer = view.offer_msg
    if offer is None:
        return out
    allow = view.allowlist
    deadline = offer.deadline
    for worker, claims in view.claims.items():
        if allow is not None and worker not in allow:
            continue
        lease = min(max(c.body.lease_until for c in claims if isinstance(c.body, Claim)), deadline)
        if lease > now:
            out[worker] = lease
    return out


def candidates(view: JobView, now: int) -> list[bytes]:
    """Every claimant that currently competes for a place, best rank first."""
    if view.offer is None:
        return []
    live = live_claimants(view, now)
    allow = view.allowlist
    pool = set(live)
    for worker in view.commits:
        if worker in view.claims and (allow is None or worker in allow):
            pool.add(worker)
    job = view.job
    return sorted(pool, key=lambda w: rank(job, w))


def selected(view: JobView, now: int) -> list[bytes]:
    """The `replicas` lowest-ranked live-or-committed claimants (best first)."""
    offer = view.offer_msg
    if offer is None:
        return []
    return candidates(view, now)[: offer.replicas]


def is_selected(view: JobView, now: int, worker: bytes) -> bool:
    return worker in selected(view, now)
