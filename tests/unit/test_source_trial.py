"""`p2pci try` variations and difference listing (pure parts)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from p2pci.core.results import ManifestEntry
from p2pci.recipe import parse_recipe
from p2pci.runner.base import BuildResult
from p2pci.runner.trial import STRICT_FACTORS, differences, differing_paths, variations


def recipe(tmp_path: Path, extra: str = "") -> object:
    return parse_recipe(f'[build]\nimage = "busybox"\ncommand = "true"\ncpus = 2\n{extra}', tmp_path)


def test_each_run_differs_in_what_the_fleet_varies(tmp_path: Path) -> None:
    vs = variations(recipe(tmp_path), 3, cpu_ids=[0, 2, 5])  # type: ignore[arg-type]
    assert [v.cpuset for v in vs] == ["0,2", "0", "0,2"]
    assert [v.order_seed for v in vs] == [None, 1, 2] and [v.fs for v in vs] == [0, 1, 0]
    # what the mesh pins is not varied by default: the runner's umask, the recipe's date (none)
    assert [v.umask for v in vs] == [None, None, None]
    assert [v.source_date_epoch for v in vs] == [None, None, None]
    fixed = variations(recipe(tmp_path, "source_date_epoch = 5\n"), 2, cpu_ids=[0])  # type: ignore[arg-type]
    assert [v.source_date_epoch for v in fixed] == [5, 5]
    assert [v.cpuset for v in fixed] == ["0", "0"]


def test_strict_also_varies_umask_and_date(tmp_path: Path) -> None:
    vs = variations(recipe(tmp_path), 3, cpu_ids=[0, 2, 5], strict=True)  # type: ignore[arg-type]
    assert [v.umask for v in vs] == [0o022, 0o002, 0o022]
    sdes = [v.source_date_epoch for v in vs]
    assert sdes[0] is None and len(set(sdes)) == 3 and abs(sdes[1] - sdes[2]) > 10 * 365 * 86400  # type: ignore[operator]
    fixed = variations(recipe(tmp_path, "source_date_epoch = 5\n"), 2, cpu_ids=[0], strict=True)  # type: ignore[arg-type]
    assert [v.source_date_epoch for v in fixed] == [5, 5]  # the recipe's date is kept even then


def test_taking_one_variation(tmp_path: Path) -> None:
    a, b = variations(recipe(tmp_path), 2, cpu_ids=[0, 1], strict=True)  # type: ignore[arg-type]
    assert a.taking("cpus", b) == replace(a, cpuset=b.cpuset)
    assert a.taking("order", b) == replace(a, order_seed=b.order_seed, fs=b.fs)
    assert a.taking("umask", b) == replace(a, umask=b.umask)
    assert a.taking("date", b) == replace(a, source_date_epoch=b.source_date_epoch)
    again = a.taking("time", b)
    assert again != a and replace(again, again=0) == a  # the same conditions, run again
    for f in STRICT_FACTORS:  # each changes exactly what it names, nothing else
        assert a.taking(f, b) != b


def result(manifest: list[ManifestEntry], code: int = 0) -> BuildResult:
    return BuildResult("ok", code, tuple(manifest), b"d", Path("/nonexistent/log"), None, 0.0)


def test_differences_name_files_and_hashes() -> None:
    same = ManifestEntry("same", 1, 0o644, b"\x01" * 32)
    a = result([same, ManifestEntry("x", 1, 0o644, b"\x02" * 32)])
    b = result(
        [same, ManifestEntry("x", 1, 0o664, b"\x02" * 32), ManifestEntry("y", 2, 0o644, b"\x03" * 32)], code=1
    )
    lines = differences([a, b])
    assert lines[0] == "exit codes: run 1: 0, run 2: 1"
    assert "differs: x" in lines and "differs: y" in lines and "differs: same" not in lines
    assert "    run 1: (missing)" in lines
    assert f"    run 2: sha256 {'03' * 32} size 2 mode 0644" in lines


def test_differing_paths() -> None:
    same = ManifestEntry("same", 1, 0o644, b"\x01" * 32)
    a = result([same, ManifestEntry("x", 1, 0o644, b"\x02" * 32)])
    b = result([same, ManifestEntry("x", 1, 0o664, b"\x02" * 32), ManifestEntry("y", 2, 0o644, b"\x03" * 32)], code=1)
    assert differing_paths([a, b]) == [".exit-code", "x", "y"]
    assert differing_paths([a, a]) == []
