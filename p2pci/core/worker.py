"""The worker's own state machine for one job (docs/protocol.md section 5).

Pure: `worker_step(wj, view, now, cfg, event) -> (wj, actions)` looks up
`TRANSITIONS[(phase, type(event))]`; an event that has no entry is ignored.
`p2pci.core.node.NodeMachine` drives it for every job of a node (slot
accounting across jobs, actions turned into signed facts) and calls
`worker_step` again on every change of the job's facts, when a build ends and
at `next_wakeup(...)`.

Phases::

    SEEN --Tick--> WAITING --Tick (window over, would rank within M)--> CLAIMED
    CLAIMED --Tick (selected)--> BUILDING --BuildDone--> BUILT --Tick (own commit on board)--> COMMITTED
    COMMITTED --Tick (all selected committed, or reveal deadline)--> REVEALED
    SEEN --> SKIPPED (policy says no, or already over); WAITING/CLAIMED/BUILDING --> GAVE_UP
    CLAIMED --Tick(paused)--> GAVE_UP with a `paused` decline (the donor paused or drains)

Rules:

* SEEN: skip if `eligible(...)` gives a reason, or this worker's identity proof
  (`cfg.identity_bits`) is weaker than the offer's `identity_bits` (a `decline` with
  code `identity`: the publisher would never select it), or the job is cancelled,
  expired or already has a final verdict, or a decline of this worker's key is held
  (it declined before a restart or under another policy: a decline voids the key's votes);
  else start the claim window. A worker never declines after it committed, and never
  reveals after it declined.
* WAITING: after `claim_delay_ms` (None: `claim_window_ms`), claim (`lease_until = now + lease_ms`)
  only when a slot is free (`Tick.free_slot`) and this worker would rank
  within `replicas` among the live claimants and itself; otherwise wait: the
  next in line claims when a lease expires. Never claim once others revealed
  and each of those reveals has a witness (a build that starts then is in
  nobody's `seen` list and has nothing left to witness), or once others hold
  `replicas` commits (the job is staffed).
* Settle: the first claim sets `settle_until = now + settle_ms`; CLAIMED
  starts no build before it, so competing claims of the same window arrive
  first (`settle_ms` 0: no settle, as in the unit tests of this module).
* Lease renewal at half the lease while CLAIMED / BUILDING / BUILT. A
  stand-by (CLAIMED) stops renewing once that is too late (as above): it can
  no longer count, so others need not wait for its lease. A CLAIMED worker
  whose slots are all busy (`Tick.free_slot` false) does not renew either:
  the publisher replaces it when the lease ends instead of at the lease cap.
* CLAIMED: build only while selected (and not too late, as above). BUILDING: a
  worker no longer selected keeps building (extra evidence, never harm).
* Give up (GiveUp action) when the job is cancelled, expired, or has a final
  verdict before the build started; a running build is cancelled only if the
  job is cancelled or expired.
* BuildDone -> BUILT with `PublishCommit(hash)`; a result whose manifest exceeds the
  manifest limits (`results.manifest_size_error`) cannot be revealed: GAVE_UP with a
  decline `outputs` instead (never a commit it could not follow with a reveal); BUILT re-emits the same
  commit on every tick until it is on the board (signatures are
  deterministic: the same fact, a duplicate for everyone else), then
  COMMITTED. The daemon should persist `wj` (salt and result) before it
  publishes the commit so a restarted worker can still reveal.
* COMMITTED: reveal when every worker selected at `now` has committed,
  at least `quorum` selected workers may still agree with this worker's digest
  (all selected workers but those whose reveal already shows another digest:
  a lone early worker does not reveal before anyone could witness its commit,
  and an early wrong reveal does not make an honest worker reveal alone before
  a later round brings the workers that can agree with it) or no later round
  can bring a worker any more (`selection.place_may_fill`: every ranked place
  of the latest round is held by a commit, no decline or equivocation held; then a wait could
  only delay the verdict, e.g. a dispute of a full round), and no round that adds
  a worker is pending (`selection.round_pending`: the latest round has free
  places and an eligible claimant the publisher's next round would add; the
  seed is public after round 0, so every worker computes that round exactly as
  the publisher does). A worker added after the reveals could never be
  witnessed, so its vote would never count. Or
  `now >= reveal_deadline(offer, slack_ms)` =
  `min(created + timeout_s * 1000 + slack_ms, deadline)`. `seen` is
  `JobView.seen_commits(digest=own digest)`: the commit ids held before the
  first reveal *of this worker's digest* arrived on this board (protocol v2:
  an early reveal of another digest does not freeze it), and the commit that first reveal opens. "Selected" is the
  latest valid `select` round of the publisher (p2pci.core.selection).
* The salt is `HMAC-SHA256(cfg.salt_secret, "p2pci/salt/" + job)[:16]` unless
  BuildDone brings one: unpredictable to others, reproducible after a restart.
  A missing secret (< 16 bytes) is a LocalError at BuildDone, never a guessable salt.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from p2pci.core.board import JobView
from p2pci.core.errors import LocalError
from p2pci.core.messages import MAX_SEEN, BlobRef, Offer, Reveal
from p2pci.core.results import ManifestEntry, manifest_size_error, pack_manifest
from p2pci.core.selection import (
    candidates,
    live_claimants,
    place_may_fill,
    rank,
    round_pending,
    selected,
    selection,
)
from p2pci.core.signing import commit_hash
from p2pci.core.tally import DEFAULT_SLACK_MS, reveal_deadline, tally

Phase = Literal[
    "SEEN", "WAITING", "CLAIMED", "BUILDING", "BUILT", "COMMITTED", "REVEALED", "SKIPPED", "GAVE_UP"
]
TERMINAL: frozenset[str] = frozenset({"REVEALED", "SKIPPED", "GAVE_UP"})
_PHASES: frozenset[str] = frozenset(get_args(Phase))


# --------------------------------------------------------------------------
# configuration and eligibility


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """What a donor agrees to run (config.toml [worker])."""

    slots: int = 1
    max_timeout_s: int = 3600
    max_memory_mb: int = 4096
    max_cpus: int = 2
    max_out_mb: int = 1024
    max_source_mb: int = 256
    max_inputs_mb: int = 1024  # the pinned-inputs tarball ([fetch], [[input]])
    max_image_mb: int = 4096  # the offer's image archive (`docker save` tarball), unless the image is listed
    images: Literal["any"] | frozenset[str] = "any"
    open_jobs: bool = True


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    me: bytes
    lease_ms: int = 60_000
    claim_window_ms: int = 2_000
    policy: WorkerPolicy = field(default_factory=WorkerPolicy)
    slack_ms: int = DEFAULT_SLACK_MS
    salt_secret: bytes = b""  # required (>= 16 bytes, e.g. the node key seed): salts are HMACs of the job id
    settle_ms: int = 0  # after the first claim, no build before this much time (see `settle_ms_for`)
    # from first sight to the claim; None: `claim_window_ms` (the v1 wait). v2 needs no wait (nobody
    # can rank claimants before the publisher's select): the daemon claims at once (0)
    claim_delay_ms: int | None = None
    # the strength of this worker's identity proof (p2pci.core.identity); None: not checked here.
    # An offer that demands more is declined (code `identity`): its publisher would not select us
    identity_bits: int | None = None


def settle_ms_for(claim_window_ms: int) -> int:
    """The node's settle time after its first claim: half a claim window (at least 1 ms)."""
    return max(1, claim_window_ms // 2)


def eligible(offer: Offer, policy: WorkerPolicy, me: bytes | None = None) -> str | None:
    """None if this worker may build `offer`, else the reason it may not."""
    why = refusal(offer, policy, me)
    return None if why is None else why[1]


DECLINED_EARLIER = "this worker declined the job earlier (a decline voids its votes)"
# refusals not worth a `decline`: the offer is not addressed to this worker at all
SILENT_REFUSALS: frozenset[str] = frozenset({"allowlist", "open_jobs"})


def refusal(offer: Offer, policy: WorkerPolicy, me: bytes | None = None) -> tuple[str, str] | None:
    """None if this worker may build `offer`, else (decline code, human reason)."""
    if offer.workers == "open":
        if not policy.open_jobs:
            return "open_jobs", "open jobs are disabled"
    elif me is not None and me not in offer.workers:
        return "allowlist", "not in the offer's allowlist"
    lim = offer.limits
    if lim.timeout_s > policy.max_timeout_s:
        return "policy", f"timeout {lim.timeout_s}s exceeds {policy.max_timeout_s}s"
    if lim.memory_mb > policy.max_memory_mb:
        return "policy", f"memory {lim.memory_mb} MB exceeds {policy.max_memory_mb} MB"
    if lim.cpus > policy.max_cpus:
        return "policy", f"cpus {lim.cpus} exceeds {policy.max_cpus}"
    if lim.out_mb > policy.max_out_mb:
        return "policy", f"output {lim.out_mb} MB exceeds {policy.max_out_mb} MB"
    if offer.source.size > policy.max_source_mb << 20:
        return "source", f"source of {offer.source.size >> 20} MiB exceeds {policy.max_source_mb} MiB"
    if offer.inputs is not None and offer.inputs.size > policy.max_inputs_mb << 20:
        return "inputs", f"inputs of {offer.inputs.size >> 20} MiB exceed {policy.max_inputs_mb} MiB"
    if policy.images != "any" and offer.image.id not in policy.images:
        return "image", f"image {offer.image.id} not allowed"
    arch = offer.image.archive
    # an unlisted image was refused above; a listed one runs as it is, without its archive
    if policy.images == "any" and arch is not None and arch.size > policy.max_image_mb << 20:
        return "image", f"image archive of {arch.size >> 20} MiB exceeds {policy.max_image_mb} MiB"
    if policy.slots < 1:
        return "slots", "no build slots"
    return None


def salt_for(secret: bytes, job: bytes) -> bytes:
    return hmac.new(secret, b"p2pci/salt/" + job, hashlib.sha256).digest()[:16]


# --------------------------------------------------------------------------
# events and actions


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed or the job's facts changed. `free_slot`: may this worker start a build now.
    `paused`: the donor paused or drains this worker (no new claims; a claim not yet building
    is declined with reason `paused`, so the publisher replaces it at once)."""

    free_slot: bool = True
    paused: bool = False


@dataclass(frozen=True, slots=True)
class BuildDone:
    """A build's result: its manifest blob (`manifest` {sha256, size} with `files` entries, kept by
    the driver until the reveal) and the result digest computed from it (`results.pack_manifest`)."""

    exit_code: int
    manifest: BlobRef
    files: int
    digest: bytes
    log: BlobRef
    salt: bytes | None = None

    @classmethod
    def of(
        cls, exit_code: int, manifest: tuple[ManifestEntry, ...], log: BlobRef, salt: bytes | None = None
    ) -> BuildDone:
        """From the manifest's entries (ValueError beyond the manifest limits)."""
        packed = pack_manifest(exit_code, manifest)
        return cls(exit_code, BlobRef(packed.sha256, packed.size), packed.files, packed.digest, log, salt)


