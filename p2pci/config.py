"""`$P2PCI_HOME` layout and `config.toml` (docs/operator.md, docs/internals.md "p2pci.config").

The config says what this node listens on, whom it bootstraps from, what a
donor agrees to build (the worker policy), how long facts are kept, and the
observer trust policy. Every field has a default; a missing file is the
default config. Unknown keys and wrong types are a LocalError naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from p2pci.core.errors import LocalError
from p2pci.core.identity import DEFAULT_IDENTITY_BITS
from p2pci.core.messages import MAX_IDENTITY_BITS
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

    @property
    def identity(self) -> Path:
        return self.home / "identity"


_POLICY = WorkerPolicy()  # the defaults are written once, on core.worker.WorkerPolicy


@dataclass(frozen=True)
class WorkerSettings:
    """`[worker]` as written in config.toml (image ids as a tuple); `.policy()` is the core type."""

    slots: int = _POLICY.slots
    max_timeout_s: int = _POLICY.max_timeout_s
    max_memory_mb: int = _POLICY.max_memory_mb
    max_cpus: int = _POLICY.max_cpus
    max_out_mb: int = _POLICY.max_out_mb
    max_source_mb: int = _POLICY.max_source_mb  # the source tar, and its unpacked total at apparent sizes
    max_inputs_mb: int = _POLICY.max_inputs_mb  # the pinned-inputs tarball an offer names
    max_image_mb: int = _POLICY.max_image_mb  # the image archive an offer names (a listed image needs none)
    images: str | tuple[str, ...] = "any"  # "any", or image IDs ("sha256:…") and names ("busybox", "debian:…")
    open_jobs: bool = _POLICY.open_jobs
    # donor controls (the daemon's, never part of the policy a publisher sees)
    schedule: tuple[str, ...] = ()  # time windows when new work is taken ("mon-fri 19:00-07:00"); () = always
    idle_load: float = 0.0  # > 0: take new work only while the 1-minute load average per CPU is below it
    drain_grace_s: int = 600  # SIGTERM: let running builds finish this long, then stop

    def image_names(self) -> tuple[str, ...]:
        """The entries of `images` that are names, not IDs (to resolve before `policy()`)."""
        if self.images == "any":
            return ()
        return tuple(i for i in self.images if not IMAGE_ID.match(i))

    def policy(self) -> WorkerPolicy:
        """The core's WorkerPolicy for these settings (the one worker-policy type; names in
        `images` must be resolved first)."""
        if self.image_names():
            raise LocalError(
                f"[worker] images: {self.image_names()[0]!r} is a name: resolve it to an image ID first "
                "(resolve_worker_images)"
            )
        images: Literal["any"] | frozenset[str] = "any" if self.images == "any" else frozenset(self.images)
        return WorkerPolicy(
            slots=self.slots,
            max_timeout_s=self.max_timeout_s,
            max_memory_mb=self.max_memory_mb,
            max_cpus=self.max_cpus,
            max_out_mb=self.max_out_mb,
            max_source_mb=self.max_source_mb,
            max_inputs_mb=self.max_inputs_mb,
            max_image_mb=self.max_image_mb,
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


IDENTITY_BITS_ENV = "P2PCI_IDENTITY_BITS"


def default_identity_bits() -> int:
    """The default identity difficulty: `$P2PCI_IDENTITY_BITS` when set (the test suite and
    throwaway meshes set it low), else `core.identity.DEFAULT_IDENTITY_BITS`. It is the default of
    `p2pci init --identity-bits` and of `[publish] identity_bits` (a value in config.toml wins)."""
    raw = os.environ.get(IDENTITY_BITS_ENV, "").strip()
    if not raw:
        return DEFAULT_IDENTITY_BITS
    try:
        bits = int(raw)
    except ValueError:
        raise LocalError(f"${IDENTITY_BITS_ENV} must be an integer 0..{MAX_IDENTITY_BITS}, not {raw[:40]!r}") from None
    if not 0 <= bits <= MAX_IDENTITY_BITS:
        raise LocalError(f"${IDENTITY_BITS_ENV} must be an integer 0..{MAX_IDENTITY_BITS}, not {bits}")
    return bits


@dataclass(frozen=True)
class PublishSettings:
    """`[publish]`: what this node's offers demand of their workers."""

    # the identity proof of work a claimant must show (leading zero bits, p2pci.core.identity)
    identity_bits: int = field(default_factory=default_identity_bits)


