"""Deterministic base images built offline, and image archives (docs/protocol.md section 9).

A rootfs is turned into a `docker load` archive whose bytes depend only on
the rootfs content: the layer tar is normalised (sorted names, one fixed
mtime, numeric owners only, no device nodes, hard links pointing at the
first name in sorted order), the image config is canonical JSON with a fixed
creation time. Docker's image ID is the sha256 of that config, so the same
rootfs gives the same image ID on every machine.

* `build_busybox()`: `/bin/busybox` of Debian's busybox-static package plus
  its applet links, `/etc/passwd` with root and nobody, `/tmp`, `/out`,
  `/build/src`.
* `build_debian(suite, include)`: `mmdebstrap --variant=minbase` (debootstrap
  when mmdebstrap is missing) with SOURCE_DATE_EPOCH set. Same mirror state
  and same packages give the same ID.
* `export_image` (docker save), `import_image(archive, expect)` (the config
  digest is checked *before* loading, tags in the archive are stripped, and
  the loaded ID is checked again after), `ensure_image`, `resolve_image`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from p2pci.core.errors import BuildError, LocalError
from p2pci.runner.dockerutil import LABEL_IMAGE, LABEL_RECIPE, client

IMAGE_EPOCH = (
    1704067200  # 2024-01-01T00:00:00Z: every mtime in our rootfs, and SOURCE_DATE_EPOCH for mmdebstrap
)
CREATED = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_ID = re.compile(r"^sha256:[0-9a-f]{64}$")

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BuiltImage:
    id: str  # "sha256:<64 hex>"
    recipe: str  # "busybox" | "debian:bookworm+build-essential"
    tag: str
    seconds: float


# ---------------------------------------------------------------- layer normalisation


@dataclass
class _Node:
    info: tarfile.TarInfo
    data: Callable[[], IO[bytes]] | None = None  # for regular files


def _normal_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise LocalError(f"unsafe name in rootfs: {name!r}")
    return "/".join(parts)


def write_layer(nodes: Iterable[_Node], out: IO[bytes], *, mtime: int = IMAGE_EPOCH) -> None:
    """Write a normalised layer tar: sorted, fixed mtime, numeric owners, no devices."""
    by_name: dict[str, _Node] = {}
    for n in nodes:
        name = _normal_name(n.info.name)
        if not name or n.info.ischr() or n.info.isblk():
            continue
        n.info.name = name
        by_name[name] = n
    # Hard link groups: the first name in sorted order holds the data.
    groups: dict[str, list[str]] = {}
    for name, n in by_name.items():
        if n.info.islnk():
            target = _normal_name(n.info.linkname)
            while target in by_name and by_name[target].info.islnk():
                target = _normal_name(by_name[target].info.linkname)
            if target not in by_name:
                raise LocalError(f"hard link {name!r} points at a missing file {target!r}")
            groups.setdefault(target, []).append(name)
    holder_of: dict[str, str] = {}
    for target, links in groups.items():
        members = sorted([target, *links], key=str.encode)
        for m in members:
            holder_of[m] = members[0]
        if members[0] != target:  # move the data to the first name
            first = by_name[members[0]]
            src = by_name[target]
            first.info = _copy_info(src.info, members[0])
            first.data = src.data
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
        for name in sorted(by_name, key=str.encode):
            n = by_name[name]
            ti = _copy_info(n.info, name)
            ti.mtime = mtime
            ti.uname = ti.gname = ""
            ti.pax_headers = {}
            holder = holder_of.get(name)
            if holder is not None and holder != name:
                ti.type = tarfile.LNKTYPE
                ti.linkname = holder
                ti.size = 0
                tar.addfile(ti)
            elif ti.isreg() or (holder == name):
                ti.type = tarfile.REGTYPE
                assert n.data is not None, name
                with n.data() as fh:
                    tar.addfile(ti, fh)
            else:
                ti.size = 0
                tar.addfile(ti)


def _copy_info(src: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid = src.type, src.mode, src.uid, src.gid
    ti.size, ti.linkname = src.size, src.linkname
    return ti


def _bytes_node(name: str, data: bytes, mode: int = 0o644) -> _Node:
    ti = tarfile.TarInfo(name)
    ti.mode, ti.size = mode, len(data)
    return _Node(ti, lambda: io.BytesIO(data))


def _dir_node(name: str, mode: int = 0o755) -> _Node:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, mode
    return _Node(ti)


def _symlink_node(name: str, target: str) -> _Node:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.linkname = tarfile.SYMTYPE, 0o777, target
    return _Node(ti)


def _file_node(name: str, path: Path, mode: int) -> _Node:
    ti = tarfile.TarInfo(name)
    ti.mode, ti.size = mode, path.stat().st_size
    return _Node(ti, lambda: open(path, "rb"))


def _tar_nodes(tar: tarfile.TarFile) -> list[_Node]:
    nodes = []
    for m in tar.getmembers():
        if m.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
            continue
        if m.isreg():
            nodes.append(_Node(m, _extractor(tar, m)))
        elif m.isdir() or m.issym() or m.islnk() or m.isfifo():
            nodes.append(_Node(m))
    return nodes


def _extractor(tar: tarfile.TarFile, m: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        fh = tar.extractfile(m)
        assert fh is not None
        return fh

    return open_member


# ---------------------------------------------------------------- docker load archive


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_image_archive(layer: Path, out: Path, *, labels: dict[str, str], tag: str | None) -> str:
    """Wrap a layer tar into a `docker load` archive; returns the image ID."""
    h = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    config = {
        "architecture": _architecture(),
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": [PATH_ENV],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": dict(sorted(labels.items())),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "p2pci image build " + labels.get(LABEL_RECIPE, "")}],
    }
    config_bytes = _canonical_json(config)
    image_hex = hashlib.sha256(config_bytes).hexdigest()
    layer_dir = h.hexdigest()
    manifest = [
        {
            "Config": f"{image_hex}.json",
            "RepoTags": [tag] if tag else None,
            "Layers": [f"{layer_dir}/layer.tar"],
        }
    ]
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes | None = None, path: Path | None = None) -> None:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.mode = 0o644
            if data is not None:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            elif path is not None:
                ti.size = path.stat().st_size
                with open(path, "rb") as fh:
                    tar.addfile(ti, fh)
            else:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)

        add(f"{image_hex}.json", config_bytes)
        add(layer_dir)
        add(f"{layer_dir}/VERSION", b"1.0")
        add(f"{layer_dir}/layer.tar", path=layer)
        add("manifest.json", _canonical_json(manifest))
    return "sha256:" + image_hex


def _load(archive: Path) -> None:
    api = client().api
    with open(archive, "rb") as f:
        for msg in api.load_image(f):
            if isinstance(msg, dict) and msg.get("error"):
                raise LocalError(f"docker load failed: {msg['error']}")


def image_exists(image_id: str) -> bool:
    import docker

    try:
        client().images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def _tag(image_id: str, tag: str) -> None:
    repo, _, t = tag.rpartition(":")
    client().images.get(image_id).tag(repo, t)


def _finish(layer: Path, tmp: Path, labels: dict[str, str], tag: str, archive_out: Path | None) -> str:
    archive = archive_out or tmp / "image.tar"
    image_id = write_image_archive(layer, archive, labels=labels, tag=tag)
    if image_exists(image_id):
        _tag(image_id, tag)
    else:
        _load(archive)
        if not image_exists(image_id):
            raise LocalError(f"docker load did not produce the expected image {image_id}")
    return image_id


# ---------------------------------------------------------------- busybox


def _busybox_binary() -> tuple[Path, str]:
    """The busybox-static binary and its package version."""
    try:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "busybox-static"],
            capture_output=True,
            text=True,
            check=False,
        )
        version = r.stdout.strip() if r.returncode == 0 else ""
    except FileNotFoundError:
        version = ""
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(cand)
        if p.is_file() and version:
            return p, version
    raise LocalError("busybox-static is not installed: apt-get install busybox-static")


def busybox_layer(out: IO[bytes]) -> dict[str, str]:
    """Write the busybox rootfs layer; returns the image labels."""
    binary, version = _busybox_binary()
    applets = subprocess.run(
        [str(binary), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    nodes: dict[str, _Node] = {}

    def add(n: _Node) -> None:
        nodes[n.info.name] = n

    for d in (
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "build",
        "build/src",
        "out",
        "home",
        "var",
    ):
        add(_dir_node(d, 0o700 if d == "root" else 0o755))
    add(_dir_node("tmp", 0o1777))
    add(_file_node("bin/busybox", binary, 0o755))
    for a in applets:
        a = _normal_name(a)
        if a and a != "bin/busybox":
            add(_symlink_node(a, "/bin/busybox"))
    add(
        _bytes_node(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
    )
    add(_bytes_node("etc/group", b"root:x:0:\nnogroup:x:65534:\n"))
    add(_bytes_node("etc/hostname", b"p2pci-build\n"))
    write_layer(nodes.values(), out)
    return {LABEL_IMAGE: "busybox", LABEL_RECIPE: "busybox", "org.p2pci.source": f"busybox-static {version}"}


def build_busybox(
    *,
    archive_out: Path | None = None,
    extra_labels: dict[str, str] | None = None,
    tag: str = "p2pci/busybox:latest",
    progress: Progress | None = None,
) -> str:
    """Build the busybox image (loading it only when absent); returns its ID.

    `extra_labels` and `tag` make a distinct variant (tests use one, so that
    they can remove it without disturbing the shared image). `progress` gets
    one line per stage (layer written, loading into Docker).
    """
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="p2pci-img-") as tmp:
        layer = Path(tmp) / "layer.tar"
        with open(layer, "wb") as f:
            labels = busybox_layer(f)
        labels.update(extra_labels or {})
        say(f"p2pci: busybox layer written ({layer.stat().st_size} bytes); loading the image into docker")
        return _finish(layer, Path(tmp), labels, tag, archive_out)


# ---------------------------------------------------------------- debian


def debian_recipe(suite: str, include: Iterable[str]) -> str:
    pkgs = sorted({p.strip() for p in include if p.strip()})
    for p in pkgs:
        if not re.match(r"^[a-z0-9][a-z0-9+.-]+$", p):
            raise LocalError(f"bad package name: {p!r}")
    if not re.match(r"^[a-z][a-z0-9-]*$", suite):
        raise LocalError(f"bad suite: {suite!r}")
    return f"debian:{suite}" + ("+" + ",".join(pkgs) if pkgs else "")


def _debian_tag(recipe: str) -> str:
    suite = recipe.split(":", 1)[1].split("+", 1)[0]
    return f"p2pci/debian:{suite}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def build_debian(
    suite: str = DEFAULT_SUITE,
    include: Iterable[str] = (),
    *,
    mirror: str = DEFAULT_MIRROR,
    archive_out: Path | None = None,
    progress: Progress = _stderr,
) -> str:
    """mmdebstrap minbase + packages, normalised; returns the image ID."""
    recipe = debian_recipe(suite, include)
    pkgs = recipe.partition("+")[2]
    with tempfile.TemporaryDirectory(prefix="p2pci-img-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(IMAGE_EPOCH), "LC_ALL": "C.UTF-8"}
        if shutil.which("mmdebstrap"):
            cmd = ["mmdebstrap", "--variant=minbase", "--format=tar"]
            if pkgs:
                cmd.append("--include=" + pkgs)
            cmd += [suite, str(rootfs), mirror]
        elif shutil.which("debootstrap"):
            return _build_debootstrap(suite, pkgs, mirror, Path(tmp), env, recipe, archive_out, progress)
        else:
            raise LocalError("neither mmdebstrap nor debootstrap is installed: apt-get install mmdebstrap")
        progress(f"p2pci: building {recipe} with {' '.join(cmd)}")
        _run_logged(cmd, env, progress)
        progress("p2pci: normalising the rootfs")
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(rootfs, "r:") as src, open(layer, "wb") as f:
            write_layer(_tar_nodes(src), f)
        rootfs.unlink()
        labels = {LABEL_IMAGE: "debian", LABEL_RECIPE: recipe, "org.p2pci.source": mirror}
        progress("p2pci: loading the image into docker")
        return _finish(layer, Path(tmp), labels, _debian_tag(recipe), archive_out)


def _run_logged(cmd: list[str], env: dict[str, str], progress: Progress) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if line.startswith(("I:", "E:", "W:")):
            progress("  " + line)
    if proc.wait() != 0:
        raise LocalError(f"{cmd[0]} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def _build_debootstrap(
    suite: str,
    pkgs: str,
    mirror: str,
    tmp: Path,
    env: dict[str, str],
    recipe: str,
    archive_out: Path | None,
    progress: Progress,
) -> str:
    target = tmp / "root"
    cmd = ["debootstrap", "--variant=minbase"]
    if pkgs:
        cmd.append("--include=" + pkgs)
    cmd += [suite, str(target), mirror]
    progress(f"p2pci: building {recipe} with {' '.join(cmd)}")
    _run_logged(cmd, env, progress)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
        p = target / junk
        if p.is_dir():
            for child in p.iterdir():
                if child.is_file():
                    child.unlink()
    layer = tmp / "layer.tar"
    rootfs = tmp / "rootfs.tar"
    subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(rootfs), "."], check=True)
    with tarfile.open(rootfs, "r:") as src, open(layer, "wb") as f:
        write_layer(_tar_nodes(src), f)
    labels = {LABEL_IMAGE: "debian", LABEL_RECIPE: recipe, "org.p2pci.source": mirror}
    return _finish(layer, tmp, labels, _debian_tag(recipe), archive_out)


# ---------------------------------------------------------------- lookup, export, import


def find_image(recipe: str) -> str | None:
    """The ID of an image already built for this recipe (the tagged one first)."""
    imgs = client().images.list(filters={"label": f"{LABEL_RECIPE}={recipe}"})
    if not imgs:
        return None
    imgs.sort(key=lambda i: (not i.tags, i.id))
    image_id: str = imgs[0].id
    return image_id


def resolve_image(name: str, *, progress: Progress = _stderr) -> str:
    """Image ID for a recipe's image name, building busybox/debian on demand."""
    if _ID.match(name):
        if not image_exists(name):
            raise LocalError(f"image {name} is not present locally (import it with `p2pci image import`)")
        return name
    if name == "busybox":
        found = find_image("busybox")
        if found:
            return found
        progress("p2pci: building the busybox image")
        t0 = time.monotonic()
        image_id = build_busybox(progress=progress)
        progress(f"p2pci: built busybox in {time.monotonic() - t0:.0f} s: {image_id}")
        return image_id
    m = re.match(r"^debian:([a-z][a-z0-9-]*)(?:\+(.*))?$", name)
    if m:
        recipe = debian_recipe(m.group(1), (m.group(2) or "").split(","))
        found = find_image(recipe)
        if found:
            return found
        t0 = time.monotonic()
        image_id = build_debian(m.group(1), (m.group(2) or "").split(","), progress=progress)
        progress(f"p2pci: built {recipe} in {time.monotonic() - t0:.0f} s: {image_id}")
        return image_id
    raise LocalError(f"unknown image {name!r}")


