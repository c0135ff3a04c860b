"""A publish request and the offer made from it: one place for the publisher's rules.

    req = PublishRequest.from_args(args)   # what a control client sent (LocalError if malformed)
    check_request(req)                     # quorum <= replicas; open mode needs >= 2 replicas
    offer = new_offer(req, image=ref, now=now, timing=cfg, select_commit=sha256(seed))

The CLI calls `check_request` before it packs anything (an early exit 2); the
node calls it again for every control client, so no client can bypass it.
`DEFAULT_LIMITS` is the one source of default build limits (recipes, the
node, the CLI). The deadline rule: an offer stays open for two rounds of
(claim window + build timeout + commit slack) plus one lease, so that the
next in line can take over from a worker that vanished mid-build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import (
    CLAIM_WINDOW_MAX,
    CLAIM_WINDOW_MIN,
    MAX_REPLICAS,
    NO_PROVENANCE,
    BlobRef,
    ImageRef,
    Limits,
    Offer,
    Provenance,
    Require,
)
from p2pci.core.signing import peer_id_of, public_of
from p2pci.core.worker import WorkerConfig

DEFAULT_LIMITS = Limits()  # the defaults are written once, on core.messages.Limits
DEFAULT_REPLICAS = 3
DEFAULT_QUORUM = 2

OPEN_NEEDS_TWO = (
    "open mode needs at least 2 replicas: a vote counts only when another worker saw its "
    "commit before any reveal (name your workers in [trust] workers for a single build)"
)


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """What a publisher asks for; the node turns it into a signed `Offer`."""

    project: str
    source: BlobRef
    image: str  # an image name or id, resolved (and published) by the node
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    source_date_epoch: int | None = None
    limits: Limits = DEFAULT_LIMITS
    replicas: int = DEFAULT_REPLICAS
    quorum: int = DEFAULT_QUORUM
    workers: Literal["open"] | tuple[bytes, ...] = "open"
    require: Require | None = None
    inputs: BlobRef | None = None  # the pinned-inputs tarball (in the node's blob store)
    provenance: Provenance = NO_PROVENANCE  # git commit/tree, image recipe (as the publisher states it)

    @classmethod
    def from_args(cls, args: Any) -> PublishRequest:
        """The request in a control `publish` op's args; LocalError naming what is wrong."""
        if not isinstance(args, dict):
            raise LocalError("publish: args must be a map")
        try:
            return cls._from_args(args)
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise LocalError(f"publish: bad request: {type(exc).__name__}: {exc}"[:300]) from None

    @classmethod
    def _from_args(cls, a: dict[str, Any]) -> PublishRequest:
        unknown = set(a) - _ARGS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        source = _blob(a["source"], "source")
        inputs = None if a.get("inputs") is None else _blob(a["inputs"], "inputs")
        prov = a.get("provenance")
        provenance = NO_PROVENANCE if prov is None else Provenance.from_obj(prov)
        env = a.get("env") or {}
        if not isinstance(env, dict):
            raise TypeError("env must be a map")
        limits = DEFAULT_LIMITS if a.get("limits") is None else Limits.from_obj(a["limits"])
        workers_arg = a.get("workers", "open")
        workers: Literal["open"] | tuple[bytes, ...]
        if workers_arg == "open":
            workers = "open"
        elif isinstance(workers_arg, list):
            workers = tuple(sorted(public_of(_str(p, "workers")) for p in workers_arg))
        else:
            raise TypeError("workers must be 'open' or a list of peer ids")
        require = None
        r = a.get("require")
        if r is not None:
            require = Require(tuple(public_of(_str(p, "require.keys")) for p in r["keys"]), _int(r["min"], "require.min"))
        sde = a.get("source_date_epoch")
        command = a["command"]
        if not isinstance(command, list):
            raise TypeError("command must be a list of strings")
        return cls(
            project=_str(a["project"], "project"),
            source=source,
            image=_str(a["image"], "image"),
            command=tuple(_str(c, "command") for c in command),
            env=tuple(sorted((_str(k, "env"), _str(v, "env")) for k, v in env.items())),
            source_date_epoch=None if sde is None else _int(sde, "source_date_epoch"),
            limits=limits,
            replicas=_int(a.get("replicas", DEFAULT_REPLICAS), "replicas"),
            quorum=_int(a.get("quorum", DEFAULT_QUORUM), "quorum"),
            workers=workers,
            require=require,
            inputs=inputs,
            provenance=provenance,
        )


