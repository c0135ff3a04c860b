"""The fetch phase: a recipe's pinned inputs, made once on the publisher's machine.

`prepare_inputs(recipe, source_tar)` gives the tarball a build gets at
/build/inputs, or None when the recipe has neither `[fetch]` nor `[[input]]`:

1. every `[[input]]` file is downloaded (on the host) and its SHA-256
   checked; a mismatch stops with an error naming the URL and both hashes,
   before anything else runs (so before anything is offered);
2. the `[fetch]` command runs once in a container of its image (default: the
   build image) WITH network: host networking, the host's CA bundle mounted
   (SSL_CERT_FILE, PIP_CERT, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE point at
   it), the host's proxy variables passed on, the same source as the build
   read-only at /build/src (the working directory), HOME=/tmp on a tmpfs, a
   read-only root, no capabilities; it writes what the build needs into
   /inputs;
3. /inputs plus the `[[input]]` files are packed into one deterministic
   tarball (`p2pci.runner.inputs.pack_dir`: sorted, mtime 0, owner 0);
4. the tarball is cached under a key that hashes the `[fetch]` table, the
   fetch image ID, the `[[input]]` list and the lockfiles' contents (the
   recipe's `lockfiles`, else the well-known ones at the top of the source).
   Same key: the cached tarball is used (after its SHA-256 is checked again)
   and the result says so.

The fetch need not be reproducible: the SHA-256 of the tarball is what the
offer pins, and every worker checks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pci.core.errors import BuildError, LocalError
from p2pci.recipe import WELL_KNOWN_LOCKFILES, FetchStep, PinnedFile, Recipe
from p2pci.runner.base import BUILD_USER, SOURCE_DIR
from p2pci.runner.inputs import MAX_INPUT_BYTES, file_sha256, pack_dir
from p2pci.runner.source import unpack_source

Progress = Callable[[str], None]

FETCH_OUT = "/inputs"  # where the fetch command writes (the build sees it at /build/inputs)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_ENV = ("SSL_CERT_FILE", "PIP_CERT", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXY_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
MAX_DOWNLOAD = 4 << 30  # one [[input]] file
MAX_LOCKFILE = 64 << 20
CACHE_KEEP = 16  # cached tarballs kept (least recently used ones go)
LABEL_FETCH = "p2pci.fetch"
_KEY_VERSION = 1
_LINE_CAP = 2000


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PreparedInputs:
    """A pinned inputs tarball. `path` stays valid until the cache entry is pruned (copy it)."""

    path: Path
    sha256: bytes
    size: int
    files: int
    cached: bool  # True: taken from the cache, the fetch did not run
    key: bytes  # the cache key (recipe + lockfiles + image)


def default_cache_dir() -> Path:
    """$P2PCI_CACHE_DIR, else $XDG_CACHE_HOME/p2pci, else ~/.cache/p2pci."""
    env = os.environ.get("P2PCI_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "p2pci"


# ---------------------------------------------------------------- the cache key


def lockfile_hashes(recipe: Recipe, source_tar: Path) -> dict[str, str | None]:
    """path -> sha256 hex of the lockfiles inside the packed source (None: absent).

    Read from the tarball, so they come from the tree that is built (a commit, not
    the working copy). Explicit `lockfiles` must exist; the well-known ones may not.
    """
    explicit = recipe.fetch.lockfiles if recipe.fetch is not None else None
    wanted = set(explicit) if explicit is not None else set(WELL_KNOWN_LOCKFILES)
    found: dict[str, str | None] = {}
    try:
        with tarfile.open(source_tar, "r:") as tar:
            for m in tar:
                name = m.name.rstrip("/")
                if name in wanted and m.isreg():
                    if m.size > MAX_LOCKFILE:
                        raise LocalError(f"lockfile {name} is larger than {MAX_LOCKFILE >> 20} MiB")
                    fh = tar.extractfile(m)
                    assert fh is not None
                    with fh:
                        found[name] = hashlib.sha256(fh.read()).hexdigest()
    except (tarfile.TarError, EOFError, ValueError, OverflowError) as e:
        raise LocalError(f"cannot read the packed source: {e}") from None
    if explicit is not None:
        missing = [p for p in explicit if p not in found]
        if missing:
            raise LocalError(f"[fetch] lockfiles: {', '.join(missing)} not in the source that is built")
    return dict(sorted(found.items()))


def inputs_key(recipe: Recipe, fetch_image_id: str | None, lockfiles: dict[str, str | None]) -> bytes:
    """SHA-256 of everything that decides what the fetch gives, in canonical JSON."""
    step = recipe.fetch
    obj: dict[str, Any] = {
        "v": _KEY_VERSION,
        "fetch": None
        if step is None
        else {
            "command": list(step.command),
            "env": [list(kv) for kv in step.env],
            "image": fetch_image_id,
        },
        "inputs": [[p.url, p.sha256.hex(), p.name] for p in recipe.inputs],
        "lockfiles": lockfiles,
    }
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).digest()


# ---------------------------------------------------------------- [[input]] downloads


def download(pin: PinnedFile, dest_dir: Path, *, timeout: float = 120, max_bytes: int = MAX_DOWNLOAD) -> Path:
    """Download one `[[input]]` into `dest_dir/name`, checking its SHA-256. LocalError otherwise."""
    dest = dest_dir / pin.name
    tmp = dest_dir / f".{pin.name}.part"
    h = hashlib.sha256()
    size = 0
    req = urllib.request.Request(pin.url, headers={"User-Agent": "p2pci-fetch"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as out:  # noqa: S310 - http(s) only, checked by the recipe
            while chunk := r.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise LocalError(f"[[input]] {pin.url}: larger than {max_bytes >> 20} MiB: stopped")
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise LocalError(f"[[input]] {pin.url}: download failed: {reason}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if h.digest() != pin.sha256:
        tmp.unlink(missing_ok=True)
        raise LocalError(
            f"[[input]] {pin.url}: sha256 mismatch: the recipe pins {pin.sha256.hex()}, "
            f"the download ({size} bytes) has {h.hexdigest()}; stopped, nothing was offered"
        )
    os.replace(tmp, dest)
    os.chmod(dest, 0o644)
    return dest


# ---------------------------------------------------------------- the fetch container


def fetch_env(step: FetchStep) -> dict[str, str]:
    """The fetch command's environment: fixed basics, CA bundle, the host's proxies, the recipe's env."""
    env = {"HOME": "/tmp", "TZ": "UTC", "LANG": "C.UTF-8"}
    if Path(CA_BUNDLE).is_file():
        env.update({k: CA_BUNDLE for k in CA_ENV})
    for k in PROXY_ENV:
        if os.environ.get(k):
            env[k] = os.environ[k]
    env.update(dict(step.env))
    return env


