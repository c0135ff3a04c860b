"""`p2pci try`: build a project K times with varied conditions and compare.

It predicts the mesh: by default it varies only what really differs between
two workers, because the runner pins the rest (user, host name, time zone,
locale, network, paths, the umask and SOURCE_DATE_EPOCH):

* **cpus**: the CPUs the build may use (`nproc`, `make -j` see 1 or all); two
  workers' hosts have different CPU counts;
* **order**: the order of the entries in the source tar, and the file system
  the source is unpacked on (disk, then tmpfs): so the order of directory
  entries, which differs between two workers' file systems;
* **time**: the wall-clock time of the build (each run starts later; a build
  that embeds the time or a random value differs when simply run again).

The host kernel also differs between workers; every run here shares this
host's kernel, so `try` cannot vary it (a build that embeds `uname -r` may
pass here and be DISPUTED in the mesh).

`--strict` adds what reprotest varies but the mesh pins:

* **umask**: 0022, then 0002 (the mesh runs every build with Docker's 0022);
* **date**: SOURCE_DATE_EPOCH, when the recipe sets none: unset, then years
  apart (the mesh never sets it unless the recipe does).

Equal digests: reproducible. Different: each differing file with its hashes
per run, then every difference attributed to the variation that caused it:
one more build per variation, that changes only that one from the first
run's conditions. "time" (the first run's conditions again) is tried first:
what differs then is nondeterministic and not blamed on another variation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from p2pci.core.errors import LocalError
from p2pci.core.results import ManifestEntry
from p2pci.recipe import Recipe
from p2pci.runner.base import BuildResult, BuildSpec, Limits, Runner

Progress = Callable[[str], None]
FAR_DATES = (2_000_000_000, 1_000_000_000, 1_500_000_000)  # 2033, 2001, 2017

# The variations, in the order they are tried alone, and what each stands for. "time" (run 1's
# conditions again) comes first: what differs then is nondeterministic, not caused by the others.
FACTORS = ("time", "cpus", "order")
STRICT_FACTORS = (*FACTORS, "umask", "date")
FACTOR_HELP = {
    "cpus": "the CPU count (nproc, make -j): differs between workers",
    "order": "the source's directory order and file system: differs between workers",
    "time": "the build's wall-clock time, or nondeterminism: it differs when simply run again",
    "umask": "the umask (--strict: every mesh worker uses 0022)",
    "date": "SOURCE_DATE_EPOCH unset or far apart (--strict: the mesh uses the recipe's)",
}


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Variation:
    cpuset: str
    umask: int | None  # None: the runner's, as in the mesh
    order_seed: int | None
    source_date_epoch: int | None
    fs: int = 0  # which runner: 0 unpacks the source on disk, 1 on a tmpfs (when there is one)
    again: int = 0  # how many times these conditions were run before (the "time" variation)

    def describe(self) -> str:
        sde = "unset" if self.source_date_epoch is None else str(self.source_date_epoch)
        order = "sorted" if self.order_seed is None else f"shuffled#{self.order_seed}"
        cpus = len(self.cpuset.split(","))
        umask = "default" if self.umask is None else f"{self.umask:04o}"
        return f"cpus={cpus} source-order={order} fs={('disk', 'tmpfs')[self.fs % 2]} umask={umask} SOURCE_DATE_EPOCH={sde}"

    def taking(self, factor: str, other: Variation) -> Variation:
        """These conditions with only `factor` taken from `other`."""
        if factor == "cpus":
            return replace(self, cpuset=other.cpuset)
        if factor == "order":
            return replace(self, order_seed=other.order_seed, fs=other.fs)
        if factor == "umask":
            return replace(self, umask=other.umask)
        if factor == "date":
            return replace(self, source_date_epoch=other.source_date_epoch)
        if factor == "time":
            return replace(self, again=self.again + 1)
        raise ValueError(f"unknown variation {factor!r}")


def variations(
    recipe: Recipe, runs: int, cpu_ids: list[int] | None = None, *, strict: bool = False
) -> list[Variation]:
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
        if strict and sde is None and k > 0:
            sde = FAR_DATES[(k - 1) % len(FAR_DATES)] + k  # distinct per run
        out.append(
            Variation(
                cpuset=",".join(str(c) for c in cpu_ids[:cpus]),
                umask=(0o022 if k % 2 == 0 else 0o002) if strict else None,
                order_seed=None if k == 0 else k,
                source_date_epoch=sde,
                fs=k % 2,
            )
        )
    return out


@dataclass(frozen=True)
class Cause:
    """One variation tried alone (run 1's conditions with only it changed) and what it changed."""

    factor: str
    result: BuildResult
    files: tuple[str, ...]  # the paths whose entry differs from run 1's (".exit-code": the exit code)


@dataclass
class TryReport:
    recipe: Recipe
    image_id: str
    variations: list[Variation]
    results: list[BuildResult] = field(default_factory=list)
    strict: bool = False
    causes: list[Cause] = field(default_factory=list)
    inputs: Any = None  # p2pci.runner.fetch.PreparedInputs when the recipe pins inputs

    @property
    def factors(self) -> tuple[str, ...]:
        return STRICT_FACTORS if self.strict else FACTORS

    @property
    def reproducible(self) -> bool:
        digests = {r.digest for r in self.results}
        return all(r.status == "ok" for r in self.results) and len(digests) == 1

    def caused_by(self, path: str) -> list[str]:
        """The variations that change `path` on their own (empty: none alone does)."""
        return [c.factor for c in self.causes if path in c.files]

    def cleanup(self) -> None:
        for r in self.results:
            r.cleanup()
        for c in self.causes:
            c.result.cleanup()


def run_try(
    dir: Path,
    runner: Runner | list[Runner],
    *,
    runs: int = 2,
    image_id: str | None = None,
    progress: Progress = _stderr,
    work_dir: Path | None = None,
    strict: bool = False,
    attribute: bool = True,
    dirty: bool = False,
    refetch: bool = False,
    cache_dir: Path | None = None,
) -> TryReport:
    """Build `dir` `runs` times with the variations; the caller prints and cleans up.

    The tree and its recipe are what `publish` would take (HEAD in a git work tree,
    the working tree with `dirty`). Pinned inputs (`[fetch]`, `[[input]]`) are
    prepared once as `publish` prepares them (the same cache; `refetch` ignores
    it) and mounted in every run, their tar entries shuffled like the source's.

    With a list of runners, a variation's `fs` picks the runner (mod len): `p2pci try`
    passes one that unpacks the source on the disk and one that unpacks it on a tmpfs,
    so that the order of directory entries differs (ext4 lists them in hash order,
    tmpfs in creation order, which the shuffled tar changes). When the digests differ
    and `attribute` is set, each variation is then tried alone (`TryReport.causes`).
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
    report = TryReport(recipe, image_id, variations(recipe, runs, strict=strict), strict=strict)
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

        def build(var: Variation, label: str) -> BuildResult:
            tar = Path(tmp) / "source.tar"
            sha, size = pack_tree(tree, tar, order_seed=var.order_seed)
            the_runner = runners[var.fs % len(runners)]
            where = getattr(the_runner, "work_dir", None)
            fs = f" unpacked-in={where}" if where is not None else ""
            inputs_tar, inputs_sha, note = _run_inputs(report.inputs, var.order_seed, Path(tmp) / "inputs.tar")
            progress(f"{label}: {var.describe()}{fs} (source {sha.hex()[:12]}…, {size} bytes{note})")
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
            r = the_runner.run(spec, tar, cancel=threading.Event(), **extra)
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
            return r

        for k, var in enumerate(report.variations):
            report.results.append(build(var, f"run {k + 1}/{runs}"))
        ok = all(r.status == "ok" for r in report.results)
        if attribute and ok and not report.reproducible:
            base_r, base_var = report.results[0], report.variations[0]
            b = next(i for i, r in enumerate(report.results) if r.digest != base_r.digest)
            progress(f"finding the cause: each variation alone, from run 1's conditions ({len(report.factors)} builds)")
            unstable: set[str] = set()  # what differs even when nothing is varied
            for factor in report.factors:
                var = base_var.taking(factor, report.variations[b])
                r = build(var, f"only {factor}")
                files = tuple(differing_paths([base_r, r])) if r.status == "ok" else ()
                if factor == "time":
                    unstable = set(files)
                else:
                    files = tuple(f for f in files if f not in unstable)
                report.causes.append(Cause(factor, r, files))
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


EXIT_CODE_PATH = ".exit-code"


def differing_paths(results: list[BuildResult]) -> list[str]:
    """The paths whose manifest entry (hash, mode, size or presence) is not the same in every
    result, in byte order; `.exit-code` first when the exit codes differ."""
    out = [EXIT_CODE_PATH] if len({r.exit_code for r in results}) > 1 else []
    tables: list[dict[str, ManifestEntry]] = [{e.path: e for e in r.manifest} for r in results]
    for p in sorted(set().union(*tables), key=str.encode):
        entries = [t.get(p) for t in tables]
        if len({(e.sha256, e.mode, e.size) if e else None for e in entries}) > 1:
            out.append(p)
    return out


def attribution_lines(report: TryReport) -> list[str]:
    """ "caused by" lines: per variation, the files it changes alone; then the unexplained ones."""
    if not report.causes:
        return []
    base = report.results[0]
    b = next(r for r in report.results if r.digest != base.digest)
    differing = differing_paths([base, b])
    lines = ["caused by (each variation alone, from run 1's conditions):"]
    for c in report.causes:
        if c.result.status != "ok":
            lines.append(f"  {c.factor}: the build did not finish ({c.result.status}: {c.result.error})")
            continue
        shown = ", ".join(c.files[:8]) + (f", … ({len(c.files)} files)" if len(c.files) > 8 else "")
        lines.append(f"  {c.factor}: {shown or 'no difference'}   [{FACTOR_HELP[c.factor]}]")
    unexplained = [p for p in differing if not report.caused_by(p)]
    if unexplained:
        lines.append(
            "  no single variation: " + ", ".join(unexplained[:8])
            + " (only a combination of variations changes these)"
        )
    return lines


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