@dataclass(frozen=True)
class Timing:
    claim_window_ms: int = 2000
    lease_ms: int = 30_000
    sync_interval_ms: int = 30_000
    commit_slack_ms: int = 30_000
    dial_timeout_ms: int = 10_000
    blob_timeout_ms: int = 120_000


@dataclass(frozen=True)
class NetSettings:
    """Reachability and relaying (docs/operator.md, "Behind a home NAT")."""

    reachability: str = "auto"  # "auto" (from the listen addresses), "public" or "private"
    relay_refresh_s: int = 60  # renew a relay reservation this often (and at once after a drop)
    mdns: bool = True  # find peers on the same LAN (only with private or 0.0.0.0 listen addresses)
    relay: bool = False  # serve as a circuit relay for NATed peers (`daemon --relay`)
    relay_max_reservations: int = 64
    relay_max_circuits_per_peer: int = 8
    relay_circuit_mb: int = 256  # per circuit, both directions (not per reservation: docs/operator.md)
    relay_circuit_seconds: int = 1800
    relay_reservation_ttl_s: int = 600

    def relay_limits(self) -> Any:
        """The RelayServerLimits for `relay = true`, else None."""
        if not self.relay:
            return None
        from p2pci.net.reach import RelayServerLimits

        return RelayServerLimits(
            max_reservations=self.relay_max_reservations,
            max_circuits_per_peer=self.relay_max_circuits_per_peer,
            circuit_bytes=self.relay_circuit_mb << 20,
            circuit_seconds=self.relay_circuit_seconds,
            reservation_ttl=self.relay_reservation_ttl_s,
        )


@dataclass(frozen=True)
class QuotaSettings:
    """Per-peer and per-signer budgets on facts from the network (docs/operator.md, "Quotas")."""

    peer_facts_per_s: int = 200
    peer_burst: int = 2000
    peer_kib_per_s: int = 1024
    peer_burst_kib: int = 8192
    signer_facts_per_s: int = 20
    signer_burst: int = 1000
    signer_kib_per_s: int = 128
    signer_burst_kib: int = 4096
    max_jobs: int = 4096  # jobs on the board; past it the oldest job we have no part in is evicted
    max_offers_per_key: int = 64  # offers per publisher key on the board (same eviction)

    def limits(self) -> Any:
        """The network's QuotaLimits."""
        from p2pci.net.quota import QuotaLimits

        return QuotaLimits(  # max_jobs / max_offers_per_key go to the NodeMachine (node_config)
            peer_facts_per_s=float(self.peer_facts_per_s),
            peer_burst=self.peer_burst,
            peer_kib_per_s=self.peer_kib_per_s,
            peer_burst_kib=self.peer_burst_kib,
            signer_facts_per_s=float(self.signer_facts_per_s),
            signer_burst=self.signer_burst,
            signer_kib_per_s=self.signer_kib_per_s,
            signer_burst_kib=self.signer_burst_kib,
        )


@dataclass(frozen=True)
class StorageSettings:
    """`[storage]`: how long and how much this node keeps (docs/operator.md, "Disk")."""

    retention_days: int = 30  # facts, blobs and work dirs of jobs decided longer ago than this go
    max_gb: float = 20.0  # blobs + work dirs; past it the oldest decided jobs go first (0: no budget)
    gc_interval_min: float = 60  # how often the daemon collects (`p2pci gc` runs it at once)

    @property
    def max_bytes(self) -> int:
        return int(self.max_gb * (1 << 30))


@dataclass(frozen=True)
class Config:
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    bootstrap: tuple[str, ...] = ()
    build: bool = True
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    timing: Timing = field(default_factory=Timing)
    net: NetSettings = field(default_factory=NetSettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)

    @property
    def retention_days(self) -> int:
        return self.storage.retention_days

    def with_overrides(
        self,
        *,
        listen: tuple[str, ...] | None = None,
        bootstrap: tuple[str, ...] | None = None,
        build: bool | None = None,
        relay: bool | None = None,
    ) -> Config:
        out = self
        if relay is not None:
            out = replace(out, net=replace(out.net, relay=relay))
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