def _printable(line: bytes) -> str:
    text = line[:_LINE_CAP].decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in text)


def run_fetch(
    step: FetchStep, image_id: str, src_dir: Path, out_dir: Path, *, progress: Progress = _stderr
) -> None:
    """Run the fetch command once, with network, writing into `out_dir` (at /inputs).

    Its output goes to `progress` line by line (prefixed "fetch| "). A non-zero
    exit or the timeout is a LocalError with the last lines.
    """
    import docker
    import requests
    from docker.types import LogConfig, Mount

    from p2pci.runner.dockerutil import LABEL, LABEL_RUN, client

    dc = client()
    uid = os.getuid()
    if uid == 0:  # run as nobody; root on the host can still read and remove what it writes
        user = BUILD_USER
        os.chmod(out_dir, 0o777)
    else:  # run as the caller, so that the files are the caller's
        user = f"{uid}:{os.getgid()}"
    mounts = [
        Mount(target=SOURCE_DIR, source=str(src_dir), type="bind", read_only=True),
        Mount(target=FETCH_OUT, source=str(out_dir), type="bind"),
    ]
    if Path(CA_BUNDLE).is_file():
        mounts.append(Mount(target=CA_BUNDLE, source=CA_BUNDLE, type="bind", read_only=True))
    try:
        container = dc.containers.create(
            image=image_id,
            command=list(step.command),
            user=user,
            network_mode="host",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=4g,mode=1777"},
            working_dir=SOURCE_DIR,
            environment=[f"{k}={v}" for k, v in sorted(fetch_env(step).items())],
            mounts=mounts,
            pids_limit=4096,
            mem_limit="4g",
            labels={LABEL: "1", LABEL_RUN: uuid.uuid4().hex, LABEL_FETCH: "1"},
            log_config=LogConfig(type="none"),
            detach=True,
        )
    except docker.errors.ImageNotFound:
        raise LocalError(f"fetch image {image_id} is not present") from None
    except docker.errors.APIError as e:
        raise LocalError(f"cannot create the fetch container: {e.explanation or e}") from None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            container.kill()
        except docker.errors.APIError:
            pass

    timer = threading.Timer(step.timeout_s, kill)
    tail: list[str] = []
    try:
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=False)
        container.start()
        timer.start()
        pending = b""
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = _printable(raw.rstrip(b"\r"))
                tail = (tail + [line])[-30:]
                progress(f"  fetch| {line}")
            if len(pending) > _LINE_CAP:
                progress(f"  fetch| {_printable(pending)}")
                pending = b""
        if pending:
            progress(f"  fetch| {_printable(pending)}")
        code = int(container.wait(timeout=step.timeout_s + 60).get("StatusCode", -1))
    except docker.errors.APIError as e:
        raise LocalError(f"the fetch container failed: {e.explanation or e}") from None
    except requests.exceptions.RequestException as e:  # the engine stopped answering
        raise LocalError(f"lost track of the fetch container: {e}") from None
    finally:
        timer.cancel()
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass
    if timed_out.is_set():
        raise LocalError(f"[fetch] took longer than its {step.timeout_s} s timeout: stopped")
    if code != 0:
        shown = "\n".join("  | " + ln for ln in tail[-15:])
        raise LocalError(f"[fetch] command exited {code}; its output ends:\n{shown}")