@dataclass(frozen=True, slots=True)
class BuildFailed:
    """A build that gave no result. `code` is the decline reason published for it (`timeout`,
    `start_failed`, `outputs`, `image`, `source`, `inputs`, `other`; "" for a cancelled build: no decline),
    `detail` a bounded text (for a timeout: the log's tail), `log` the log blob when kept."""

    reason: str
    code: str = "other"
    detail: str = ""
    log: BlobRef | None = None


Event = Tick | BuildDone | BuildFailed


@dataclass(frozen=True, slots=True)
class PublishClaim:
    lease_until: int


@dataclass(frozen=True, slots=True)
class StartBuild:
    pass


@dataclass(frozen=True, slots=True)
class PublishCommit:
    hash: bytes


@dataclass(frozen=True, slots=True)
class PublishReveal:
    reveal: Reveal


@dataclass(frozen=True, slots=True)
class CancelBuild:
    pass


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


@dataclass(frozen=True, slots=True)
class PublishDecline:
    """Say why this worker will not build the job (a signed `decline`, at most one per job)."""

    code: str
    detail: str
    log: BlobRef | None = None


Action = PublishClaim | StartBuild | PublishCommit | PublishReveal | CancelBuild | GiveUp | PublishDecline


# --------------------------------------------------------------------------
# the per-job worker state