[storage]
# Jobs decided longer ago than this lose their facts (exported or own jobs keep them), blobs,
# work dirs and the images p2pci loaded for them (`p2pci gc` collects at once).
retention_days = 30
max_gb = 20           # blobs + work dirs; over it the oldest decided jobs go first (0: no budget)
gc_interval_min = 60  # how often the daemon collects

[worker]
# What this donor agrees to run; the node never claims an offer outside it.
slots = 1
max_timeout_s = 3600
max_memory_mb = 4096
max_cpus = 2
max_out_mb = 1024
max_source_mb = 256   # a source larger than this (tar, or unpacked: sparse files at their full size) is refused
max_inputs_mb = 1024  # an offer whose pinned inputs tarball is larger than this is refused
max_image_mb = 4096   # an offer whose image archive is larger than this is refused (listed images need none)
images = "any"        # or a list of image ids ["sha256:…"]
open_jobs = true      # false: only build offers whose allowlist names this node
# Donor controls (also `p2pci worker pause | resume | drain`). New work only inside these local
# time windows, e.g. ["mon-fri 19:00-07:00", "sat,sun 00:00-24:00"]; [] = always.
schedule = []
idle_load = 0         # > 0: new work only while the 1-minute load average per CPU is below this
drain_grace_s = 600   # on SIGTERM, running builds get this long to finish, then the daemon stops

[trust]
# Whose votes this node counts: "all" (every vote the offer allows) or "listed" (only `keys`;
# an empty list then counts none). Default: "listed" when keys are given, else "all".
# `p2pci trust add PEER` adds a key and switches to "listed"; `p2pci trust count all|listed` switches.
# count = "all"
keys = []
# At least require_min agreeing votes must come from require_keys (both or neither).
require_keys = []
require_min = 0

[net]
# "auto": behind a NAT if every listen address is private (10.x, 192.168.x, …);
# then the node reserves a slot on a relay among its bootstrap peers and is
# reachable through it. "public" / "private" override the guess.
reachability = "auto"
relay_refresh_s = 60
# Find peers on the same LAN by mDNS (only when listening on a private or 0.0.0.0 address).
mdns = true
# Serve as a relay for NATed peers (same as `p2pci daemon --relay`), within:
relay = false
relay_max_reservations = 64
relay_max_circuits_per_peer = 8
relay_circuit_mb = 256
relay_circuit_seconds = 1800
relay_reservation_ttl_s = 600

[quotas]
# Facts from the network are charged, before they are verified further or stored, to the
# peer that sent them and to the key that signed them (gossip and sync alike). Over a
# budget a fact is dropped and counted (`p2pci status`, section quotas); sync offers it
# again once the budget has refilled. Rates per second; bursts are the bucket sizes.
peer_facts_per_s = 200
peer_burst = 2000
peer_kib_per_s = 1024
peer_burst_kib = 8192
signer_facts_per_s = 20
signer_burst = 1000
signer_kib_per_s = 128
signer_burst_kib = 4096
# The board keeps at most max_jobs jobs and max_offers_per_key offers per publisher key.
# Past a bound the oldest job that is not ours and that this node takes no part in is
# evicted (its facts deleted); the oldest max_jobs / 2 selected jobs are kept.
max_jobs = 4096
max_offers_per_key = 64

[publish]
# The identity proof of work (leading zero bits) this node's offers demand of a worker:
# 27 costs a new identity about 76 s of one core, minted once per node key by `p2pci init`.
# The default is 27, or $P2PCI_IDENTITY_BITS when set (test suites and demo meshes set it low).
# identity_bits = 27