_ARGS = frozenset(
    {
        "project", "source", "image", "command", "env", "source_date_epoch", "limits", "replicas", "quorum",
        "workers", "require", "inputs", "provenance",
    }
)


def _blob(v: Any, name: str) -> BlobRef:
    if not isinstance(v, dict):
        raise TypeError(f"{name} must be a map with sha256 and size")
    sha = v["sha256"]
    sha = bytes.fromhex(sha) if isinstance(sha, str) else bytes(sha)
    return BlobRef.from_obj({"sha256": sha, "size": _int(v["size"], f"{name}.size")}, name)


def _str(v: Any, name: str) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a string")
    return v


def _int(v: Any, name: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an integer")
    return v


def check_request(replicas: int, quorum: int, *, open_mode: bool, require: bool = False) -> None:
    """The publisher's rules on M and N (LocalError, a CLI exit 2, if broken).

    `open_mode`: the offer names no workers; `require`: it has a [trust] require
    (named keys that must agree), which lets a single open build count.
    """
    if not 1 <= replicas <= MAX_REPLICAS:
        raise LocalError(f"replicas must be between 1 and {MAX_REPLICAS}, not {replicas}")
    if quorum < 1:
        raise LocalError(f"quorum must be at least 1, not {quorum}")
    if quorum > replicas:
        raise LocalError(f"quorum {quorum} is larger than replicas {replicas}")
    if open_mode and not require and replicas < 2:
        raise LocalError(OPEN_NEEDS_TWO)


def check(req: PublishRequest) -> None:
    """`check_request` for a whole request."""
    check_request(req.replicas, req.quorum, open_mode=req.workers == "open", require=req.require is not None)
    if req.require is not None and req.workers != "open":
        outside = sorted(set(req.require.keys) - set(req.workers))
        if outside:
            raise LocalError(
                f"require key {peer_id_of(outside[0])} is not in the workers list: it could never be selected, "
                "so the job could never finish (add it to workers, or publish in open mode)"
            )


def offer_deadline(now: int, limits: Limits, timing: WorkerConfig) -> int:
    """The deadline of an offer created at `now`: two rounds of work plus one lease."""
    span = publisher_window(timing) + limits.timeout_s * 1000 + timing.slack_ms
    return now + 2 * span + timing.lease_ms


def publisher_window(timing: WorkerConfig) -> int:
    """The offer's `claim_window` (ms after `created` when the publisher selects): twice the
    workers' own claim window, so that their claims (made when their window ends) are in;
    clamped to the protocol's 100 ms .. 10 min."""
    return min(max(2 * timing.claim_window_ms, CLAIM_WINDOW_MIN), CLAIM_WINDOW_MAX)


def new_offer(
    req: PublishRequest,
    *,
    image: ImageRef,
    now: int,
    timing: WorkerConfig,
    select_commit: bytes,
    identity_bits: int = 0,
) -> Offer:
    """The offer for `req` (checked), created at `now`. `select_commit` = sha256(seed), the seed
    drawn by the driver and given to `NodeMachine.publish_offer`."""
    check(req)
    return Offer(
        project=req.project,
        source=req.source,
        image=image,
        command=req.command,
        env=req.env,
        source_date_epoch=req.source_date_epoch,
        limits=req.limits,
        replicas=req.replicas,
        quorum=req.quorum,
        workers=req.workers,
        require=req.require,
        created=now,
        deadline=offer_deadline(now, req.limits, timing),
        select_commit=select_commit,
        identity_bits=identity_bits,
        claim_window=publisher_window(timing),
        inputs=req.inputs,
        provenance=req.provenance,
    )