@dataclass(frozen=True, slots=True)
class WorkerJob:
    job: bytes
    phase: Phase = "SEEN"
    first_seen: int | None = None
    claim_at: int | None = None  # end of the claim window
    reveal_at: int | None = None  # reveal deadline (set once built)
    lease_until: int | None = None  # of our latest claim
    renew_at: int | None = None
    exit_code: int | None = None
    manifest: BlobRef | None = None  # the manifest blob of our result
    files: int = 0  # its entry count
    log: BlobRef | None = None
    salt: bytes | None = None
    digest: bytes | None = None
    commit: bytes | None = None  # our commit hash
    reason: str = ""
    settle_until: int | None = None  # no build before this (set by the first claim)

    @classmethod
    def new(cls, job: bytes, now: int) -> WorkerJob:
        return cls(job, "SEEN", first_seen=now)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def resume(self) -> WorkerJob:
        """This job's state after a restart: a build that was running died with the old process,
        so BUILDING goes back to CLAIMED (it builds again if still selected)."""
        return replace(self, phase="CLAIMED") if self.phase == "BUILDING" else self

    def to_obj(self) -> dict[str, Any]:
        """The persisted form (msgpack-able, every field by name)."""
        return {
            "job": self.job,
            "phase": self.phase,
            "first_seen": self.first_seen,
            "claim_at": self.claim_at,
            "reveal_at": self.reveal_at,
            "lease_until": self.lease_until,
            "renew_at": self.renew_at,
            "exit_code": self.exit_code,
            "manifest": None if self.manifest is None else self.manifest.to_obj(),
            "files": self.files,
            "log": None if self.log is None else {"sha256": self.log.sha256, "size": self.log.size},
            "salt": self.salt,
            "digest": self.digest,
            "commit": self.commit,
            "reason": self.reason,
            "settle_until": self.settle_until,
        }

    @classmethod
    def from_obj(cls, d: Any) -> WorkerJob:
        """Inverse of `to_obj`; ValueError (or KeyError/TypeError) for anything else."""
        if not isinstance(d, dict):
            raise ValueError("worker job: not a map")
        phase = d["phase"]
        if phase not in _PHASES:
            raise ValueError(f"worker job: unknown phase {phase!r:.40}")

        def opt_int(k: str) -> int | None:
            v = d.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"worker job: {k} is not an integer")
            return v

        def opt_bytes(k: str) -> bytes | None:
            v = d.get(k)
            return None if v is None else bytes(v)

        log = d.get("log")
        man = d.get("manifest")
        if man is not None and not isinstance(man, dict):
            raise ValueError("worker job: manifest is not a blob ref (state of an older version)")
        return cls(
            job=bytes(d["job"]),
            phase=phase,
            first_seen=opt_int("first_seen"),
            claim_at=opt_int("claim_at"),
            reveal_at=opt_int("reveal_at"),
            lease_until=opt_int("lease_until"),
            renew_at=opt_int("renew_at"),
            exit_code=opt_int("exit_code"),
            manifest=None if man is None else BlobRef(bytes(man["sha256"]), int(man["size"])),
            files=opt_int("files") or 0,
            log=None if log is None else BlobRef(bytes(log["sha256"]), int(log["size"])),
            salt=opt_bytes("salt"),
            digest=opt_bytes("digest"),
            commit=opt_bytes("commit"),
            reason=str(d.get("reason", "")),
            settle_until=opt_int("settle_until"),
        )