[timing]
claim_window_ms = 2000
lease_ms = 30000
sync_interval_ms = 30000
commit_slack_ms = 30000
dial_timeout_ms = 10000
blob_timeout_ms = 120000
"""


IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


class ConfigError(LocalError):
    """A bad config value; `key` is its dotted name ("worker.slots"), so that `load_config`
    can name the file and the line."""

    def __init__(self, message: str, key: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value  # a string entry of a list the error is about (its own line is named)


def _take(table: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any) -> Any:
    if key not in table:
        return default
    val = table.pop(key)
    if typ is int and isinstance(val, bool):
        raise ConfigError(f"config: {where}{key} must be an integer", where + key)
    if not isinstance(val, typ):
        raise ConfigError(f"config: {where}{key} has the wrong type ({type(val).__name__})", where + key)
    return val


def _schedule(entries: tuple[str, ...]) -> tuple[str, ...]:
    from p2pci.core.schedule import parse_schedule

    try:
        parse_schedule(entries)
    except LocalError as e:
        raise ConfigError(f"config: worker.{e}", "worker.schedule") from None
    return entries


def _idle_load(val: Any) -> float:
    if isinstance(val, bool) or not 0 <= float(val) <= 64:
        raise ConfigError("config: worker.idle_load must be 0 (off) .. 64 (load average per CPU)", "worker.idle_load")
    return float(val)


def _strs(table: dict[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    val = _take(table, key, list, where, None)
    if val is None:
        return default
    if not all(isinstance(x, str) for x in val):
        raise ConfigError(f"config: {where}{key} must be a list of strings", where + key)
    return tuple(val)


def _nonneg(val: int, name: str, minimum: int = 0) -> int:
    if val < minimum:
        raise ConfigError(f"config: {name} must be at least {minimum}", name)
    return val


def _images(raw: Any) -> str | tuple[str, ...]:
    """`[worker] images`: "any", or a list of image IDs and names `p2pci try` and recipes use."""
    if raw == "any":
        return "any"
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError('config: worker.images must be "any" or a list of image names or IDs', "worker.images")
    from p2pci.recipe import check_image_name

    for name in raw:
        try:
            check_image_name(name)
        except ValueError:
            raise ConfigError(
                f"config: worker.images: unknown image {name!r} (use \"busybox\", "
                f"\"debian:<suite>[+pkg,…]\" or an image ID \"sha256:<64 hex>\")",
                "worker.images",
                name,
            ) from None
    return tuple(raw)


def _peer_ids(table: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of peer IDs, each parsed: a bad or repeated one is a ConfigError naming it (and, through
    `load_config`, the file and the line of the entry)."""
    from p2pci.core.signing import public_of

    out = _strs(table, key, "trust.", ())
    for i, p in enumerate(out):
        try:
            public_of(p)
        except LocalError:
            raise ConfigError(
                f"config: trust.{key}[{i}] is not an Ed25519 peer ID: {p!r:.80}", f"trust.{key}", p
            ) from None
        if out.count(p) > 1:
            raise ConfigError(f"config: trust.{key} lists {p} twice", f"trust.{key}", p)
    return out