def image_recipe(name: str) -> str | None:
    """The recipe that makes the image a recipe names ("busybox", "debian:bookworm+make"), for an
    offer's provenance; an image ID: the recipe label of that image if it is here, else None."""
    if name == "busybox":
        return "busybox"
    m = re.match(r"^debian:([a-z][a-z0-9-]*)(?:\+(.*))?$", name)
    if m:
        return debian_recipe(m.group(1), (m.group(2) or "").split(","))
    if _ID.match(name):
        try:
            labels = client().images.get(name).labels or {}
        except Exception:  # no Docker, or no such image: the recipe is simply not stated
            return None
        recipe = labels.get(LABEL_RECIPE)
        return recipe if isinstance(recipe, str) and recipe else None
    return None


def ensure_image(image_id: str, archive_path: Path | None = None) -> None:
    """Make sure `image_id` is loaded: it is there, or it is imported from the archive."""
    if not _ID.match(image_id):
        raise LocalError(f"bad image ID {image_id!r}")
    if image_exists(image_id):
        return
    if archive_path is None:
        raise BuildError(f"image {image_id} is not present and no archive was given")
    import_image(archive_path, expect=image_id)


def export_image(image_id: str, dest: Path, *, progress: Callable[[int], None] | None = None) -> tuple[bytes, int]:
    """`docker save` of one image by ID (no tags) into `dest`; returns (sha256, size).

    `progress(bytes_so_far)` is called about once a second while it streams."""
    import docker

    try:
        img = client().images.get(image_id)
    except docker.errors.ImageNotFound:
        raise LocalError(f"no such image: {image_id}") from None
    h = hashlib.sha256()
    size = 0
    last = time.monotonic()
    with open(dest, "wb") as f:
        for chunk in client().api.get_image(img.id):
            f.write(chunk)
            h.update(chunk)
            size += len(chunk)
            if progress is not None and time.monotonic() - last >= 1.0:
                last = time.monotonic()
                progress(size)
    return h.digest(), size