Result = tuple[WorkerJob, list[Action]]
Handler = Callable[[WorkerJob, JobView, int, WorkerConfig, Event], Result]


def _over(view: JobView, offer: Offer, now: int) -> str | None:
    """Why nobody should start on this job any more (cancelled, expired, decided), or None."""
    verdict = tally(view, now)
    if verdict.state == "CANCELLED":
        return "job cancelled"
    if now >= offer.deadline or verdict.state == "EXPIRED":
        return "job expired"
    if verdict.final:
        return f"job already {verdict.state}"
    return None


def _stopped(view: JobView, offer: Offer, now: int) -> str | None:
    """Why a running build should be cancelled (cancelled or expired), or None."""
    if any(c.signer == view.offer.signer for c in view.cancels):  # type: ignore[union-attr]
        return "job cancelled"
    if now >= offer.deadline:
        return "job expired"
    return None


def _revealed_by_others(view: JobView, me: bytes) -> bool:
    """Too late to help: another *selected* worker revealed, and each such reveal already has a
    witness that is itself selected.

    A build that starts after a reveal is in nobody's `seen` list (its own vote never counts);
    it is still useful as a witness of a reveal that has none yet (a lone early revealer).
    Reveals and witnesses of keys that no `select` names are not votes (p2pci.core.tally):
    they must not make an honest worker stand down, or two fresh keys revealing to each
    other during the claim window would leave a job with no build at all.
    """
    chosen = selection(view).selected
    others = [w for w in view.reveals if w != me and w in chosen]
    if not others:
        return False
    for w in others:
        if not any((view.witnesses.get(f.id, set()) & chosen) - {w} for f in view.commits.get(w, ())):
            return False
    return True


