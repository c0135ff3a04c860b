"""`p2pci try`: build a project K times with varied conditions and compare.

The runner already pins the user, host name, time zone, locale, network and
paths. What it does not pin, and a real fleet of workers varies, is varied
here from run to run:

* the CPUs the build may use (`nproc` and `make -j` see 1 or all),
* the umask (0022, then 0002),
* the order of the entries in the source tar, and the file system the source
  is unpacked on (disk, then tmpfs): so the order of directory entries,
* the date through SOURCE_DATE_EPOCH, when the recipe sets none (unset, then
  years apart): a build that reads it must get it from the recipe.

Equal digests: reproducible. Different: the differing files with their
hashes per run, and `diffoscope --text` between the first run and the first
one that differs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pci.core.errors import LocalError
from p2pci.core.results import ManifestEntry
from p2pci.recipe import Recipe
from p2pci.runner.base import BuildResult, BuildSpec, Limits, Runner

Progress = Callable[[str], None]
FAR_DATES = (2_000_000_000, 1_000_000_000, 1_500_000_000)  # 2033, 2001, 2017


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Variation:
    cpuset: str
    umask: int
    order_seed: int | None
    source_date_epoch: int | None

    def describe(self) -> str:
        sde = "unset" if self.source_date_epoch is None else str(self.source_date_epoch)
        order = "sorted" if self.order_seed is None else f"shuffled#{self.order_seed}"
        cpus = len(self.cpuset.split(","))
        return f"cpus={cpus} umask={self.umask:04o} source-order={order} SOURCE_DATE_EPOCH={sde}"


def variations(recipe: Recipe, runs: int, cpu_ids: list[int] | None = None) -> list[Variation]:
    if cpu_ids is None:
        cpu_ids = (
            sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else list(range(os.cpu_count() or 1))
        )
    ncpu = max(1, len(cpu_ids))
    want = min(recipe.limits.cpus, ncpu)
    out = []
    for k in range(runs):
        cpus = want if k % 2 == 0 else (1 if want > 1 else min(2, ncpu))
        sde = recipe.source_date_epoch
        if sde is None and k > 0:
            sde = FAR_DATES[(k - 1) % len(FAR_DATES)] + k  # distinct per run
        out.append(
            Variation(
                cpuset=",".join(str(c) for c in cpu_ids[:cpus]),
                umask=0o022 if k % 2 == 0 else 0o002,
                order_seed=None if k == 0 else k,
                source_date_epoch=sde,
            )
        )
    return out


@dataclass
class TryReport:
    recipe: Recipe
    image_id: str
    variations: list[Variation]
    results: list[BuildResult] = field(default_factory=list)
    inputs: Any = None  # p2pci.runner.fetch.PreparedInputs when the recipe pins inputs

    @property
    def reproducible(self) -> bool:
        digests = {r.digest for r in self.results}
        return all(r.status == "ok" for r in self.results) and len(digests) == 1

    def cleanup(self) -> None:
        for r in self.results:
            r.cleanup()


def run_try(
    dir: Path,
    runner: Runner | list[Runner],
    *,
    runs: int = 2,
    image_id: str | None = None,
    progress: Progress = _stderr,
    work_dir: Path | None = None,
    dirty: bool = False,
    refetch: bool = False,
    cache_dir: Path | None = None,
) -> TryReport:
    """Build `dir` `runs` times with the variations; the caller prints and cleans up.

    The tree and its recipe are what `publish` would take (HEAD in a git work tree,
    the working tree with `dirty`). Pinned inputs (`[fetch]`, `[[input]]`) are
    prepared once as `publish` prepares them (the same cache; `refetch` ignores
    it) and mounted in every run, their tar entries shuffled like the source's.

    With a list of runners, run k uses runner k mod len: `p2pci try` passes one
    that unpacks the source on the disk and one that unpacks it on a tmpfs, so
    that the order of directory entries differs (ext4 lists them in hash order,
    tmpfs in creation order, which the shuffled tar changes).
    """
    runners = runner if isinstance(runner, list) else [runner]
    if runs < 2:
        raise LocalError("--runs must be at least 2")
    from p2pci.runner.tree import pack_tree, read_recipe, select_tree

    tree = select_tree(dir, dirty=dirty)
    recipe = read_recipe(tree)
    if image_id is None:
        from p2pci.runner.images import resolve_image

        image_id = resolve_image(recipe.image, progress=progress)
    report = TryReport(recipe, image_id, variations(recipe, runs))
    limits = Limits(
        timeout_s=recipe.limits.timeout_s,
        memory_mb=recipe.limits.memory_mb,
        cpus=recipe.limits.cpus,
        pids=recipe.limits.pids,
        out_mb=recipe.limits.out_mb,
    )
    changed = list(tree.changes) if tree.mode == "git" else []
    if changed:
        shown = ", ".join(changed[:5]) + (", …" if len(changed) > 5 else "")
        progress(
            f"note: {dir} is in a git work tree: building its HEAD; not included: {shown} (--dirty includes them)"
        )
    with tempfile.TemporaryDirectory(prefix="p2pci-try-", dir=work_dir) as tmp:
        if recipe.has_inputs:
            from p2pci.runner.fetch import prepare_inputs

            base = Path(tmp) / "source-fetch.tar"
            pack_tree(tree, base)
            report.inputs = prepare_inputs(
                recipe, base, cache_dir=cache_dir, refresh=refetch, progress=progress
            )
            base.unlink()
        for k, var in enumerate(report.variations):
            tar = Path(tmp) / f"source-{k}.tar"
            sha, size = pack_tree(tree, tar, order_seed=var.order_seed)
            where = getattr(runners[k % len(runners)], "work_dir", None)
            fs = f" unpacked-in={where}" if where is not None else ""
            inputs_tar, inputs_sha, note = _run_inputs(
                report.inputs, var.order_seed, Path(tmp) / f"inputs-{k}.tar"
            )
            progress(
                f"run {k + 1}/{runs}: {var.describe()}{fs} (source {sha.hex()[:12]}…, {size} bytes{note})"
            )
            spec = BuildSpec(
                image_id=image_id,
                command=recipe.command,
                env=recipe.env,
                source_date_epoch=var.source_date_epoch,
                limits=limits,
                umask=var.umask,
                cpuset=var.cpuset,
                inputs_sha256=inputs_sha,
            )
            extra: dict[str, Any] = {"inputs_tar": inputs_tar} if inputs_tar is not None else {}
            r = runners[k % len(runners)].run(spec, tar, cancel=threading.Event(), **extra)
            report.results.append(r)
            tar.unlink()
            if inputs_tar is not None and report.inputs is not None and inputs_tar != report.inputs.path:
                inputs_tar.unlink()
            if r.status == "ok":
                assert r.digest is not None
                progress(
                    f"  exit {r.exit_code}, digest {r.digest.hex()}, {len(r.manifest)} files, {r.duration_s:.1f} s"
                )
            else:
                progress(f"  {r.status}: {r.error}")
    return report


def _run_inputs(inputs: Any, order_seed: int | None, dest: Path) -> tuple[Path | None, bytes | None, str]:
    """The inputs tar of one run: the pinned one, or its entries shuffled with the run's seed."""
    if inputs is None:
        return None, None, ""
    if order_seed is None:
        return inputs.path, inputs.sha256, f", inputs {inputs.sha256.hex()[:12]}…"
    from p2pci.runner.inputs import reorder

    sha, _ = reorder(inputs.path, dest, order_seed)
    return dest, sha, f", inputs {inputs.sha256.hex()[:12]}… shuffled"