# ---------------------------------------------------------------- the whole phase


def prepare_inputs(
    recipe: Recipe,
    source_tar: Path,
    *,
    cache_dir: Path | None = None,
    refresh: bool = False,
    progress: Progress = _stderr,
    resolve: Callable[..., str] | None = None,
) -> PreparedInputs | None:
    """The recipe's pinned inputs for `source_tar` (the packed source that is built).

    None when the recipe has no `[fetch]` and no `[[input]]`. Raises LocalError
    (a wrong `[[input]]` SHA-256, a failing fetch, …) before anything is offered.
    `refresh` ignores (and replaces) a cached result.
    """
    if not recipe.has_inputs:
        return None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    store = cache / "inputs"
    (store / "tmp").mkdir(parents=True, exist_ok=True)
    image_id: str | None = None
    if recipe.fetch is not None:
        if resolve is None:
            from p2pci.runner.images import resolve_image

            resolve = resolve_image
        image_id = resolve(recipe.fetch.image or recipe.image, progress=progress)
    key = inputs_key(recipe, image_id, lockfile_hashes(recipe, source_tar))
    tar_path = store / f"{key.hex()}.tar"
    meta_path = store / f"{key.hex()}.json"
    if not refresh:
        hit = _cached(tar_path, meta_path, key)
        if hit is not None:
            progress(
                f"inputs: from the cache (the fetch recipe, its image and the lockfiles are unchanged): "
                f"sha256 {hit.sha256.hex()}, {hit.files} files, {hit.size} bytes"
            )
            return hit
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=store / "tmp") as tmp:
        out = Path(tmp) / "inputs"
        out.mkdir()
        pinned = Path(tmp) / "pinned"
        pinned.mkdir()
        for pin in recipe.inputs:  # first: a wrong pin stops before the (long) fetch
            progress(f"inputs: downloading {pin.url}")
            download(pin, pinned)
        if recipe.fetch is not None:
            assert image_id is not None
            src = Path(tmp) / "src"
            try:
                unpack_source(source_tar, src, max_bytes=MAX_INPUT_BYTES)  # our own source: no worker cap
            except BuildError as e:
                raise LocalError(f"cannot unpack the source for the fetch: {e}") from None
            progress(
                f"inputs: running [fetch] in {image_id[:19]}… with network: {' '.join(recipe.fetch.command)}"
            )
            run_fetch(recipe.fetch, image_id, src, out, progress=progress)
        for pin in recipe.inputs:
            if os.path.lexists(out / pin.name):
                raise LocalError(f"[[input]] {pin.name}: the [fetch] command also wrote /inputs/{pin.name}")
            os.replace(pinned / pin.name, out / pin.name)
        part = Path(tmp) / "inputs.tar"
        sha, size, files = pack_dir(out, part)
        if files == 0:
            progress("inputs: warning: the fetch wrote no files into /inputs")
        # The metadata first: a tarball without it is pruned, metadata without a tarball is a miss.
        meta_path.write_text(json.dumps({"sha256": sha.hex(), "size": size, "files": files}))
        os.replace(part, tar_path)
    _prune(store)
    progress(
        f"inputs: fetched in {time.monotonic() - t0:.1f} s: sha256 {sha.hex()}, {files} files, {size} bytes "
        f"(cached as {key.hex()[:12]}…)"
    )
    return PreparedInputs(tar_path, sha, size, files, cached=False, key=key)


def _cached(tar_path: Path, meta_path: Path, key: bytes) -> PreparedInputs | None:
    try:
        meta = json.loads(meta_path.read_text())
        sha = bytes.fromhex(meta["sha256"])
        size, files = int(meta["size"]), int(meta["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        actual = file_sha256(tar_path)
    except OSError:
        return None
    if actual != (sha, size):  # damaged on disk: fetch again
        tar_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None
    os.utime(meta_path)  # recently used
    return PreparedInputs(tar_path, sha, size, files, cached=True, key=key)


def _prune(store: Path, keep: int = CACHE_KEEP) -> None:
    metas = sorted(store.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for meta in metas[keep:]:
        meta.unlink(missing_ok=True)
        meta.with_suffix(".tar").unlink(missing_ok=True)
    for tar in store.glob("*.tar"):
        if not tar.with_suffix(".json").exists():
            tar.unlink(missing_ok=True)
