"""`$P2PCI_HOME` layout and `config.toml` (docs/operator.md, docs/internals.md "p2pci.config").

The config says what this node listens on, whom it bootstraps from, what a
donor agrees to build (the worker policy), how long facts are kept, and the
observer trust policy. Every field has a default; a missing file is the
default config. Unknown keys and wrong types are a LocalError naming the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from p2pci.core.errors import LocalError
from p2pci.core.worker import WorkerPolicy

DEFAULT_HOME = "~/.local/share/p2pci"
DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/4001"


def default_home() -> Path:
    return Path(os.environ.get("P2PCI_HOME") or os.path.expanduser(DEFAULT_HOME))


@dataclass(frozen=True)
class Paths:
    """Files under one node's home directory."""

    home: Path

    @property
    def key(self) -> Path:
        return self.home / "node.key"

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @property
    def db(self) -> Path:
        return self.home / "state.sqlite"

    @property
    def blobs(self) -> Path:
        return self.home / "blobs"

    @property
    def control(self) -> Path:
        return self.home / "control.sock"

    @property
    def addrs(self) -> Path:
        return self.home / "addrs"

    @property
    def work(self) -> Path:
        return self.home / "work"


@dataclass(frozen=True)
class WorkerSettings:
    """What this donor agrees to run. A worker never claims outside it."""

    slots: int = 1
    max_timeout_s: int = 3600
    max_memory_mb: int = 4096
    max_cpus: int = 2
    max_out_mb: int = 1024
    images: str | tuple[str, ...] = "any"  # "any" or image ids ("sha256:…")
    open_jobs: bool = True

    def policy(self) -> WorkerPolicy:
        """The core's WorkerPolicy for these settings (the one worker-policy type)."""
        images: Literal["any"] | frozenset[str] = "any" if self.images == "any" else frozenset(self.images)
        return WorkerPolicy(
            slots=self.slots,
            max_timeout_s=self.max_timeout_s,
            max_memory_mb=self.max_memory_mb,
            max_cpus=self.max_cpus,
            max_out_mb=self.max_out_mb,
            images=images,
            open_jobs=self.open_jobs,
        )


TrustCount = Literal["all", "listed"]


@dataclass(frozen=True)
class TrustSettings:
    """The observer's own trust policy (only ever tightens an offer's).

    `count`: "all" counts every vote the offer allows; "listed" counts only votes of `keys`
    (an empty list then counts nothing: removing the last key never widens the set).
    Every peer ID here was parsed when the file was read: a bad one is an error, never skipped.
    """

    keys: tuple[str, ...] = ()  # peer IDs whose votes this node counts (with count = "listed")
    require_keys: tuple[str, ...] = ()
    require_min: int = 0
    count: TrustCount = "all"


@dataclass(frozen=True)
class Timing:
    claim_window_ms: int = 2000
    lease_ms: int = 30_000
    sync_interval_ms: int = 30_000
    commit_slack_ms: int = 30_000
    dial_timeout_ms: int = 10_000
    blob_timeout_ms: int = 120_000


@dataclass(frozen=True)
class Config:
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    bootstrap: tuple[str, ...] = ()
    build: bool = True
    retention_days: int = 30
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    timing: Timing = field(default_factory=Timing)

    def with_overrides(
        self,
        *,
        listen: tuple[str, ...] | None = None,
        bootstrap: tuple[str, ...] | None = None,
        build: bool | None = None,
    ) -> Config:
        out = self
        if listen:
            out = replace(out, listen=tuple(listen))
        if bootstrap:
            out = replace(out, bootstrap=tuple(dict.fromkeys(out.bootstrap + tuple(bootstrap))))
        if build is not None:
            out = replace(out, build=build)
        return out


DEFAULT_CONFIG_TEXT = f"""\
# p2pci node configuration. Every key is optional; these are the defaults.

# Multiaddrs to listen on. tcp/0 picks a free port (`p2pci id` shows it).
listen = ["{DEFAULT_LISTEN}"]
# Nodes to join the mesh through: ["/ip4/…/tcp/…/p2p/12D3Koo…"]
bootstrap = []
# false: observe and relay only, never build (same as `p2pci daemon --no-build`).
build = true
# Facts of jobs finished longer ago than this may be pruned (exported or own jobs are kept).
retention_days = 30

[worker]
# What this donor agrees to run; the node never claims an offer outside it.
slots = 1
max_timeout_s = 3600
max_memory_mb = 4096
max_cpus = 2
max_out_mb = 1024
images = "any"        # or a list of image ids ["sha256:…"]
open_jobs = true      # false: only build offers whose allowlist names this node

[trust]
# Whose votes this node counts: "all" (every vote the offer allows) or "listed" (only `keys`;
# an empty list then counts none). Default: "listed" when keys are given, else "all".
# `p2pci trust add PEER` adds a key and switches to "listed"; `p2pci trust count all|listed` switches.
# count = "all"
keys = []
# At least require_min agreeing votes must come from require_keys (both or neither).
require_keys = []
require_min = 0

[timing]
claim_window_ms = 2000
lease_ms = 30000
sync_interval_ms = 30000
commit_slack_ms = 30000
dial_timeout_ms = 10000
blob_timeout_ms = 120000
"""


def _take(table: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any) -> Any:
    if key not in table:
        return default
    val = table.pop(key)
    if typ is int and isinstance(val, bool):
        raise LocalError(f"config: {where}{key} must be an integer")
    if not isinstance(val, typ):
        raise LocalError(f"config: {where}{key} has the wrong type ({type(val).__name__})")
    return val