def archive_image_id(archive: Path) -> str:
    """The image ID an archive would load, from its manifest and config (nothing loaded)."""
    try:
        with tarfile.open(archive, "r:") as tar:
            manifest = _read_member(tar, "manifest.json", 1 << 20)
            entries = json.loads(manifest)
            if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
                raise LocalError("image archive must hold exactly one image")
            config_name = entries[0].get("Config")
            if not isinstance(config_name, str):
                raise LocalError("image archive manifest has no Config")
            config = _read_member(tar, config_name, 8 << 20)
    except (tarfile.TarError, OSError, ValueError, OverflowError, EOFError) as e:
        raise LocalError(f"bad image archive {archive}: {e}") from None
    return "sha256:" + hashlib.sha256(config).hexdigest()


def _read_member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    try:
        m = tar.getmember(name)
    except KeyError:
        raise LocalError(f"image archive has no {name}") from None
    if not m.isreg() or m.size > limit:
        raise LocalError(f"bad {name} in image archive")
    fh = tar.extractfile(m)
    assert fh is not None
    return fh.read()


def _untagged_copy(archive: Path, out: Path) -> None:
    """Copy of the archive without tags (a hostile archive must not retag our images)."""
    with tarfile.open(archive, "r:") as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for m in src.getmembers():
            if m.name in ("repositories",):
                continue
            if m.name == "manifest.json":
                entries = json.loads(_read_member(src, "manifest.json", 1 << 20))
                for e in entries:
                    e["RepoTags"] = None
                data = json.dumps(entries).encode()
                ti = tarfile.TarInfo("manifest.json")
                ti.size = len(data)
                dst.addfile(ti, io.BytesIO(data))
            elif m.isreg():
                dst.addfile(m, src.extractfile(m))
            elif m.isdir():
                dst.addfile(m)
            else:
                raise LocalError(f"unexpected entry {m.name!r} in image archive")