def parse_config(data: dict[str, Any]) -> Config:
    """A Config from a parsed TOML document (LocalError on unknown keys or bad types; a ConfigError
    names its key, which `load_config` turns into the file and the line)."""
    top = dict(data)
    d = Config()
    listen = _strs(top, "listen", "", d.listen)
    bootstrap = _strs(top, "bootstrap", "", d.bootstrap)
    build = _take(top, "build", bool, "", d.build)
    old_retention = top.pop("retention_days", None)  # the spelling before [storage]: still read
    st = dict(_take(top, "storage", dict, "", {}))
    ds = StorageSettings()
    if old_retention is not None:
        if "retention_days" in st:
            raise ConfigError("config: retention_days is set twice (top level and [storage]); keep [storage]", "retention_days")
        st["retention_days"] = old_retention
    max_gb = _take(st, "max_gb", (int, float), "storage.", ds.max_gb)
    if isinstance(max_gb, bool) or not 0 <= max_gb <= 1 << 20:
        raise ConfigError("config: storage.max_gb must be a number of GB >= 0 (0: no budget)", "storage.max_gb")
    storage = StorageSettings(
        retention_days=_nonneg(_take(st, "retention_days", int, "storage.", ds.retention_days), "storage.retention_days"),
        max_gb=float(max_gb),
        gc_interval_min=_nonneg(
            _take(st, "gc_interval_min", int, "storage.", ds.gc_interval_min), "storage.gc_interval_min", 1
        ),
    )
    if st:
        raise ConfigError(f"config: unknown key storage.{sorted(st)[0]}", f"storage.{sorted(st)[0]}")

    w = dict(_take(top, "worker", dict, "", {}))
    dw = WorkerSettings()
    images = _images(w.pop("images", dw.images))
    worker = WorkerSettings(
        slots=_nonneg(_take(w, "slots", int, "worker.", dw.slots), "worker.slots"),
        max_timeout_s=_nonneg(_take(w, "max_timeout_s", int, "worker.", dw.max_timeout_s), "worker.max_timeout_s"),
        max_memory_mb=_nonneg(_take(w, "max_memory_mb", int, "worker.", dw.max_memory_mb), "worker.max_memory_mb"),
        max_cpus=_nonneg(_take(w, "max_cpus", int, "worker.", dw.max_cpus), "worker.max_cpus"),
        max_out_mb=_nonneg(_take(w, "max_out_mb", int, "worker.", dw.max_out_mb), "worker.max_out_mb"),
        max_source_mb=_nonneg(_take(w, "max_source_mb", int, "worker.", dw.max_source_mb), "worker.max_source_mb", 1),
        max_inputs_mb=_nonneg(_take(w, "max_inputs_mb", int, "worker.", dw.max_inputs_mb), "worker.max_inputs_mb", 1),
        max_image_mb=_nonneg(_take(w, "max_image_mb", int, "worker.", dw.max_image_mb), "worker.max_image_mb", 1),
        images=images,
        open_jobs=_take(w, "open_jobs", bool, "worker.", dw.open_jobs),
        schedule=_schedule(_strs(w, "schedule", "worker.", dw.schedule)),
        idle_load=_idle_load(_take(w, "idle_load", (int, float), "worker.", dw.idle_load)),
        drain_grace_s=_nonneg(_take(w, "drain_grace_s", int, "worker.", dw.drain_grace_s), "worker.drain_grace_s"),
    )
    if w:
        raise ConfigError(f"config: unknown key worker.{sorted(w)[0]}", f"worker.{sorted(w)[0]}")

    t = dict(_take(top, "trust", dict, "", {}))
    keys = _peer_ids(t, "keys")
    require_keys = _peer_ids(t, "require_keys")
    require_min = _nonneg(_take(t, "require_min", int, "trust.", 0), "trust.require_min")
    count = _take(t, "count", str, "trust.", "listed" if keys else "all")
    if count not in ("all", "listed"):
        raise ConfigError(f'config: trust.count must be "all" or "listed", not {count!r:.40}', "trust.count")
    if count == "all" and keys:
        raise ConfigError('config: trust.keys is set but trust.count = "all" would ignore it; use "listed"', "trust.count")
    if require_keys and not 1 <= require_min <= len(require_keys):
        raise ConfigError(f"config: trust.require_min must be 1..{len(require_keys)} when require_keys is set", "trust.require_min")
    if require_min and not require_keys:
        raise ConfigError("config: trust.require_min is set but trust.require_keys is empty", "trust.require_min")
    trust = TrustSettings(keys=keys, require_keys=require_keys, require_min=require_min, count=count)
    if t:
        raise ConfigError(f"config: unknown key trust.{sorted(t)[0]}", f"trust.{sorted(t)[0]}")

    tm = dict(_take(top, "timing", dict, "", {}))
    dt = Timing()
    timing = Timing(
        **{
            name: _nonneg(_take(tm, name, int, "timing.", getattr(dt, name)), f"timing.{name}")
            for name in Timing.__dataclass_fields__
        }
    )
    if tm:
        raise ConfigError(f"config: unknown key timing.{sorted(tm)[0]}", f"timing.{sorted(tm)[0]}")

    nt = dict(_take(top, "net", dict, "", {}))
    dn = NetSettings()
    reach = _take(nt, "reachability", str, "net.", dn.reachability)
    if reach not in ("auto", "public", "private"):
        raise ConfigError('config: net.reachability must be "auto", "public" or "private"', "net.reachability")
    ints = {
        name: _nonneg(_take(nt, name, int, "net.", getattr(dn, name)), f"net.{name}", 1)
        for name in NetSettings.__dataclass_fields__
        if name not in ("reachability", "relay", "mdns")
    }
    net = NetSettings(
        reachability=reach,
        relay=_take(nt, "relay", bool, "net.", dn.relay),
        mdns=_take(nt, "mdns", bool, "net.", dn.mdns),
        **ints,
    )
    if nt:
        raise ConfigError(f"config: unknown key net.{sorted(nt)[0]}", f"net.{sorted(nt)[0]}")
    qt = dict(_take(top, "quotas", dict, "", {}))
    dq = QuotaSettings()
    quotas = QuotaSettings(
        **{
            name: _nonneg(_take(qt, name, int, "quotas.", getattr(dq, name)), f"quotas.{name}", 1)
            for name in QuotaSettings.__dataclass_fields__
        }
    )
    if qt:
        raise ConfigError(f"config: unknown key quotas.{sorted(qt)[0]}", f"quotas.{sorted(qt)[0]}")
    pt = dict(_take(top, "publish", dict, "", {}))
    bits = _take(pt, "identity_bits", int, "publish.", None)
    if bits is not None and not 0 <= bits <= MAX_IDENTITY_BITS:
        raise ConfigError(f"config: publish.identity_bits must be 0..{MAX_IDENTITY_BITS}", "publish.identity_bits")
    publish = PublishSettings() if bits is None else PublishSettings(identity_bits=bits)
    if pt:
        raise ConfigError(f"config: unknown key publish.{sorted(pt)[0]}", f"publish.{sorted(pt)[0]}")
    if top:
        raise ConfigError(f"config: unknown key {sorted(top)[0]}", sorted(top)[0])
    return Config(
        publish=publish,
        listen=listen,
        bootstrap=bootstrap,
        build=build,
        worker=worker,
        trust=trust,
        timing=timing,
        net=net,
        quotas=quotas,
        storage=storage,
    )