def _renew(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, free_slot: bool = True) -> Result:
    if wj.phase == "CLAIMED" and _revealed_by_others(view, cfg.me):
        return wj, []  # a stand-by that can no longer count: let the lease lapse so others need not wait
    if wj.phase == "CLAIMED" and not free_slot:
        # every slot is busy: a claim we cannot build on must not hold a place. Let the lease
        # lapse, so that the publisher replaces us at its end (not at the lease cap) and leaves
        # a lapsed claim out of later rounds; if a slot frees before, we still build
        return wj, []
    if wj.renew_at is not None and now >= wj.renew_at:
        lease = now + cfg.lease_ms
        return replace(wj, lease_until=lease, renew_at=now + cfg.lease_ms // 2), [PublishClaim(lease)]
    return wj, []


def _seen_tick(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    offer = view.offer_msg
    if offer is None:
        return wj, []
    refused = refusal(offer, cfg.policy, cfg.me)
    if refused is not None:
        code, text = refused
        # one decline per job, and only while the job is live and addressed to us: a worker
        # that says nothing leaves the publisher waiting for the deadline
        say = code not in SILENT_REFUSALS and _over(view, offer, now) is None
        return replace(wj, phase="SKIPPED", reason=text), [PublishDecline(code, text)] if say else []
    if cfg.identity_bits is not None and cfg.identity_bits < offer.identity_bits:
        text = (
            f"identity proof of {cfg.identity_bits} bits is below the offer's {offer.identity_bits}"
            f" (p2pci init --identity-bits {offer.identity_bits})"
        )
        say = _over(view, offer, now) is None
        return replace(wj, phase="SKIPPED", reason=text), [PublishDecline("identity", text)] if say else []
    reason = _over(view, offer, now)
    if reason is not None:
        return replace(wj, phase="SKIPPED", reason=reason), []
    if cfg.me in view.declines:
        # our own decline is held (signed before a restart, or under another policy): a selected
        # key's decline voids its votes (docs/protocol.md section 6), so a build would count for
        # nothing and only take a place from a worker whose vote would count
        return replace(wj, phase="SKIPPED", reason=DECLINED_EARLIER), []
    first = now if wj.first_seen is None else wj.first_seen
    delay = cfg.claim_window_ms if cfg.claim_delay_ms is None else cfg.claim_delay_ms
    wj = replace(wj, phase="WAITING", first_seen=first, claim_at=first + delay)
    return _waiting_tick(wj, view, now, cfg, ev)


def _waiting_tick(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    offer = view.offer_msg
    assert offer is not None and isinstance(ev, Tick)
    reason = _over(view, offer, now)
    if reason is not None:
        return replace(wj, phase="GAVE_UP", reason=reason), [GiveUp(reason)]
    if (wj.claim_at is not None and now < wj.claim_at) or not ev.free_slot:
        return wj, []
    if _revealed_by_others(view, cfg.me):
        return wj, []  # a build starting now could be in nobody's `seen` list
    chosen = selection(view).selected  # commits of unselected keys staff nothing (they never count)
    if sum(1 for w in view.commits if w != cfg.me and w in chosen) >= offer.replicas:
        return wj, []  # staffed: a new claim would only add a late build
    others = [w for w in candidates(view, now) if w != cfg.me]
    my_rank = rank(view.job, cfg.me)
    ahead = sum(1 for w in others if rank(view.job, w) < my_rank)
    if ahead >= offer.replicas:
        return wj, []
    lease = now + cfg.lease_ms
    settle = wj.settle_until if wj.settle_until is not None else now + cfg.settle_ms
    wj = replace(wj, phase="CLAIMED", lease_until=lease, renew_at=now + cfg.lease_ms // 2, settle_until=settle)
    return wj, [PublishClaim(lease)]


def _claimed_tick(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    offer = view.offer_msg
    assert offer is not None and isinstance(ev, Tick)
    reason = _over(view, offer, now)
    if reason is not None:
        return replace(wj, phase="GAVE_UP", reason=reason), [GiveUp(reason)]
    if ev.paused:
        why = "the donor paused this worker"
        return replace(wj, phase="GAVE_UP", reason=why), [GiveUp(why), PublishDecline("paused", why)]
    wj, actions = _renew(wj, view, now, cfg, ev.free_slot)
    if wj.settle_until is not None and now < wj.settle_until:
        return wj, actions  # just claimed: let competing claims of the same window arrive first
    if ev.free_slot and not _revealed_by_others(view, cfg.me) and cfg.me in selected(view, now):
        return replace(wj, phase="BUILDING"), [*actions, StartBuild()]
    return wj, actions


def _building_tick(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    offer = view.offer_msg
    assert offer is not None
    reason = _stopped(view, offer, now)
    if reason is not None:
        return replace(wj, phase="GAVE_UP", reason=reason), [CancelBuild(), GiveUp(reason)]
    return _renew(wj, view, now, cfg)


def _build_done(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    assert isinstance(ev, BuildDone)
    offer = view.offer_msg
    assert offer is not None
    if ev.salt is None and len(cfg.salt_secret) < 16:
        raise LocalError("WorkerConfig.salt_secret must be a secret of >= 16 bytes (e.g. the node key seed)")
    too_big = manifest_size_error(ev.files, ev.manifest.size)
    if too_big is not None:  # such a result cannot be revealed (docs/protocol.md §4.4): say so, once
        why = f"outputs cannot be reported: {too_big}"
        return replace(wj, phase="GAVE_UP", reason=why), [GiveUp(why), PublishDecline("outputs", why, ev.log)]
    salt = ev.salt if ev.salt is not None else salt_for(cfg.salt_secret, wj.job)
    digest = ev.digest
    h = commit_hash(salt, digest, cfg.me)
    wj = replace(
        wj,
        phase="BUILT",
        exit_code=ev.exit_code,
        manifest=ev.manifest,
        files=ev.files,
        log=ev.log,
        salt=salt,
        digest=digest,
        commit=h,
        reveal_at=reveal_deadline(offer, cfg.slack_ms),
    )
    return wj, [PublishCommit(h)]


def _build_failed(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    assert isinstance(ev, BuildFailed)
    reason = f"build failed: {ev.reason}"
    actions: list[Action] = [GiveUp(reason)]
    if ev.code:  # a selected worker that cannot deliver says why (a cancelled build does not)
        actions.append(PublishDecline(ev.code, ev.detail or ev.reason, ev.log))
    return replace(wj, phase="GAVE_UP", reason=reason), actions


def _built_tick(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    mine = view.commits.get(cfg.me, [])
    if any(f.body.hash == wj.commit for f in mine):  # type: ignore[union-attr]
        return _committed_tick(replace(wj, phase="COMMITTED", renew_at=None), view, now, cfg, ev)
    wj, actions = _renew(wj, view, now, cfg)
    assert wj.commit is not None
    return wj, [*actions, PublishCommit(wj.commit)]


def _could_agree(view: JobView, workers: list[bytes], digest: bytes | None) -> int:
    """How many of `workers` may still agree with `digest`: all but those whose reveal on this
    board shows another digest (an early reveal of a wrong digest, or an equivocation)."""
    n = 0
    for w in workers:
        revs = view.reveals.get(w, ())
        if any(isinstance(f.body, Reveal) and f.body.digest != digest for f in revs):
            continue
        n += 1
    return n


def _committed_tick(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, ev: Event) -> Result:
    offer = view.offer_msg
    assert offer is not None
    deadline = wj.reveal_at if wj.reveal_at is not None else reveal_deadline(offer, cfg.slack_ms)
    sel = selected(view, now)
    if now < deadline and (
        not all(w in view.commits for w in sel)
        or round_pending(view, now)
        # too few may agree: wait only while a round may still bring workers that can (once
        # no ranked place can open, nothing a hold waits for can come, and revealing at once
        # only ends a dispute sooner)
        or (_could_agree(view, sel, wj.digest) < offer.quorum and place_may_fill(view, now))
    ):
        return wj, []
    assert wj.digest is not None and wj.salt is not None and wj.exit_code is not None and wj.log is not None
    assert wj.manifest is not None
    seen = view.seen_commits(MAX_SEEN, wj.digest)
    rev = Reveal(wj.job, wj.digest, wj.salt, wj.exit_code, wj.manifest, wj.files, wj.log, seen)
    return replace(wj, phase="REVEALED"), [PublishReveal(rev)]


TRANSITIONS: dict[tuple[str, type], Handler] = {
    ("SEEN", Tick): _seen_tick,
    ("WAITING", Tick): _waiting_tick,
    ("CLAIMED", Tick): _claimed_tick,
    ("BUILDING", Tick): _building_tick,
    ("BUILDING", BuildDone): _build_done,
    ("BUILDING", BuildFailed): _build_failed,
    ("BUILT", Tick): _built_tick,
    ("COMMITTED", Tick): _committed_tick,
}


def worker_step(wj: WorkerJob, view: JobView, now: int, cfg: WorkerConfig, event: Event) -> Result:
    """Apply one event. No I/O, no clock reads, no randomness."""
    if view.offer is None or view.job != wj.job:
        return wj, []
    handler = TRANSITIONS.get((wj.phase, type(event)))
    if handler is None:
        return wj, []  # irrelevant in this phase: ignore, don't raise
    return handler(wj, view, now, cfg, event)


def next_wakeup(wj: WorkerJob, view: JobView, now: int) -> int | None:
    """When the daemon should tick this job again at the latest (facts arriving also tick it)."""
    offer = view.offer_msg
    if wj.terminal or offer is None:
        return None
    if wj.phase == "SEEN":
        return now
    times = [offer.deadline]
    if wj.renew_at is not None and wj.phase in ("CLAIMED", "BUILDING", "BUILT"):
        times.append(wj.renew_at)
    if wj.phase == "WAITING":
        if wj.claim_at is not None:
            times.append(wj.claim_at)
        times.extend(live_claimants(view, now).values())  # someone ahead may drop out
    elif wj.phase == "CLAIMED":
        if wj.settle_until is not None:
            times.append(wj.settle_until)
        times.extend(live_claimants(view, now).values())
    elif wj.phase == "COMMITTED":
        if wj.reveal_at is not None:
            times.append(wj.reveal_at)
        # a selected worker that vanished before committing stops blocking the reveal
        # when its lease ends
        times.extend(t for w, t in live_claimants(view, now).items() if w not in view.commits)
    future = [t for t in times if t > now]
    return min(future) if future else now
