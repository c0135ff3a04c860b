"""`p2pci image …` and `p2pci try`: local commands that need Docker, no daemon and no home.

Registered on the root group by p2pci.cli.main (`image_group` as "image",
`try_command` as "try"). Errors: one line on stderr, exit status 2.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from p2pci.core.errors import P2pciError
from p2pci.textsafe import safe_text

F = TypeVar("F", bound=Callable[..., Any])


def _errors_exit_2(f: F) -> F:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except P2pciError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


@click.group("image")
def image_group() -> None:
    """Deterministic base images, built offline from Debian packages."""


@image_group.command("build")
@click.argument("kind", type=click.Choice(["busybox", "debian"]))
@click.option("--suite", default="bookworm", show_default=True, help="Debian suite (debian only).")
@click.option("--include", "include", default="", help="Extra packages, comma-separated (debian only).")
@click.option("--mirror", default=None, help="Debian mirror (default http://deb.debian.org/debian).")
@click.option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also keep the docker-load archive here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {image_id, recipe, seconds} as JSON.")
@_errors_exit_2
def image_build(kind: str, suite: str, include: str, mirror: str | None, output: Path | None, as_json: bool) -> None:
    """Build the busybox or a Debian minbase image; prints the image ID last."""
    from p2pci.runner import images

    t0 = time.monotonic()
    if kind == "busybox":
        if include or suite != "bookworm" or mirror:
            raise click.UsageError("--suite, --include and --mirror are for debian images")
        image_id = images.build_busybox(archive_out=output)
        recipe = "busybox"
    else:
        pkgs = [p for p in include.split(",") if p.strip()]
        recipe = images.debian_recipe(suite, pkgs)
        image_id = images.build_debian(
            suite, pkgs, mirror=mirror or images.DEFAULT_MIRROR, archive_out=output, progress=_progress
        )
    seconds = time.monotonic() - t0
    _progress(f"built {recipe} in {seconds:.1f} s")
    click.echo(json.dumps({"image_id": image_id, "recipe": recipe, "seconds": round(seconds, 1)}) if as_json else image_id)


@image_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@_errors_exit_2
def image_list(as_json: bool) -> None:
    """Images built by p2pci."""
    from p2pci.runner.images import list_images

    imgs = list_images()
    if as_json:
        click.echo(json.dumps(imgs))
        return
    if not imgs:
        click.echo("no p2pci images (p2pci image build busybox)")
        return
    click.echo(f"{'IMAGE ID':<71}  {'RECIPE':<40}  {'SIZE':>11}  TAGS")
    for i in imgs:
        tags = ",".join(i["tags"]) or "-"
        # labels and tags of an image loaded from a publisher's archive are peer text
        click.echo(safe_text(f"{i['id']}  {safe_text(i['recipe']):<40}  {i['size'] / 1e6:8.1f} MB  {tags}"))


@image_group.command("export")
@click.argument("image_id")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {file, size, sha256} as JSON.")
@_errors_exit_2
def image_export(image_id: str, file: Path, as_json: bool) -> None:
    """docker save IMAGE_ID into FILE (an archive `p2pci image import` accepts)."""
    from p2pci.runner.images import export_image

    sha, size = export_image(image_id, file)
    if as_json:
        click.echo(json.dumps({"file": str(file), "size": size, "sha256": sha.hex()}))
        return
    click.echo(f"{file}: {size} bytes, sha256 {sha.hex()}")


@image_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--expect", required=True, help="The image ID the archive must hold (sha256:…).")
@click.option("--json", "as_json", is_flag=True, help="Print {image_id} as JSON.")
@_errors_exit_2
def image_import(file: Path, expect: str, as_json: bool) -> None:
    """docker load FILE, checking that it holds exactly the image --expect."""
    from p2pci.runner.images import import_image

    image_id = import_image(file, expect=expect)
    click.echo(json.dumps({"image_id": image_id}) if as_json else image_id)


@click.command("try")
@click.argument("dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--runs", type=click.IntRange(2, 16), default=2, show_default=True, help="How many builds.")
@click.option(
    "--strict",
    is_flag=True,
    help="Also vary what the mesh pins (umask, SOURCE_DATE_EPOCH), as reprotest does.",
)
@click.option(
    "--attribute/--no-attribute",
    default=True,
    show_default=True,
    help="When not reproducible, build once per variation alone to find the cause of each difference.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep each run's outputs and log here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (runs, differences, causes).")
@click.option("--dirty", is_flag=True, help="Build the working tree as it is (default: the commit HEAD).")
@click.option("--refetch", is_flag=True, help="Run [fetch] again even when its cached result is current.")
def try_command(
    dir: Path, runs: int, strict: bool, attribute: bool, keep: Path | None, as_json: bool,
    dirty: bool = False, refetch: bool = False,
) -> None:
    """Build DIR several times with varied conditions: will the mesh reproduce it?

    By default it varies what differs between two workers: the CPU count,
    the source's directory order and file system, and the time of the build
    (the host kernel it cannot vary). --strict also varies the umask and
    SOURCE_DATE_EPOCH, which every mesh worker pins. Each difference is
    attributed to the variation that causes it. Pinned inputs ([fetch],
    [[input]]) are prepared once, as `publish` does, and mounted read-only at
    /build/inputs in every run.

    Exit 0 reproducible, 1 not (the differing files, their causes and a
    diffoscope explanation are printed), 2 error.
    """
    from p2pci.cli.checks import checked_limits
    from p2pci.runner.trial import run_try

    try:
        from p2pci.runner.tree import read_recipe, select_tree

        checked_limits(read_recipe(select_tree(dir, dirty=dirty)))  # the same checks and warnings as `p2pci publish`
        report = run_try(dir, _try_runners(), runs=runs, progress=_progress, strict=strict, attribute=attribute,
                         dirty=dirty, refetch=refetch)
    except P2pciError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    try:
        if keep is not None:
            _keep(report.results, keep)
        sys.exit(_try_json(report) if as_json else _try_text(report, runs))
    finally:
        report.cleanup()


def _try_text(report: Any, runs: int) -> int:
    from p2pci.runner.trial import attribution_lines, differences, diffoscope

    bad = [(i, r) for i, r in enumerate(report.results) if r.status != "ok"]
    if bad:
        for i, r in bad:
            click.echo(f"run {i + 1}: {r.status}: {r.error}", err=True)
            click.echo(_tail(r.log_path), err=True)
        return 2
    if report.reproducible:
        first = report.results[0]
        assert first.digest is not None
        if first.exit_code != 0:
            click.echo(f"the build failed with exit {first.exit_code} in every run; its log ends:", err=True)
            click.echo(_tail(first.log_path), err=True)
            return 2
        mode = " (--strict)" if report.strict else ""
        click.echo(f"reproducible: digest {first.digest.hex()} ({len(first.manifest)} files, {runs} runs{mode})")
        return 0
    click.echo(f"not reproducible: {len({r.digest for r in report.results})} different digests in {runs} runs")
    for i, r in enumerate(report.results):
        assert r.digest is not None
        click.echo(f"  run {i + 1}: {r.digest.hex()}  ({report.variations[i].describe()})")
    for line in differences(report.results):
        click.echo(line)
    for line in attribution_lines(report):
        click.echo(line)
    a = report.results[0]
    b = next(r for r in report.results if r.digest != a.digest)
    assert a.out_dir is not None and b.out_dir is not None
    available, text = diffoscope(a.out_dir, b.out_dir)
    if available:
        click.echo(f"diffoscope run 1 vs run {report.results.index(b) + 1}:")
    click.echo(text.rstrip())
    return 1


def _try_json(report: Any) -> int:
    from p2pci.runner.trial import differing_paths

    def entry(e: Any) -> Any:
        return None if e is None else {"sha256": e.sha256.hex(), "size": e.size, "mode": e.mode}

    ok = all(r.status == "ok" for r in report.results)
    runs = [
        {
            "variation": report.variations[i].describe(),
            "status": r.status,
            "error": r.error,
            "exit_code": r.exit_code,
            "digest": r.digest.hex() if r.digest is not None else None,
        }
        for i, r in enumerate(report.results)
    ]
    diffs = []
    if ok and not report.reproducible:
        tables = [{e.path: e for e in r.manifest} for r in report.results]
        for p in differing_paths(report.results):
            diffs.append(
                {"path": p, "runs": [entry(t.get(p)) for t in tables], "caused_by": report.caused_by(p)}
            )
    failed_everywhere = ok and report.reproducible and report.results[0].exit_code != 0
    click.echo(
        json.dumps(
            {
                "reproducible": ok and report.reproducible and not failed_everywhere,
                "strict": report.strict,
                "varied": list(report.factors),
                "runs": runs,
                "differences": diffs,
                "causes": [{"variation": c.factor, "files": list(c.files)} for c in report.causes],
            }
        )
    )
    if not ok or failed_everywhere:
        return 2
    return 0 if report.reproducible else 1


def _try_runners() -> list[Any]:
    """One runner unpacking the source on disk, one on a tmpfs (other directory order)."""
    import os
    import tempfile

    from p2pci.runner.docker_runner import DockerRunner

    # warm=0: a few builds taking turns, then exit; a ready /out holder would mostly be wasted
    runners = [DockerRunner(warm=0)]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and Path(tempfile.gettempdir()).resolve() != shm:
        runners.append(DockerRunner(work_dir=shm, warm=0))
    return runners


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("  | " + ln for ln in text.splitlines()[-lines:])


def _keep(results: list[Any], dest: Path) -> None:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(results):
        d = dest / f"run-{i + 1}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        shutil.copy(r.log_path, d / "build.log")
        if r.out_dir is not None:
            shutil.copytree(r.out_dir, d / "out", symlinks=True)
    _progress(f"kept the outputs and logs in {dest}")
