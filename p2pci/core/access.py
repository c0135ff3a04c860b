"""Who may fetch a job's blobs from this node (docs/security.md, "Who can fetch what").

    may_fetch(view, verdict, requester) -> bool

A pure rule over the board: the blob server (`p2pci.daemon.node.Node.blob_access`)
asks it for every job a requested blob is tied to in this node's store, and
serves the blob when any of those jobs allows the requester.

* The publisher of the job: always.
* Traditional mode (the offer has an allowlist): the allowlisted workers, and nobody else.
* Open mode: every worker a valid `select` round named (any round); before the
  publisher's first `select`, also every eligible claimant (a claimant fetches a
  small source as soon as it claims: `core.node.Prefetch`); and anyone once the
  job is REPRODUCED on this node's board.

A blob tied to no job is not served at all (`Node.blob_access`).
"""

from __future__ import annotations

from p2pci.core.board import JobView
from p2pci.core.selection import eligible_keys, selection
from p2pci.core.tally import Verdict


def may_fetch(view: JobView, verdict: Verdict | None, requester: bytes) -> bool:
    """Whether `requester` (a node key) may fetch the blobs of the job in `view`."""
    offer_fact = view.offer
    offer = view.offer_msg
    if offer_fact is None or offer is None:
        return False
    if requester == offer_fact.signer:
        return True
    allow = offer.allowlist
    if allow is not None:
        return requester in allow
    if verdict is not None and verdict.state == "REPRODUCED":
        return True
    sel = selection(view)
    if requester in sel.selected:
        return True
    if not sel.rounds and requester in view.claims:  # the prefetch window: until the first select
        return requester in eligible_keys(view, offer, {f.id for f in view.claims[requester]})
    return False


__all__ = ["may_fetch"]