def _strs(table: dict[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    val = _take(table, key, list, where, None)
    if val is None:
        return default
    if not all(isinstance(x, str) for x in val):
        raise LocalError(f"config: {where}{key} must be a list of strings")
    return tuple(val)


def _nonneg(val: int, name: str, minimum: int = 0) -> int:
    if val < minimum:
        raise LocalError(f"config: {name} must be at least {minimum}")
    return val


def _peer_ids(table: dict[str, Any], key: str, source: tuple[str, str] | None) -> tuple[str, ...]:
    """A list of peer IDs, each parsed: a bad one is a LocalError naming it, the file and the line."""
    from p2pci.core.signing import public_of

    out = _strs(table, key, "trust.", ())
    for i, p in enumerate(out):
        try:
            public_of(p)
        except LocalError:
            where = ""
            if source is not None:
                path, text = source
                line = next((n for n, ln in enumerate(text.splitlines(), 1) if p in ln), None)
                where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
            raise LocalError(f"config: {where}trust.{key}[{i}] is not an Ed25519 peer ID: {p!r:.80}") from None
        if out.count(p) > 1:
            raise LocalError(f"config: trust.{key} lists {p} twice")
    return out


def parse_config(data: dict[str, Any], source: tuple[str, str] | None = None) -> Config:
    """A Config from a parsed TOML document (LocalError on unknown keys or bad types).

    `source`: (file name, text) to name the file and line of a bad peer ID."""
    top = dict(data)
    d = Config()
    listen = _strs(top, "listen", "", d.listen)
    bootstrap = _strs(top, "bootstrap", "", d.bootstrap)
    build = _take(top, "build", bool, "", d.build)
    retention = _nonneg(_take(top, "retention_days", int, "", d.retention_days), "retention_days")

    w = dict(_take(top, "worker", dict, "", {}))
    dw = WorkerSettings()
    images_raw = w.pop("images", dw.images)
    if images_raw == "any":
        images: str | tuple[str, ...] = "any"
    elif isinstance(images_raw, list) and all(isinstance(x, str) for x in images_raw):
        images = tuple(images_raw)
    else:
        raise LocalError('config: worker.images must be "any" or a list of image ids')
    worker = WorkerSettings(
        slots=_nonneg(_take(w, "slots", int, "worker.", dw.slots), "worker.slots"),
        max_timeout_s=_nonneg(_take(w, "max_timeout_s", int, "worker.", dw.max_timeout_s), "worker.max_timeout_s"),
        max_memory_mb=_nonneg(_take(w, "max_memory_mb", int, "worker.", dw.max_memory_mb), "worker.max_memory_mb"),
        max_cpus=_nonneg(_take(w, "max_cpus", int, "worker.", dw.max_cpus), "worker.max_cpus"),
        max_out_mb=_nonneg(_take(w, "max_out_mb", int, "worker.", dw.max_out_mb), "worker.max_out_mb"),
        images=images,
        open_jobs=_take(w, "open_jobs", bool, "worker.", dw.open_jobs),
    )
    if w:
        raise LocalError(f"config: unknown key worker.{sorted(w)[0]}")

    t = dict(_take(top, "trust", dict, "", {}))
    keys = _peer_ids(t, "keys", source)
    require_keys = _peer_ids(t, "require_keys", source)
    require_min = _nonneg(_take(t, "require_min", int, "trust.", 0), "trust.require_min")
    count = _take(t, "count", str, "trust.", "listed" if keys else "all")
    if count not in ("all", "listed"):
        raise LocalError(f'config: trust.count must be "all" or "listed", not {count!r:.40}')
    if count == "all" and keys:
        raise LocalError('config: trust.keys is set but trust.count = "all" would ignore it; use "listed"')
    if require_keys and not 1 <= require_min <= len(require_keys):
        raise LocalError(f"config: trust.require_min must be 1..{len(require_keys)} when require_keys is set")
    if require_min and not require_keys:
        raise LocalError("config: trust.require_min is set but trust.require_keys is empty")
    trust = TrustSettings(keys=keys, require_keys=require_keys, require_min=require_min, count=count)
    if t:
        raise LocalError(f"config: unknown key trust.{sorted(t)[0]}")

    tm = dict(_take(top, "timing", dict, "", {}))
    dt = Timing()
    timing = Timing(
        **{
            name: _nonneg(_take(tm, name, int, "timing.", getattr(dt, name)), f"timing.{name}")
            for name in Timing.__dataclass_fields__
        }
    )
    if tm:
        raise LocalError(f"config: unknown key timing.{sorted(tm)[0]}")
    if top:
        raise LocalError(f"config: unknown key {sorted(top)[0]}")
    return Config(
        listen=listen,
        bootstrap=bootstrap,
        build=build,
        retention_days=retention,
        worker=worker,
        trust=trust,
        timing=timing,
    )


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file is the default config."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LocalError(f"config: {path}: {exc}") from None
    try:
        return parse_config(data, (str(path), text))
    except LocalError as exc:
        msg = str(exc)
        if str(path) in msg:
            raise
        raise LocalError(msg.replace("config: ", f"config: {path}: ", 1)) from None


def write_default_config(path: Path) -> bool:
    """Write the commented default config unless one exists; True if written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(DEFAULT_CONFIG_TEXT)
    os.replace(tmp, path)
    return True
