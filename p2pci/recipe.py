"""The project recipe, `DIR/p2pci.toml` (docs/publishing.md).

```toml
[project]                       # optional
name = "hello"                  # default: the directory name

[build]
image = "debian:bookworm+build-essential"   # or "busybox" or "sha256:<64 hex>"
command = ["make", "-C", "/tmp/b"]          # a string means ["sh", "-c", string]
env = { CFLAGS = "-O2" }
timeout = "10m"                             # "90s", "2h", "7d" or int seconds
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

[fetch]                                     # optional: run once, with network, before offering
command = "pip download --require-hashes -r requirements.txt -d /inputs"
image = "debian:bookworm+python3-pip"       # default: the [build] image
env = { PIP_INDEX_URL = "https://pypi.org/simple" }
timeout = "10m"
lockfiles = ["requirements.txt"]            # default: the well-known lockfiles found at the top

[[input]]                                   # optional, repeatable: a plain file, pinned
url = "https://example.org/data.tar.gz"
sha256 = "<64 hex>"
name = "data.tar.gz"                        # default: the last part of the URL's path
```

What `[fetch]` wrote into /inputs and the `[[input]]` files are packed into
one deterministic tarball (p2pci.runner.fetch), pinned by SHA-256, and
mounted read-only at /build/inputs in every build.

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
_DURATION = re.compile(r"^(?P<n>[0-9]+)\s*(?P<unit>ms|s|m|h|d)?$")
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


# What decides a fetch's cache key besides [fetch] and [[input]] themselves: these files at the
# top of the source tree, when present and the recipe names no `lockfiles`.
WELL_KNOWN_LOCKFILES = (
    "Cargo.lock",
    "Cargo.toml",
    "Gemfile.lock",
    "Pipfile.lock",
    "composer.lock",
    "go.mod",
    "go.sum",
    "npm-shrinkwrap.json",
    "package-lock.json",
    "package.json",
    "pdm.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "pyproject.toml",
    "requirements.txt",
    "uv.lock",
    "yarn.lock",
)
MAX_INPUT_FILES = 1000


@dataclass(frozen=True)
class FetchStep:
    """`[fetch]`: one command run with network before offering; it writes into /inputs."""

    command: tuple[str, ...]
    image: str | None = None  # None: the [build] image
    env: tuple[tuple[str, str], ...] = ()
    timeout_s: int = 600
    lockfiles: tuple[str, ...] | None = None  # None: WELL_KNOWN_LOCKFILES found at the top


@dataclass(frozen=True)
class PinnedFile:
    """One `[[input]]`: a file downloaded by URL and checked against its SHA-256."""

    url: str
    sha256: bytes
    name: str  # its name in /build/inputs


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
    fetch: FetchStep | None = None
    inputs: tuple[PinnedFile, ...] = ()

    @property
    def has_inputs(self) -> bool:
        """Whether builds get a /build/inputs (a [fetch] or at least one [[input]])."""
        return self.fetch is not None or bool(self.inputs)


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
        """`table` is "build", or "input#2" for the third `[[input]]`."""
        current: str | None = None
        arrays: dict[str, int] = {}
        for no, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            a = re.match(r"^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", line)
            if a:
                k = arrays[a.group(1)] = arrays.get(a.group(1), -1) + 1
                current = f"{a.group(1)}#{k}"
                if key is None and current == table:
                    return no
                continue
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
    """ "10m", "90s", "2h", "7d", "1500ms" or an int of seconds -> whole seconds (>= 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        m = _DURATION.match(value.strip())
        if not m:
            raise ValueError(f'bad duration {value!r} (use e.g. "90s", "10m", "2h", "7d")')
        n = int(m.group("n"))
        unit = m.group("unit") or "s"
        seconds = {"ms": -(-n // 1000), "s": n, "m": n * 60, "h": n * 3600, "d": n * 86400}[unit]
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
        if unit in ("b", "k"):  # whole MiB, rounded up; integer arithmetic (no float overflow)
            mb = -(-n // (1 << 20 if unit == "b" else 1024))
        else:
            mb = n * {"m": 1, "g": 1024, "t": 1024 * 1024}[unit]
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
_FETCH_KEYS = {"command", "image", "env", "timeout", "lockfiles"}
_INPUT_KEYS = {"url", "sha256", "name"}


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
        if key not in ("build", "trust", "project", "fetch", "input"):
            raise where.error(
                None,
                key,
                f"unknown table or key '{key}' (expected [build], [trust], [project], [fetch], [[input]])",
            )
        if key == "input":
            if not isinstance(data[key], list):
                raise where.error(None, key, "'input' must be an array of tables: write [[input]]")
            continue
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
        except LimitError as e:
            raise where.error(table, key, f"[{table}] {e}") from None
        except (ValueError, TypeError) as e:
            raise where.error(table, key, f"bad value for '{key}' in {_label(table)}: {e}") from None

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
        timeout_s=get("build", build, "timeout", limit_parser("timeout"), DEFAULT_LIMITS.timeout_s),
        memory_mb=get("build", build, "memory", limit_parser("memory"), DEFAULT_LIMITS.memory_mb),
        cpus=get("build", build, "cpus", limit_parser("cpus"), DEFAULT_LIMITS.cpus),
        pids=get("build", build, "pids", limit_parser("pids"), DEFAULT_LIMITS.pids),
        out_mb=get("build", build, "out", limit_parser("out"), DEFAULT_LIMITS.out_mb),
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

    fetch = _parse_fetch(data.get("fetch"), where, get)
    inputs = _parse_inputs(data.get("input", []), where, get)

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
        fetch=fetch,
        inputs=inputs,
    )


_Get = Callable[[str, dict[str, Any], str, Callable[[Any], Any], Any], Any]


def _parse_fetch(fetch: dict[str, Any] | None, where: _Where, get: _Get) -> FetchStep | None:
    if fetch is None:
        return None
    for key in fetch:
        if key not in _FETCH_KEYS:
            raise where.error("fetch", key, f"unknown key '{key}' in [fetch]")
    if "command" not in fetch:
        raise where.error("fetch", None, "missing key 'command' in [fetch]")
    return FetchStep(
        command=get("fetch", fetch, "command", _command, None),
        image=get("fetch", fetch, "image", lambda v: check_image_name(_nonempty_str(v)), None),
        env=get("fetch", fetch, "env", _env, ()),
        timeout_s=get("fetch", fetch, "timeout", parse_duration, 600),
        lockfiles=get("fetch", fetch, "lockfiles", _lockfiles, None),
    )


def _parse_inputs(items: list[Any], where: _Where, get: _Get) -> tuple[PinnedFile, ...]:
    if len(items) > MAX_INPUT_FILES:
        raise where.error("input#0", None, f"more than {MAX_INPUT_FILES} [[input]] files")
    out: list[PinnedFile] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        table = f"input#{i}"
        label = f"[[input]] #{i + 1}"
        if not isinstance(item, dict):
            raise where.error(None, "input", "'input' must be an array of tables: write [[input]]")
        for key in item:
            if key not in _INPUT_KEYS:
                raise where.error(table, key, f"unknown key '{key}' in {label}")
        for key in ("url", "sha256"):
            if key not in item:
                raise where.error(table, None, f"missing key '{key}' in {label}")
        url = get(table, item, "url", _url, None)
        sha = get(table, item, "sha256", _sha256_hex, None)
        name = get(table, item, "name", _file_name, None)
        if name is None:
            try:
                name = _file_name(_url_basename(url))
            except (TypeError, ValueError) as e:
                raise where.error(
                    table, "url", f'{label}: cannot name the file after {url!r} ({e}): add name = "…"'
                ) from None
        if name in names:
            raise where.error(
                table, "name" if "name" in item else "url", f"{label}: a second input named {name!r}"
            )
        names.add(name)
        out.append(PinnedFile(url=url, sha256=sha, name=name))
    return tuple(out)


def _label(table: str) -> str:
    """ "build" -> "[build]"; "input#2" -> "[[input]] #3"."""
    name, sep, index = table.partition("#")
    return f"[[{name}]] #{int(index) + 1}" if sep else f"[{table}]"


_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _url(v: object) -> str:
    from urllib.parse import urlsplit

    text = _nonempty_str(v)
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError("a URL must not contain spaces or control characters")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def _url_basename(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])


def _sha256_hex(v: object) -> bytes:
    text = _nonempty_str(v)
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    if not _HEX64.match(text):
        raise ValueError("expected 64 hex digits")
    return bytes.fromhex(text)


def _file_name(v: object) -> str:
    text = _nonempty_str(v)
    if "/" in text or "\x00" in text or text in (".", "..") or len(text.encode()) > 255:
        raise ValueError(f"{text!r} is not a plain file name")
    if any(ord(c) < 32 for c in text):
        raise ValueError("a file name must not contain control characters")
    return text


def _lockfiles(v: object) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise TypeError("expected a list of paths relative to the project directory")
    for x in v:
        parts = x.split("/")
        if x.startswith("/") or "\x00" in x or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{x!r} is not a plain relative path")
    return tuple(sorted(set(v), key=str.encode))


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


# ---------------------------------------------------------------- limits, in recipe terms
#
# One check for every consumer (`p2pci try`, `p2pci publish`, its `--timeout`):
# the bounds are those of an offer (`core.messages.Limits.from_obj`), said with
# the recipe's keys and units, so that nothing the recipe accepts is refused
# later by the protocol layer, and a huge integer is an error, not a traceback.


@dataclass(frozen=True)
class LimitBound:
    key: str  # the recipe key under [build]
    field: str  # the core Limits field
    lo: int
    hi: int
    unit: Literal["duration", "size", "count"]
    worker_max: str | None  # the [worker] setting of config.toml that caps it, if any


def _bounds() -> tuple[LimitBound, ...]:
    from p2pci.core.messages import MAX_TIMEOUT_S

    return (
        LimitBound("timeout", "timeout_s", 1, MAX_TIMEOUT_S, "duration", "max_timeout_s"),
        LimitBound("memory", "memory_mb", 16, 1 << 24, "size", "max_memory_mb"),
        LimitBound("cpus", "cpus", 1, 256, "count", "max_cpus"),
        LimitBound("pids", "pids", 16, 1 << 22, "count", None),
        LimitBound("out", "out_mb", 1, 1 << 24, "size", "max_out_mb"),
    )


def limit_bound(key: str) -> LimitBound:
    for b in _bounds():
        if b.key == key:
            return b
    raise KeyError(key)


def format_duration(seconds: int) -> str:
    """600 -> "10m", 604800 -> "7d", 90 -> "90s" (the largest unit that divides it; `parse_duration`
    reads each back: messages speak the recipe's syntax)."""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def format_size_mb(mb: int) -> str:
    """1024 -> "1g", 512 -> "512m", 1 << 20 -> "1t"."""
    for unit, n in (("t", 1 << 20), ("g", 1 << 10)):
        if mb >= n and mb % n == 0:
            return f"{mb // n}{unit}"
    return f"{mb}m"


def format_limit(bound: LimitBound, value: int) -> str:
    if bound.unit == "duration":
        return format_duration(value)
    if bound.unit == "size":
        return format_size_mb(value)
    return str(value)


class LimitError(ValueError):
    """A limit outside what an offer may ask, phrased with the recipe's key and units."""


def check_limit(key: str, value: int) -> int:
    """`value` (seconds, MiB or a count) if it is within what an offer may ask; else ValueError
    in recipe terms: `timeout 30000000s is too long: at most 7d`."""
    b = limit_bound(key)
    if value < b.lo:
        raise LimitError(f"{key} {_shown(b, value)} is too small: at least {format_limit(b, b.lo)}")
    if value > b.hi:
        word = {"duration": "too long", "size": "too large", "count": "too many"}[b.unit]
        raise LimitError(f"{key} {_shown(b, value)} is {word}: at most {format_limit(b, b.hi)}")
    return value


def _shown(b: LimitBound, value: int) -> str:
    if value.bit_length() > 128:  # a pasted huge integer: do not echo hundreds of digits
        return f"of about 2^{value.bit_length() - 1}"
    return format_limit(b, value)


def limit_parser(key: str) -> Callable[[object], int]:
    """The converter of one [build] limit key: parse it in its unit, then check its range."""
    b = limit_bound(key)

    def conv(v: object) -> int:
        if b.unit == "duration":
            n = parse_duration(v)
        elif b.unit == "size":
            n = parse_size_mb(v)
        else:
            n = _int_range(v, -(1 << 63), 1 << 63)
        return check_limit(key, n)

    return conv


def check_limits(limits: Any) -> None:
    """Every field of `limits` (a core Limits) in range; LocalError otherwise."""
    for b in _bounds():
        try:
            check_limit(b.key, int(getattr(limits, b.field)))
        except ValueError as e:
            raise LocalError(f"{RECIPE_FILE}: [build] {e}") from None


def default_worker_warnings(limits: Any) -> list[str]:
    """What a worker with the default `[worker]` policy would refuse, one sentence each.

    `p2pci publish` and `p2pci try` print these as warnings: such an offer is only
    built by donors who raised their caps, and may expire for lack of workers.
    """
    from p2pci.core.worker import WorkerPolicy

    w = WorkerPolicy()  # the default [worker] policy (config.WorkerSettings takes its defaults from it)
    out = []
    for b in _bounds():
        if b.worker_max is None:
            continue
        value, cap = int(getattr(limits, b.field)), int(getattr(w, b.worker_max))
        if value > cap:
            out.append(
                f"{b.key} {format_limit(b, value)} is above the {format_limit(b, cap)} that workers accept "
                f"by default ([worker] {b.worker_max} = {cap}): only donors who raised it will build "
                "this, and the job may expire unbuilt"
            )
    return out
