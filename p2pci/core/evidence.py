"""Evidence bundles: a job's signed facts in one file, re-tallied offline.

Format: `canonical({v: 2, job: <32 bytes>, facts: [<envelope bytes>...]})`,
facts in `JobView.facts()` order (offer first). `load_bundle` re-verifies
every envelope and rejects the whole bundle (ProtocolError) when it is not
canonical, when any fact is invalid, duplicated or belongs to another job,
or when the offer is missing. An altered fact therefore never verifies; a
removed fact changes the set of fact ids (and possibly the verdict). The
bundle as a whole is not signed: whoever exports it chooses which facts to
include, so a bundle proves that its signers agreed, not that nobody
disagreed elsewhere (docs/security.md).

Completeness (`completeness`): a bundle is *complete* when it holds at least
one valid `select` round and a reveal of every selected worker that owes one:
every selected worker that committed, and every worker of the latest round
that did not decline (a worker dropped without committing owes nothing).
`p2pci verify` prints what is missing and marks a verdict from an incomplete
bundle as such: cutting a selected worker's reveal cannot pass unnoticed. A
bundle cannot prove that it holds *every* round or every fact of an
equivocator (nobody signs "this is all"): those limits are in docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pci.core.board import Board, JobView
from p2pci.core.codec import canonical, decode
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.signing import open_envelope, peer_id_of
from p2pci.core.tally import ObserverPolicy, Verdict, tally

BUNDLE_VERSION = 2
MAX_BUNDLE = 64 * 1024 * 1024
MAX_FACTS = 100_000


def export_bundle(view: JobView) -> bytes:
    """The job's facts as one canonical file."""
    if view.offer is None:
        raise LocalError("cannot export a job whose offer is unknown")
    return canonical({"v": BUNDLE_VERSION, "job": view.job, "facts": [f.raw for f in view.facts()]})


def load_bundle(data: bytes, *, max_size: int = MAX_BUNDLE) -> JobView:
    """Decode a bundle and re-verify every fact into a fresh JobView."""
    obj: Any = decode(data, max_size=max_size)
    if type(obj) is not dict or set(obj) != {"v", "job", "facts"}:
        raise ProtocolError("bundle: expected a map with exactly v, job, facts")
    if obj["v"] == 1 and type(obj["v"]) is int:
        raise ProtocolError("bundle: protocol version 1 bundles are no longer accepted (this is version 2)")
    if obj["v"] != BUNDLE_VERSION or type(obj["v"]) is not int:
        raise ProtocolError(f"bundle: unsupported version {obj['v']!r:.20}")
    job = obj["job"]
    if type(job) is not bytes or len(job) != 32:
        raise ProtocolError("bundle.job: expected 32 bytes")
    facts = obj["facts"]
    if type(facts) is not list or len(facts) > MAX_FACTS:
        raise ProtocolError("bundle.facts: expected a list of envelopes")
    board = Board()
    for i, raw in enumerate(facts):
        if type(raw) is not bytes:
            raise ProtocolError(f"bundle.facts[{i}]: expected bytes")
        try:
            fact = open_envelope(raw)
        except ProtocolError as exc:
            raise ProtocolError(f"bundle.facts[{i}]: {exc}") from None
        if fact.job != job:
            raise ProtocolError(f"bundle.facts[{i}]: belongs to another job")
        if not board.add_fact(fact):
            raise ProtocolError(f"bundle.facts[{i}]: duplicate fact")
    view = board.job(job)
    if view is None or view.offer is None:
        raise ProtocolError("bundle: the offer is missing")
    return view


def verify_bundle(data: bytes, now: int, policy: ObserverPolicy | None = None) -> tuple[JobView, Verdict]:
    """Load a bundle and tally it: the offline `p2pci verify FILE`."""
    view = load_bundle(data)
    return view, tally(view, now, policy or ObserverPolicy())


@dataclass(frozen=True, slots=True)
class Completeness:
    """What a bundle holds of what a verdict needs (P8)."""

    rounds: int  # valid select rounds in the bundle
    selected: tuple[bytes, ...]  # every worker a valid round named, sorted
    missing: tuple[bytes, ...]  # selected workers owing a reveal the bundle lacks, sorted
    ignored_selects: int

    @property
    def complete(self) -> bool:
        return self.rounds > 0 and not self.missing

    def problems(self) -> list[str]:
        out = []
        if self.rounds == 0:
            out.append("no valid select round: nobody was selected, so no vote can count")
        out.extend(f"no reveal of selected worker {peer_id_of(w)}" for w in self.missing)
        return out


def completeness(view: JobView, verdict: Verdict) -> Completeness:
    sel = verdict.selection
    return Completeness(len(sel.rounds), tuple(sorted(sel.selected)), verdict.missing, len(sel.ignored))


def completeness_json(c: Completeness) -> dict[str, Any]:
    """The `complete` part of `p2pci verify --json`."""
    return {
        "complete": c.complete,
        "rounds": c.rounds,
        "selected": [peer_id_of(w) for w in c.selected],
        "missing": [peer_id_of(w) for w in c.missing],
        "problems": c.problems(),
    }
