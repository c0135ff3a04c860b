"""The project recipe, `DIR/p2pci.toml` (docs/publishing.md).

```toml
[project]                       # optional
name = "hello"                  # default: the directory name

[build]
image = "debian:bookworm+build-essential"   # or "busybox" or "sha256:<64 hex>"
command = ["make", "-C", "/tmp/b"]          # a string means ["sh", "-c", string]
env = { CFLAGS = "-O2" }
timeout = "10m"                             # "90s", "2h" or int seconds
outputs-dir = "/out"                        # only "/out" is supported
source_date_epoch = 1700000000              # optional
memory = "2g"                               # limits: defaults in DEFAULT_LIMITS
cpus = 2
pids = 512
out = "1g"

[trust]
replicas = 3
quorum = 2
workers = "open"                            # or ["12D3KooW...", ...]
require = { keys = ["12D3KooW..."], min = 1 }
```

Every problem is a `LocalError` naming the key and, when it can be found,
the line: "p2pci.toml line 7: unknown key 'imagee' in [build]".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from p2pci.core.errors import LocalError
from p2pci.core.messages import Limits
from p2pci.core.offer import DEFAULT_LIMITS

RECIPE_FILE = "p2pci.toml"
OUTPUTS_DIR = "/out"
MAX_REPLICAS = 64

# Environment keys the runner sets itself (docs/protocol.md section 9).
RESERVED_ENV = frozenset({"SOURCE_DATE_EPOCH", "HOME", "TZ", "LANG"})

_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_DEBIAN = re.compile(r"^debian:(?P<suite>[a-z][a-z0-9-]*)(?:\+(?P<pkgs>[a-z0-9][a-z0-9+.,-]*))?$")
_PKG = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^(?P<n>[0-9]+)\s*(?P<unit>ms|s|m|h)?$")
_SIZE = re.compile(r"^(?P<n>[0-9]+)\s*(?P<unit>[kmgt]i?b?|b)?$", re.IGNORECASE)



@dataclass(frozen=True)
class RecipeRequire:
    keys: tuple[str, ...]  # peer IDs (12D3KooW...)
    min: int

    def key_bytes(self) -> tuple[bytes, ...]:
        return tuple(_public_of(k) for k in self.keys)


@dataclass(frozen=True)
class Trust:
    replicas: int = 3
    quorum: int = 2
    workers: Literal["open"] | tuple[str, ...] = "open"  # "open" or peer IDs
    require: RecipeRequire | None = None

    def worker_keys(self) -> Literal["open"] | tuple[bytes, ...]:
        """`workers` as the offer wants it: "open" or raw 32-byte keys."""
        if self.workers == "open":
            return "open"
        return tuple(_public_of(p) for p in self.workers)


@dataclass(frozen=True)
class Recipe:
    dir: Path
    project: str
    image: str  # "busybox", "debian:<suite>[+pkg,...]" or "sha256:<64 hex>"
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # sorted by key
    source_date_epoch: int | None
    limits: Limits
    trust: Trust = field(default_factory=Trust)
    outputs_dir: str = OUTPUTS_DIR


def _public_of(peer_id: str) -> bytes:
    """Raw 32-byte key of a peer ID; ValueError when it is not one."""
    try:
        from p2pci.core.signing import public_of
    except ImportError:  # pragma: no cover - only while p2pci.core.signing is not written yet
        if not re.match(r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$", peer_id):
            raise ValueError(f"bad peer ID {peer_id!r}") from None
        raise LocalError("p2pci.core.signing is missing: cannot convert peer IDs") from None
    try:
        return public_of(peer_id)
    except LocalError as e:
        raise ValueError(f"bad peer ID {peer_id!r}: {e}") from None


class _Where:
    """Finds the line of a key in the TOML text (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line(self, table: str | None, key: str | None = None) -> int | None:
        current: str | None = None
        for no, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            m = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
            if m:
                current = m.group(1)
                if key is None and current == table:
                    return no
                continue
            if key is not None and current == table:
                if re.match(r'^["\']?' + re.escape(key) + r'["\']?\s*=', line):
                    return no
        return None

    def error(self, table: str | None, key: str | None, message: str) -> LocalError:
        no = self.line(table, key)
        if no is None and key is not None:
            no = self.line(table)
        where = f"{RECIPE_FILE} line {no}" if no is not None else RECIPE_FILE
        return LocalError(f"{where}: {message}")


def parse_duration(value: object) -> int:
    """ "10m", "90s", "2h", "1500ms" or an int of seconds -> whole seconds (>= 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        m = _DURATION.match(value.strip())
        if not m:
            raise ValueError(f'bad duration {value!r} (use e.g. "90s", "10m", "2h")')
        n = int(m.group("n"))
        unit = m.group("unit") or "s"
        seconds = {"ms": -(-n // 1000), "s": n, "m": n * 60, "h": n * 3600}[unit]
    else:
        raise ValueError("expected a duration")
    if seconds < 1:
        raise ValueError("duration must be at least 1 second")
    return seconds


def parse_size_mb(value: object) -> int:
    """ "2g", "512m", "512MiB" or an int of megabytes -> whole MiB (>= 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a size")
    if isinstance(value, int):
        mb = value
    elif isinstance(value, str):
        m = _SIZE.match(value.strip())
        if not m:
            raise ValueError(f'bad size {value!r} (use e.g. "512m", "2g")')
        n = int(m.group("n"))
        unit = (m.group("unit") or "m").lower()[:1]
        factor = {"b": 1 / (1 << 20), "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]
        mb = -(-int(n * factor * 1024) // 1024) if factor < 1 else int(n * factor)
    else:
        raise ValueError("expected a size")
    if mb < 1:
        raise ValueError("size must be at least 1 MiB")
    return mb


def check_image_name(image: str) -> str:
    """Validate an image reference; raises ValueError."""
    if image == "busybox" or _IMAGE_ID.match(image):
        return image
    m = _DEBIAN.match(image)
    if m:
        pkgs = m.group("pkgs")
        if pkgs is not None:
            for p in pkgs.split(","):
                if not _PKG.match(p):
                    raise ValueError(f"bad package name {p!r} in image {image!r}")
        return image
    raise ValueError(f'bad image {image!r}: use "busybox", "debian:<suite>[+pkg,...]" or "sha256:<64 hex>"')


_BUILD_KEYS = {
    "image",
    "command",
    "env",
    "timeout",
    "outputs-dir",
    "source_date_epoch",
    "memory",
    "cpus",
    "pids",
    "out",
}
_TRUST_KEYS = {"replicas", "quorum", "workers", "require"}
_PROJECT_KEYS = {"name"}


def load_recipe(dir: Path) -> Recipe:
    """Parse `dir/p2pci.toml`. Raises LocalError naming the key and line."""
    path = Path(dir) / RECIPE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LocalError(f"no {RECIPE_FILE} in {dir}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LocalError(f"cannot read {path}: {e}") from None
    return parse_recipe(text, Path(dir))


def parse_recipe(text: str, dir: Path) -> Recipe:
    where = _Where(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LocalError(f"{RECIPE_FILE}: {e}") from None

    for key in data:
        if key not in ("build", "trust", "project"):
            raise where.error(
                None, key, f"unknown table or key '{key}' (expected [build], [trust], [project])"
            )
        if not isinstance(data[key], dict):
            raise where.error(None, key, f"'{key}' must be a table")
    build: dict[str, Any] = data.get("build", {})
    trust: dict[str, Any] = data.get("trust", {})
    project: dict[str, Any] = data.get("project", {})
    if "build" not in data:
        raise LocalError(f"{RECIPE_FILE}: missing [build] table")

    for table, keys, allowed in (
        ("build", build, _BUILD_KEYS),
        ("trust", trust, _TRUST_KEYS),
        ("project", project, _PROJECT_KEYS),
    ):
        for key in keys:
            if key not in allowed:
                raise where.error(table, key, f"unknown key '{key}' in [{table}]")

    def get(table: str, src: dict[str, Any], key: str, conv: Callable[[Any], Any], default: Any) -> Any:
        if key not in src:
            return default
        try:
            return conv(src[key])
        except (ValueError, TypeError) as e:
            raise where.error(table, key, f"bad value for '{key}' in [{table}]: {e}") from None

    # [project]
    name = get("project", project, "name", _nonempty_str, dir.resolve().name or "project")

    # [build]
    if "image" not in build:
        raise where.error("build", None, "missing key 'image' in [build]")
    if "command" not in build:
        raise where.error("build", None, "missing key 'command' in [build]")
    image = get("build", build, "image", lambda v: check_image_name(_nonempty_str(v)), None)
    command = get("build", build, "command", _command, None)
    env = get("build", build, "env", _env, ())
    outputs_dir = get("build", build, "outputs-dir", _outputs_dir, OUTPUTS_DIR)
    sde = get("build", build, "source_date_epoch", _sde, None)
    limits = Limits(
        timeout_s=get("build", build, "timeout", parse_duration, DEFAULT_LIMITS.timeout_s),
        memory_mb=get("build", build, "memory", parse_size_mb, DEFAULT_LIMITS.memory_mb),
        cpus=get("build", build, "cpus", lambda v: _int_range(v, 1, 256), DEFAULT_LIMITS.cpus),
        pids=get("build", build, "pids", lambda v: _int_range(v, 16, 1 << 22), DEFAULT_LIMITS.pids),
        out_mb=get("build", build, "out", parse_size_mb, DEFAULT_LIMITS.out_mb),
    )

    # [trust]
    replicas = get("trust", trust, "replicas", lambda v: _int_range(v, 1, MAX_REPLICAS), Trust.replicas)
    quorum = get(
        "trust", trust, "quorum", lambda v: _int_range(v, 1, MAX_REPLICAS), min(Trust.quorum, replicas)
    )
    if quorum > replicas:
        raise where.error("trust", "quorum", f"quorum ({quorum}) must not exceed replicas ({replicas})")
    workers = get("trust", trust, "workers", _workers, "open")
    require = get("trust", trust, "require", _require, None)
    if require is not None and require.min > len(require.keys):
        raise where.error("trust", "require", "require.min is larger than the number of keys")

    return Recipe(
        dir=dir,
        project=name,
        image=image,
        command=command,
        env=env,
        source_date_epoch=sde,
        limits=limits,
        trust=Trust(replicas=replicas, quorum=quorum, workers=workers, require=require),
        outputs_dir=outputs_dir,
    )


def _nonempty_str(v: object) -> str:
    if not isinstance(v, str) or not v:
        raise TypeError("expected a non-empty string")
    return v


def _int_range(v: object, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("expected an integer")
    if not lo <= v <= hi:
        raise ValueError(f"must be between {lo} and {hi}")
    return v


def _command(v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        if not v.strip():
            raise ValueError("empty command")
        return ("sh", "-c", v)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        if any("\x00" in x for x in v):
            raise ValueError("NUL in command")
        return tuple(v)
    raise TypeError("expected a string or a non-empty list of strings")


def _env(v: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        raise TypeError("expected a table of strings")
    out = []
    for k, val in v.items():
        if not _ENV_KEY.match(k):
            raise ValueError(f"bad variable name {k!r}")
        if k in RESERVED_ENV:
            raise ValueError(f"{k} is set by the runner (use source_date_epoch for SOURCE_DATE_EPOCH)")
        if not isinstance(val, str) or "\x00" in val:
            raise TypeError(f"value of {k} must be a string")
        out.append((k, val))
    return tuple(sorted(out))


def _outputs_dir(v: object) -> str:
    if v != OUTPUTS_DIR:
        raise ValueError(f"only {OUTPUTS_DIR!r} is supported")
    return OUTPUTS_DIR


def _sde(v: object) -> int:
    return _int_range(v, 0, 253402300799)


def _workers(v: object) -> Literal["open"] | tuple[str, ...]:
    if v == "open":
        return "open"
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        for p in v:
            _check_peer_id(p)
        return tuple(v)
    raise TypeError('expected "open" or a non-empty list of peer IDs')


def _check_peer_id(p: str) -> None:
    try:
        _public_of(p)
    except LocalError:  # signing module not there yet: the string form was checked
        pass


def _require(v: object) -> RecipeRequire:
    if not isinstance(v, dict) or set(v) - {"keys", "min"}:
        raise TypeError("expected {keys = [peer IDs], min = N}")
    keys = v.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(x, str) for x in keys):
        raise TypeError("require.keys must be a non-empty list of peer IDs")
    for p in keys:
        _check_peer_id(p)
    mn = _int_range(v.get("min", 1), 1, MAX_REPLICAS)
    return RecipeRequire(keys=tuple(keys), min=mn)