def load_config(path: Path) -> Config:
    """Read config.toml; a missing file is the default config.

    Errors name the file and, when it can be found, the line:
    `/var/lib/p2pci/config.toml line 12: worker.slots must be at least 0`.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise LocalError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"^(.*) \(at line (\d+), column (\d+)\)$", str(exc))
        if m:
            raise LocalError(f"{path} line {m.group(2)}: {m.group(1)} (column {m.group(3)})") from None
        raise LocalError(f"{path}: {exc}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise config_error_at(path, text, exc) from None


def config_error_at(path: Path, text: str, exc: ConfigError) -> LocalError:
    """`exc` said with the file and the line of its key."""
    msg = str(exc).removeprefix("config: ")
    line = key_line(text, exc.key) if exc.key else None
    if line is not None and exc.value is not None:  # the entry's own line in a multi-line list
        quoted = (f'"{exc.value}"', f"'{exc.value}'")
        lines = text.splitlines()
        line = next((n for n in range(line, len(lines) + 1) if any(q in lines[n - 1] for q in quoted)), line)
    where = f"{path} line {line}" if line is not None else str(path)
    return ConfigError(f"{where}: {msg}", exc.key, exc.value)


def key_line(text: str, dotted: str) -> int | None:
    """The line (1-based) of `table.key` or top-level `key` in TOML `text` (None: not found)."""
    table, _, key = dotted.rpartition(".")
    current = ""
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        m = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if m:
            current = m.group(1)
            if current == dotted:  # a table itself
                return no
            continue
        if current == table and re.match(r'^["\']?' + re.escape(key) + r'["\']?\s*=', line):
            return no
    return None


def resolve_worker_images(config: Config, resolve: Callable[[str], str]) -> Config:
    """`config` with every image name in `[worker] images` replaced by the ID `resolve` gives.

    The daemon resolves names at start with `p2pci.runner.images.resolve_image`: the
    deterministic image is looked up among the images built here, or built, and its ID
    (the same on every machine for the same inputs) is what the policy matches offers by.
    """
    names = config.worker.image_names()
    if not names:
        return config
    assert isinstance(config.worker.images, tuple)
    resolved = tuple(dict.fromkeys(i if IMAGE_ID.match(i) else resolve(i) for i in config.worker.images))
    return replace(config, worker=replace(config.worker, images=resolved))


def write_default_config(path: Path) -> bool:
    """Write the commented default config unless one exists; True if written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private: born 0600
    with os.fdopen(fd, "w") as fh:
        fh.write(DEFAULT_CONFIG_TEXT)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True