def differences(results: list[BuildResult]) -> list[str]:
    """Lines naming each differing file with its sha256 (or absence) per run."""
    lines = []
    codes = [r.exit_code for r in results]
    if len(set(codes)) > 1:
        lines.append("exit codes: " + ", ".join(f"run {i + 1}: {c}" for i, c in enumerate(codes)))
    tables: list[dict[str, ManifestEntry]] = [{e.path: e for e in r.manifest} for r in results]
    paths = sorted(set().union(*tables), key=str.encode)
    for p in paths:
        entries = [t.get(p) for t in tables]
        keys = {(e.sha256, e.mode, e.size) if e else None for e in entries}
        if len(keys) == 1:
            continue
        lines.append(f"differs: {p}")
        for i, e in enumerate(entries):
            if e is None:
                lines.append(f"    run {i + 1}: (missing)")
            else:
                lines.append(f"    run {i + 1}: sha256 {e.sha256.hex()} size {e.size} mode {e.mode:04o}")
    return lines


def diffoscope(a: Path, b: Path, *, timeout: float = 600) -> tuple[bool, str]:
    """(available, text) of `diffoscope --text - a b`."""
    exe = shutil.which("diffoscope")
    if exe is None:
        return False, "diffoscope is not installed: apt-get install diffoscope (or pip install diffoscope)"
    try:
        p = subprocess.run(
            [exe, "--text", "-", "--no-progress", "--exclude-directory-metadata=yes", str(a), str(b)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return True, f"diffoscope took longer than {timeout:.0f} s: stopped"
    if p.returncode not in (0, 1):
        return True, f"diffoscope failed (exit {p.returncode}): {p.stderr.strip()[-2000:]}"
    return True, p.stdout