def import_image(archive: Path, *, expect: str) -> str:
    """`docker load` an archive after checking it holds exactly the image `expect`."""
    if not _ID.match(expect):
        raise LocalError(f"bad image ID {expect!r} (expected sha256:<64 hex>)")
    actual = archive_image_id(archive)
    if actual != expect:
        raise LocalError(f"image archive holds {actual}, expected {expect}")
    if image_exists(expect):
        return expect
    with tempfile.TemporaryDirectory(prefix="p2pci-imp-") as tmp:
        clean = Path(tmp) / "image.tar"
        _untagged_copy(archive, clean)
        _load(clean)
    if not image_exists(expect):
        raise LocalError(f"docker load of {archive} did not produce {expect}")
    return expect


def list_images() -> list[dict[str, Any]]:
    """Images built by p2pci: [{id, recipe, tags, size}]."""
    out = []
    for img in client().images.list(filters={"label": LABEL_IMAGE}):
        labels = img.labels or {}
        out.append(
            {
                "id": img.id,
                "recipe": labels.get(LABEL_RECIPE, "?"),
                "tags": list(img.tags),
                "size": int(img.attrs.get("Size", 0)),
            }
        )
    out.sort(key=lambda d: (d["recipe"], d["id"]))
    return out


def remove_image(image_id: str) -> None:
    import docker

    try:
        client().images.remove(image_id, force=True)
    except docker.errors.ImageNotFound:
        pass
