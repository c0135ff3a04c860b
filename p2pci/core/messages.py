"""The seven fact kinds of protocol version 2 (docs/protocol.md section 4) as frozen dataclasses.

Each kind has `KIND`, `to_obj()` (a dict ready for `codec.canonical`) and
`from_obj(obj)` (strict: a missing, extra, wrongly typed, out-of-range or
oversize field raises `ProtocolError` naming the field).

Wire rules decided here (the contract other nodes must follow):

* Every field is always present; optional values are nil, never omitted
  (`image.archive`, `source_date_epoch`, `require`).
* Map keys are exactly the field names; canonical order is enforced by the
  codec (here: `from_obj` accepts any key order so that generic decoded
  objects work, `signing.open_envelope` checks the byte-exact order).
* `env` is a map str -> str; `workers` is `"open"` or a non-empty list of
  distinct 32-byte keys (any order), and with an allowlist every `require` key
  must be in it; a reveal's `manifest` is a blob ref with a plausible size for
  its `files` count (the blob itself is checked when fetched: results.parse_manifest);
  `seen` lists distinct 32-byte commit fact ids.
* Every integer in a body is in 0..2**63-1 unless a narrower range is stated;
  `exit_code` is 0..255.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from p2pci.core.errors import ProtocolError
from p2pci.core.results import (  # noqa: F401 (MAX_PATH re-exported)
    MAX_MANIFEST_ENTRIES,
    MAX_PATH,
    ManifestEntry,
    manifest_size_error,
    pack_manifest,
)

# Size limits (the whole envelope is also capped, 64 KiB by default).
MAX_INT = 2**63 - 1
MAX_PROJECT = 200
MAX_ARGS = 256
MAX_ARG = 4096
MAX_ENV = 128
MAX_ENV_KEY = 128
MAX_ENV_VALUE = 4096
MAX_WORKERS = 256
MAX_REQUIRE_KEYS = 64
MAX_REPLICAS = 64
MAX_MANIFEST = MAX_MANIFEST_ENTRIES  # entries of a manifest blob (p2pci.core.results)
MAX_SEEN = 1024
MAX_TIMEOUT_S = 7 * 24 * 3600
SALT_MIN, SALT_MAX = 16, 32
EXIT_MAX = 255
MAX_MEMORY_MB = 1 << 24
MAX_CPUS = 1024
MAX_PIDS = 1 << 22
MAX_OUT_MB = 1 << 24
MAX_IDENTITY_BITS = (
    40  # 2**40 hashes: far beyond any sensible price, bounded so that no offer is unreachable by accident
)
MAX_IDENTITY_NONCE = 32
CLAIM_WINDOW_MIN, CLAIM_WINDOW_MAX = 100, 600_000  # ms
MAX_ROUND = 255
MAX_SELECT_CLAIMS = 1024
MAX_SELECT_WORKERS = MAX_REPLICAS + MAX_REQUIRE_KEYS
MAX_REASON = 32
MAX_DETAIL = 1024
MAX_RECIPE = 8192
DECLINE_REASONS = (
    "policy",
    "slots",
    "image",
    "source",
    "inputs",
    "identity",
    "timeout",
    "start_failed",
    "outputs",
    "other",
)

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REASON = re.compile(r"[a-z][a-z0-9_]*")
_GIT_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

# --------------------------------------------------------------------------
# field checkers: each raises ProtocolError naming the field


def _fields(obj: Any, name: str, keys: frozenset[str]) -> dict[str, Any]:
    if type(obj) is not dict:
        raise ProtocolError(f"{name}: expected a map, got {type(obj).__name__}")
    if obj.keys() != keys:
        missing = sorted(keys - obj.keys())
        extra = sorted(str(k) for k in obj.keys() - keys)
        raise ProtocolError(f"{name}: missing fields {missing}, extra fields {extra}")
    return obj


def _int(v: Any, name: str, lo: int = 0, hi: int = MAX_INT) -> int:
    if type(v) is not int:
        raise ProtocolError(f"{name}: expected int, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ProtocolError(f"{name}: {v} out of range {lo}..{hi}")
    return v


def _bytes(v: Any, name: str, lo: int, hi: int) -> bytes:
    if type(v) is not bytes:
        raise ProtocolError(f"{name}: expected bytes, got {type(v).__name__}")
    if not lo <= len(v) <= hi:
        raise ProtocolError(f"{name}: length {len(v)} not in {lo}..{hi}")
    return v


def _h32(v: Any, name: str) -> bytes:
    if type(v) is not bytes or len(v) != 32:
        raise ProtocolError(f"{name}: expected 32 bytes")
    return v


def _str(v: Any, name: str, lo: int, hi: int) -> str:
    if type(v) is not str:
        raise ProtocolError(f"{name}: expected str, got {type(v).__name__}")
    if not lo <= len(v) <= hi:
        raise ProtocolError(f"{name}: length {len(v)} not in {lo}..{hi}")
    return v


def _list(v: Any, name: str, lo: int, hi: int) -> list[Any]:
    if type(v) is not list:
        raise ProtocolError(f"{name}: expected a list, got {type(v).__name__}")
    if not lo <= len(v) <= hi:
        raise ProtocolError(f"{name}: {len(v)} items, not in {lo}..{hi}")
    return v


def _keys(v: Any, name: str, lo: int, hi: int) -> tuple[bytes, ...]:
    items = _list(v, name, lo, hi)
    for i, k in enumerate(items):
        _h32(k, f"{name}[{i}]")
    if len(set(items)) != len(items):
        raise ProtocolError(f"{name}: duplicate keys")
    return tuple(items)


# --------------------------------------------------------------------------
# value types


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: bytes
    size: int

    FIELDS: ClassVar[frozenset[str]] = frozenset({"sha256", "size"})

    def to_obj(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}

    @classmethod
    def from_obj(cls, obj: Any, name: str = "blob") -> BlobRef:
        d = _fields(obj, name, cls.FIELDS)
        return cls(_h32(d["sha256"], f"{name}.sha256"), _int(d["size"], f"{name}.size"))


@dataclass(frozen=True, slots=True)
class ImageRef:
    id: str  # "sha256:" + 64 hex
    archive: BlobRef | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"id", "archive"})

    def to_obj(self) -> dict[str, Any]:
        return {"id": self.id, "archive": None if self.archive is None else self.archive.to_obj()}

    @classmethod
    def from_obj(cls, obj: Any, name: str = "image") -> ImageRef:
        d = _fields(obj, name, cls.FIELDS)
        image_id = _str(d["id"], f"{name}.id", 71, 71)
        if not _IMAGE_ID.fullmatch(image_id):
            raise ProtocolError(f"{name}.id: not sha256:<64 lowercase hex>")
        arch = d["archive"]
        return cls(image_id, None if arch is None else BlobRef.from_obj(arch, f"{name}.archive"))


@dataclass(frozen=True, slots=True)
class Limits:
    """A build's limits: the one type for offers, recipes and runners (defaults: `Limits()`)."""

    timeout_s: int = 600
    memory_mb: int = 2048
    cpus: int = 2
    pids: int = 512
    out_mb: int = 1024

    FIELDS: ClassVar[frozenset[str]] = frozenset({"timeout_s", "memory_mb", "cpus", "pids", "out_mb"})

    def to_obj(self) -> dict[str, Any]:
        return {
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "cpus": self.cpus,
            "pids": self.pids,
            "out_mb": self.out_mb,
        }

    @classmethod
    def from_obj(cls, obj: Any, name: str = "limits") -> Limits:
        d = _fields(obj, name, cls.FIELDS)
        return cls(
            _int(d["timeout_s"], f"{name}.timeout_s", 1, MAX_TIMEOUT_S),
            _int(d["memory_mb"], f"{name}.memory_mb", 1, MAX_MEMORY_MB),
            _int(d["cpus"], f"{name}.cpus", 1, MAX_CPUS),
            _int(d["pids"], f"{name}.pids", 1, MAX_PIDS),
            _int(d["out_mb"], f"{name}.out_mb", 1, MAX_OUT_MB),
        )


