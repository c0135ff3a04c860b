"""`p2pci diff` without trusting what it compares: diffoscope inside the build sandbox.

The artifacts `p2pci diff` compares came from the network. diffoscope unpacks
and parses dozens of formats with dozens of tools, so it never runs on the
host: `diff_dirs` runs it as a build would run (`DockerRunner.run`: no
network, read-only root, every capability dropped, user nobody, memory /
pids / cpu limits, a size-limited /out, a timeout). The two trees go in as
the build's source (`/build/src/a`, `/build/src/b`), the report comes out as
`/out/diff.txt` and is read back at most MAX_REPORT bytes.

The diffoscope image is `debian:bookworm+diffoscope-minimal`, built like any
deterministic base image (`p2pci image build debian --suite bookworm
--include diffoscope-minimal`, the command in BUILD_HINT). Where that image is not present
(`build_image=False`) or Docker is not there, `diff_dirs` falls back to a
built-in comparison: which files differ, by hash, and a unified diff of small
text files (pure Python, bounded: no external tool touches the artifacts).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from p2pci.core.errors import BuildError, LocalError
from p2pci.runner.base import BuildResult, BuildSpec, Limits

__all__ = ["DIFF_IMAGE", "DIFF_LIMITS", "MAX_REPORT", "diff_dirs", "builtin_diff", "run_sandboxed"]

DIFF_IMAGE = "debian:bookworm+diffoscope-minimal"
DIFF_LIMITS = Limits(timeout_s=600, memory_mb=2048, cpus=1, pids=256, out_mb=32)
MAX_REPORT = 16 << 20  # bytes of the report read back
TEXT_DIFF_MAX = 64 << 10  # files up to this size get a unified diff in the built-in comparison
REPORT = "diff.txt"
BUILD_HINT = "p2pci image build debian --suite bookworm --include diffoscope-minimal"


def run_sandboxed(
    argv: tuple[str, ...],
    trees: dict[str, Path],
    image_id: str,
    *,
    limits: Limits = DIFF_LIMITS,
    work_dir: Path | None = None,
    cancel: threading.Event | None = None,
) -> BuildResult:
    """Run `argv` in the build sandbox with `trees` as /build/src/<name> (read-only).

    The caller owns the result: read `out_dir`, then `cleanup()`. BuildError if it cannot start.
    """
    from p2pci.runner.docker_runner import DockerRunner
    from p2pci.runner.source import pack_source

    with tempfile.TemporaryDirectory(prefix="p2pci-diffbox-", dir=work_dir) as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name, tree in trees.items():
            if "/" in name or name in ("", ".", ".."):
                raise LocalError(f"bad tree name {name!r}")
            shutil.copytree(tree, src / name, symlinks=True)
        tar = Path(tmp) / "src.tar"
        pack_source(src, tar)
        shutil.rmtree(src)
        runner = DockerRunner(work_dir=Path(tmp) / "runs")
        result = runner.run(BuildSpec(image_id=image_id, command=argv, limits=limits), tar, cancel=cancel or threading.Event())
        # The result's files live under `tmp`, which goes away: move them out first.
        keep = Path(tempfile.mkdtemp(prefix="p2pci-result-", dir=work_dir))
        log = keep / "build.log"
        shutil.move(str(result.log_path), log)
        out = None
        if result.out_dir is not None:
            out = keep / "out"
            shutil.move(str(result.out_dir), out)
        result.cleanup()
        return BuildResult(result.status, result.exit_code, result.manifest, result.digest, log, out, result.duration_s, result.error)


def _read_head(path: Path, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def diff_in_container(a: Path, b: Path, image_id: str, *, limits: Limits = DIFF_LIMITS) -> str:
    """diffoscope's text report of `a` vs `b`, run in the build sandbox."""
    argv = (
        "diffoscope", "--text", f"/out/{REPORT}", "--no-progress", "--exclude-directory-metadata=recursive",
        "--max-report-size", str(MAX_REPORT), "a", "b",
    )
    result = run_sandboxed(argv, {"a": a, "b": b}, image_id, limits=limits)
    try:
        if result.status == "timeout":
            return f"diffoscope was stopped at the time limit ({limits.timeout_s} s)\n"
        if result.status != "ok" or result.out_dir is None:
            raise BuildError(f"diffoscope could not run: {result.error}")
        if result.exit_code not in (0, 1):
            log, _ = _read_head(result.log_path, 4096)
            raise BuildError(f"diffoscope failed (exit {result.exit_code}): {log.strip()[-500:]}")
        report = result.out_dir / REPORT
        if not report.is_file():
            return "no differences\n"
        text, cut = _read_head(report, MAX_REPORT)
        return (text or "no differences\n") + (f"\n(report cut at {MAX_REPORT >> 20} MiB)\n" if cut else "")
    finally:
        result.cleanup()


def _files(root: Path) -> dict[str, Path]:
    """Regular files under `root` by relative path; iterative walk, links never followed."""
    out: dict[str, Path] = {}
    stack = [root]
    while stack:
        d = stack.pop()
        for entry in os.scandir(d):
            p = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(p)
            elif entry.is_file(follow_symlinks=False):
                out[p.relative_to(root).as_posix()] = p
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def builtin_diff(a: Path, b: Path, note: str = "") -> str:
    """Which files differ (by hash), with a unified diff of small text files. Pure Python."""
    lines = [note] if note else []
    lines.append(f"--- {a.name}\n+++ {b.name}\n")
    fa, fb = _files(a), _files(b)
    for name in sorted(set(fa) | set(fb)):
        ha = _sha256(fa[name]) if name in fa else "-"
        hb = _sha256(fb[name]) if name in fb else "-"
        if ha == hb:
            continue
        lines.append(f"{name}: {ha[:16]} != {hb[:16]}\n")
        small = all(n not in f or f[n].stat().st_size <= TEXT_DIFF_MAX for f, n in ((fa, name), (fb, name)))
        if small:
            ta = _read_head(fa[name], TEXT_DIFF_MAX)[0].splitlines(keepends=True) if name in fa else []
            tb = _read_head(fb[name], TEXT_DIFF_MAX)[0].splitlines(keepends=True) if name in fb else []
            lines.extend(line if line.endswith("\n") else line + "\n"
                         for line in difflib.unified_diff(ta, tb, f"a/{name}", f"b/{name}"))
    return "".join(lines)


def diff_dirs(a: Path, b: Path, *, build_image: bool = False) -> str:
    """diffoscope in the sandbox when its image is here (or `build_image`), else `builtin_diff`."""
    try:
        from p2pci.runner.images import find_image, resolve_image

        image_id = resolve_image(DIFF_IMAGE) if build_image else find_image(DIFF_IMAGE)
    except Exception as exc:  # no Docker, no mirror: the built-in comparison still answers
        return builtin_diff(a, b, f"(diffoscope sandbox unavailable: {type(exc).__name__}: {exc}; built-in comparison)\n")
    if image_id is None:
        return builtin_diff(
            a, b, f"(no {DIFF_IMAGE} image: `{BUILD_HINT}` for a full diffoscope report; built-in comparison)\n"
        )
    return diff_in_container(a, b, image_id)