@dataclass(frozen=True, slots=True)
class Require:
    """At least `min` of the agreeing votes must come from `keys`."""

    keys: tuple[bytes, ...]
    min: int

    FIELDS: ClassVar[frozenset[str]] = frozenset({"keys", "min"})

    def to_obj(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "min": self.min}

    @classmethod
    def from_obj(cls, obj: Any, name: str = "require") -> Require:
        d = _fields(obj, name, cls.FIELDS)
        keys = _keys(d["keys"], f"{name}.keys", 1, MAX_REQUIRE_KEYS)
        return cls(keys, _int(d["min"], f"{name}.min", 1, len(keys)))


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the build's inputs come from, as the publisher states it (informational, signed).

    `commit` / `tree`: the git commit and tree object ids (40 or 64 lowercase hex) of
    the source, or nil; `recipe`: how the image was made (e.g. a Dockerfile), or nil.
    """

    commit: str | None = None
    tree: str | None = None
    recipe: str | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"commit", "tree", "recipe"})

    def to_obj(self) -> dict[str, Any]:
        return {"commit": self.commit, "tree": self.tree, "recipe": self.recipe}

    @classmethod
    def from_obj(cls, obj: Any, name: str = "provenance") -> Provenance:
        d = _fields(obj, name, cls.FIELDS)
        out: list[str | None] = []
        for f in ("commit", "tree"):
            v = d[f]
            if v is not None:
                _str(v, f"{name}.{f}", 40, 64)
                if not _GIT_HEX.fullmatch(v):
                    raise ProtocolError(f"{name}.{f}: not 40 or 64 lowercase hex digits")
            out.append(v)
        recipe = d["recipe"]
        if recipe is not None:
            _str(recipe, f"{name}.recipe", 0, MAX_RECIPE)
        return cls(out[0], out[1], recipe)


NO_PROVENANCE = Provenance()


def _opt_blob(v: Any, name: str) -> BlobRef | None:
    return None if v is None else BlobRef.from_obj(v, name)


# --------------------------------------------------------------------------
# the seven kinds


@dataclass(frozen=True, slots=True)
class Offer:
    KIND: ClassVar[str] = "offer"
    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "project", "source", "image", "command", "env", "source_date_epoch", "limits",
            "replicas", "quorum", "workers", "require", "created", "deadline",
            "select_commit", "identity_bits", "claim_window", "inputs", "provenance",
        }
    )  # fmt: skip

    project: str
    source: BlobRef
    image: ImageRef
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # sorted by key; a map on the wire
    source_date_epoch: int | None
    limits: Limits
    replicas: int
    quorum: int
    workers: Literal["open"] | tuple[bytes, ...]
    require: Require | None
    created: int
    deadline: int
    select_commit: bytes  # sha256(seed): the publisher reveals the seed in its `select` facts
    identity_bits: int = 0  # the identity proof of work a claimant must show (p2pci.core.identity)
    claim_window: int = 2000  # ms after `created` when the publisher selects (it may close early)
    inputs: BlobRef | None = None  # pinned-inputs tarball, mounted read-only at /build/inputs
    provenance: Provenance = NO_PROVENANCE

    def to_obj(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "source": self.source.to_obj(),
            "image": self.image.to_obj(),
            "command": list(self.command),
            "env": dict(self.env),
            "source_date_epoch": self.source_date_epoch,
            "limits": self.limits.to_obj(),
            "replicas": self.replicas,
            "quorum": self.quorum,
            "workers": self.workers if self.workers == "open" else list(self.workers),
            "require": None if self.require is None else self.require.to_obj(),
            "created": self.created,
            "deadline": self.deadline,
            "select_commit": self.select_commit,
            "identity_bits": self.identity_bits,
            "claim_window": self.claim_window,
            "inputs": None if self.inputs is None else self.inputs.to_obj(),
            "provenance": self.provenance.to_obj(),
        }

    @property
    def allowlist(self) -> frozenset[bytes] | None:
        """The allowed worker keys, or None in open mode."""
        return None if self.workers == "open" else frozenset(self.workers)

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        d = _fields(obj, "offer", cls.FIELDS)
        project = _str(d["project"], "project", 1, MAX_PROJECT)
        command = tuple(_list(d["command"], "command", 1, MAX_ARGS))
        for i, arg in enumerate(command):
            _str(arg, f"command[{i}]", 0, MAX_ARG)
        env_obj = d["env"]
        if type(env_obj) is not dict:
            raise ProtocolError("env: expected a map")
        if len(env_obj) > MAX_ENV:
            raise ProtocolError(f"env: more than {MAX_ENV} entries")
        for k, v in env_obj.items():
            if type(k) is not str or not 0 < len(k) <= MAX_ENV_KEY or not _ENV_KEY.fullmatch(k):
                raise ProtocolError(f"env: bad variable name {k!r:.80}")
            _str(v, f"env.{k}", 0, MAX_ENV_VALUE)
        env = tuple(sorted(env_obj.items()))
        sde = d["source_date_epoch"]
        if sde is not None:
            _int(sde, "source_date_epoch")
        replicas = _int(d["replicas"], "replicas", 1, MAX_REPLICAS)
        quorum = _int(d["quorum"], "quorum", 1, replicas)
        workers_obj = d["workers"]
        workers: Literal["open"] | tuple[bytes, ...]
        if workers_obj == "open" and type(workers_obj) is str:
            workers = "open"
        else:
            workers = _keys(workers_obj, "workers", 1, MAX_WORKERS)
        req = d["require"]
        require = None if req is None else Require.from_obj(req, "require")
        if require is not None and workers != "open":
            outside = set(require.keys) - set(workers)
            if outside:
                # a require key outside the allowlist is never eligible: the job could never finish
                raise ProtocolError(f"require.keys: {len(outside)} key(s) not in the allowlist (workers)")
        created = _int(d["created"], "created")
        deadline = _int(d["deadline"], "deadline")
        if deadline <= created:
            raise ProtocolError("deadline: not after created")
        return cls(
            project=project,
            source=BlobRef.from_obj(d["source"], "source"),
            image=ImageRef.from_obj(d["image"], "image"),
            command=command,
            env=env,
            source_date_epoch=sde,
            limits=Limits.from_obj(d["limits"], "limits"),
            replicas=replicas,
            quorum=quorum,
            workers=workers,
            require=require,
            created=created,
            deadline=deadline,
            select_commit=_h32(d["select_commit"], "select_commit"),
            identity_bits=_int(d["identity_bits"], "identity_bits", 0, MAX_IDENTITY_BITS),
            claim_window=_int(d["claim_window"], "claim_window", CLAIM_WINDOW_MIN, CLAIM_WINDOW_MAX),
            inputs=_opt_blob(d["inputs"], "inputs"),
            provenance=Provenance.from_obj(d["provenance"], "provenance"),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    KIND: ClassVar[str] = "claim"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"job", "lease_until", "identity"})

    job: bytes
    lease_until: int
    identity: bytes = b""  # the signer's identity nonce (p2pci.core.identity), 0..32 bytes

    def to_obj(self) -> dict[str, Any]:
        return {"job": self.job, "lease_until": self.lease_until, "identity": self.identity}

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        d = _fields(obj, "claim", cls.FIELDS)
        return cls(
            _h32(d["job"], "job"),
            _int(d["lease_until"], "lease_until"),
            _bytes(d["identity"], "identity", 0, MAX_IDENTITY_NONCE),
        )


@dataclass(frozen=True, slots=True)
class Commit:
    KIND: ClassVar[str] = "commit"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"job", "hash"})

    job: bytes
    hash: bytes  # sha256(salt || digest || signer)

    def to_obj(self) -> dict[str, Any]:
        return {"job": self.job, "hash": self.hash}

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        d = _fields(obj, "commit", cls.FIELDS)
        return cls(_h32(d["job"], "job"), _h32(d["hash"], "hash"))


def reveal_fields_ok(
    job: Any,
    digest: Any,
    salt: Any,
    exit_code: Any,
    files: Any,
    seen: Any,
    log_sha: Any,
    log_size: Any,
    man_sha: Any,
    man_size: Any,
) -> bool:
    """The hot-path field checks of a reveal body (types, sizes, ranges, unique 32-byte `seen`
    ids, a manifest size that can hold `files` entries). False means: take the slow path, which
    names the bad field."""
    if not (
        type(job) is bytes
        and len(job) == 32
        and type(digest) is bytes
        and len(digest) == 32
        and type(salt) is bytes
        and SALT_MIN <= len(salt) <= SALT_MAX
        and type(exit_code) is int
        and 0 <= exit_code <= EXIT_MAX
        and type(files) is int
        and type(seen) is list
        and len(seen) <= MAX_SEEN
        and type(log_sha) is bytes
        and len(log_sha) == 32
        and type(log_size) is int
        and 0 <= log_size <= MAX_INT
        and type(man_sha) is bytes
        and len(man_sha) == 32
        and type(man_size) is int
        and manifest_size_error(files, man_size) is None
    ):
        return False
    for s in seen:
        if type(s) is not bytes or len(s) != 32:
            return False
    return len(set(seen)) == len(seen)


@dataclass(frozen=True, slots=True)
class Reveal:
    """A worker's result. The manifest is a blob named by `manifest` ({sha256, size}) with `files`
    entries (p2pci.core.results: `pack_manifest`, `parse_manifest`); `digest` is
    sha256(0x92 ‖ msgpack(exit_code) ‖ manifest bytes), checked when the manifest is fetched."""

    KIND: ClassVar[str] = "reveal"
    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"job", "digest", "salt", "exit_code", "manifest", "files", "log", "seen"}
    )

    job: bytes
    digest: bytes
    salt: bytes
    exit_code: int
    manifest: BlobRef  # the manifest blob
    files: int  # its entry count, 0 .. MAX_MANIFEST_ENTRIES
    log: BlobRef
    seen: tuple[bytes, ...]

    def to_obj(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "digest": self.digest,
            "salt": self.salt,
            "exit_code": self.exit_code,
            "manifest": self.manifest.to_obj(),
            "files": self.files,
            "log": self.log.to_obj(),
            "seen": list(self.seen),
        }

    @classmethod
    def of(
        cls,
        job: bytes,
        digest: bytes | None,
        salt: bytes,
        exit_code: int,
        entries: Sequence[ManifestEntry],
        log: BlobRef,
        seen: tuple[bytes, ...],
    ) -> Self:
        """The reveal of a result given by its manifest entries (its blob: `results.pack_manifest`);
        `digest` None: the result digest of the entries (else that one, for tests of liars)."""
        packed = pack_manifest(exit_code, entries)
        ref = BlobRef(packed.sha256, packed.size)
        return cls(job, packed.digest if digest is None else digest, salt, exit_code, ref, packed.files, log, seen)

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        """Strict decoding."""
        # Hot path (every reveal from the network): one pass of inline checks;
        # on any doubt fall through to the slow path, which names the bad field.
        if type(obj) is dict and obj.keys() == cls.FIELDS:
            log, man = obj["log"], obj["manifest"]
            if type(log) is dict and log.keys() == BlobRef.FIELDS and type(man) is dict and man.keys() == BlobRef.FIELDS:
                job, digest, salt = obj["job"], obj["digest"], obj["salt"]
                exit_code, files, seen = obj["exit_code"], obj["files"], obj["seen"]
                log_sha, log_size = log["sha256"], log["size"]
                man_sha, man_size = man["sha256"], man["size"]
                if reveal_fields_ok(job, digest, salt, exit_code, files, seen, log_sha, log_size, man_sha, man_size):
                    return cls(
                        job,
                        digest,
                        salt,
                        exit_code,
                        BlobRef(man_sha, man_size),
                        files,
                        BlobRef(log_sha, log_size),
                        tuple(seen),
                    )
        d = _fields(obj, "reveal", cls.FIELDS)
        files = _int(d["files"], "files", 0, MAX_MANIFEST_ENTRIES)
        manifest = BlobRef.from_obj(d["manifest"], "manifest")
        why = manifest_size_error(files, manifest.size)
        if why is not None:
            raise ProtocolError(f"manifest.size: {why}")
        return cls(
            job=_h32(d["job"], "job"),
            digest=_h32(d["digest"], "digest"),
            salt=_bytes(d["salt"], "salt", SALT_MIN, SALT_MAX),
            exit_code=_int(d["exit_code"], "exit_code", 0, EXIT_MAX),
            manifest=manifest,
            files=files,
            log=BlobRef.from_obj(d["log"], "log"),
            seen=_keys(d["seen"], "seen", 0, MAX_SEEN),
        )


@dataclass(frozen=True, slots=True)
class Cancel:
    KIND: ClassVar[str] = "cancel"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"job"})

    job: bytes

    def to_obj(self) -> dict[str, Any]:
        return {"job": self.job}

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        d = _fields(obj, "cancel", cls.FIELDS)
        return cls(_h32(d["job"], "job"))


@dataclass(frozen=True, slots=True)
class Select:
    """The publisher's selection round (signed by the offer's signer).

    `seed` must hash to the offer's `select_commit`; `claims` are the claim fact ids
    the publisher considered (grow-only from round to round); `workers` the keys it
    selected, which every observer recomputes (p2pci.core.selection). `created` is the
    publisher's clock when it selected (ms): the leases of this round are capped from it.
    """

    KIND: ClassVar[str] = "select"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"job", "round", "seed", "created", "claims", "workers"})

    job: bytes
    round: int
    seed: bytes
    created: int
    claims: tuple[bytes, ...]
    workers: tuple[bytes, ...]

    def to_obj(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "round": self.round,
            "seed": self.seed,
            "created": self.created,
            "claims": list(self.claims),
            "workers": list(self.workers),
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        d = _fields(obj, "select", cls.FIELDS)
        claims = _keys(d["claims"], "claims", 0, MAX_SELECT_CLAIMS)
        workers = _keys(d["workers"], "workers", 0, MAX_SELECT_WORKERS)
        if list(claims) != sorted(claims):
            raise ProtocolError("claims: not sorted")
        if list(workers) != sorted(workers):
            raise ProtocolError("workers: not sorted")
        return cls(
            _h32(d["job"], "job"),
            _int(d["round"], "round", 0, MAX_ROUND),
            _h32(d["seed"], "seed"),
            _int(d["created"], "created"),
            claims,
            workers,
        )


@dataclass(frozen=True, slots=True)
class Decline:
    """A worker's signed "I could not build this job" (shown per worker, never a vote).

    `reason` is a short code (DECLINE_REASONS lists the known ones; others are
    accepted and shown as they are), `detail` a bounded human text, `log` an
    optional log blob (e.g. of a build that could not start).
    """

    KIND: ClassVar[str] = "decline"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"job", "reason", "detail", "log"})

    job: bytes
    reason: str
    detail: str = ""
    log: BlobRef | None = None

    def to_obj(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "reason": self.reason,
            "detail": self.detail,
            "log": None if self.log is None else self.log.to_obj(),
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        d = _fields(obj, "decline", cls.FIELDS)
        reason = _str(d["reason"], "reason", 1, MAX_REASON)
        if not _REASON.fullmatch(reason):
            raise ProtocolError("reason: not a code of [a-z][a-z0-9_]*")
        return cls(
            _h32(d["job"], "job"),
            reason,
            _str(d["detail"], "detail", 0, MAX_DETAIL),
            _opt_blob(d["log"], "log"),
        )


Message = Offer | Claim | Commit | Reveal | Cancel | Select | Decline

KINDS: dict[
    str,
    type[Offer] | type[Claim] | type[Commit] | type[Reveal] | type[Cancel] | type[Select] | type[Decline],
] = {
    "offer": Offer,
    "claim": Claim,
    "commit": Commit,
    "reveal": Reveal,
    "cancel": Cancel,
    "select": Select,
    "decline": Decline,
}


def job_of(msg: Message) -> bytes | None:
    """The job a message belongs to; None for an offer (its job id is its fact id)."""
    if isinstance(msg, Offer):
        return None
    return msg.job


def message_from_obj(kind: str, obj: Any) -> Message:
    """Strictly decode a body of the given kind (ProtocolError on an unknown kind)."""
    cls = KINDS.get(kind) if type(kind) is str else None
    if cls is None:
        raise ProtocolError(f"kind: unknown kind {kind!r:.40}")
    return cls.from_obj(obj)
