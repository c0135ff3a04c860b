"""Recipe limits checked up front, in recipe terms, the same for `try` and `publish` (issue 16)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.build_cmds import try_command
from p2pci.cli.main import cli
from p2pci.config import WorkerSettings
from p2pci.core.errors import LocalError
from p2pci.core.messages import Limits
from p2pci.recipe import (
    DEFAULT_LIMITS,
    _bounds,
    check_limits,
    default_worker_warnings,
    format_duration,
    format_size_mb,
    parse_duration,
    parse_recipe,
    parse_size_mb,
)
from p2pci.runner.base import RunnerPolicy

HEAD = '[build]\nimage = "busybox"\ncommand = "true"\n'


def err(extra: str) -> str:
    with pytest.raises(LocalError) as e:
        parse_recipe(HEAD + extra + "\n", Path("."))
    return str(e.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout = 99999999999999999999999999999", "line 4: [build] timeout 99999999999999999999999999999s is too long: at most 7d"),
        ("timeout = " + "9" * 400, "line 4: [build] timeout of about 2^1328 is too long: at most 7d"),
        ('timeout = "169h"', "line 4: [build] timeout 169h is too long: at most 7d"),
        ('memory = "8m"', "line 4: [build] memory 8m is too small: at least 16m"),
        ('memory = "99999999999999999999999k"', "[build] memory 95367431640625000g is too large: at most 16t"),
        ("cpus = 0", "line 4: [build] cpus 0 is too small: at least 1"),
        ("cpus = 1000", "line 4: [build] cpus 1000 is too many: at most 256"),
        ("pids = 3", "line 4: [build] pids 3 is too small: at least 16"),
        ('out = "100t"', "line 4: [build] out 100t is too large: at most 16t"),
    ],
)
def test_out_of_range_values_are_said_in_recipe_terms(line: str, message: str) -> None:
    text = err(line)
    assert text.startswith("p2pci.toml line 4:") and message in text
    assert "limits." not in text and "_s" not in text and "_mb" not in text


def test_every_value_the_recipe_accepts_is_a_valid_offer() -> None:
    # the recipe's bounds sit inside the offer's: nothing `try` accepts is refused by `publish`
    for b in _bounds():
        for v in (b.lo, b.hi):
            obj = {**dataclasses.asdict(DEFAULT_LIMITS), b.field: v}
            assert getattr(Limits.from_obj(obj), b.field) == v
        with pytest.raises(LocalError):
            check_limits(type(DEFAULT_LIMITS)(**{**dataclasses.asdict(DEFAULT_LIMITS), b.field: b.hi + 1}))


def test_defaults_fit_the_default_worker_policy() -> None:
    w, rp = WorkerSettings(), RunnerPolicy()
    d = DEFAULT_LIMITS
    assert d.timeout_s <= w.max_timeout_s and d.memory_mb <= w.max_memory_mb
    assert d.cpus <= w.max_cpus and d.out_mb <= w.max_out_mb
    assert d.pids <= rp.max_pids and d.timeout_s <= rp.max_timeout_s and d.out_mb <= rp.max_out_mb
    assert default_worker_warnings(d) == []
    check_limits(d)


def test_values_above_default_workers_are_warned_about() -> None:
    r = parse_recipe(HEAD + 'timeout = "2h"\nout = "2g"\n', Path("."))
    warnings = default_worker_warnings(r.limits)
    assert len(warnings) == 2
    assert warnings[0].startswith("timeout 2h is above the 1h that workers accept by default")
    assert "max_timeout_s = 3600" in warnings[0] and "out 2g" in warnings[1]
    exact = parse_recipe(HEAD + 'timeout = "1h"\nout = "1g"\n', Path("."))
    assert default_worker_warnings(exact.limits) == []


def test_formatting() -> None:
    assert [format_duration(s) for s in (90, 600, 3600, 604800, 61)] == ["90s", "10m", "1h", "7d", "61s"]
    assert [format_size_mb(m) for m in (512, 1024, 1536, 1 << 20)] == ["512m", "1g", "1536m", "1t"]
    # every formatted value is recipe syntax: the messages say "at most 7d", and "7d" parses
    for sec in (1, 59, 90, 600, 3600, 86400, 604800, 604801):
        assert parse_duration(format_duration(sec)) == sec
    for mb in (1, 512, 1024, 1536, 1 << 20):
        assert parse_size_mb(format_size_mb(mb)) == mb


def _proj(tmp_path: Path, extra: str) -> Path:
    d = tmp_path / "p"
    d.mkdir()
    (d / "p2pci.toml").write_text(HEAD + extra + "\n")
    return d


def test_try_and_publish_give_the_same_error_for_a_huge_timeout(tmp_path: Path) -> None:
    d = _proj(tmp_path, "timeout = 99999999999999999999999999999")
    pub = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(d)])
    tr = CliRunner().invoke(try_command, [str(d)])
    assert pub.exit_code == 2 and tr.exit_code == 2
    assert pub.exception is None or isinstance(pub.exception, SystemExit)  # no traceback
    line = "p2pci.toml line 4: [build] timeout 99999999999999999999999999999s is too long: at most 7d"
    assert line in pub.stderr and line in tr.stderr


def test_publish_timeout_option_is_checked_like_the_recipe(tmp_path: Path) -> None:
    d = _proj(tmp_path, "")
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(d), "--timeout", "9" * 40])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert "--timeout: timeout" in r.stderr and "at most 7d" in r.stderr


def test_publish_warns_before_needing_a_daemon(tmp_path: Path) -> None:
    d = _proj(tmp_path, 'timeout = "3h"')
    r = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(d)])
    assert r.exit_code == 2  # no daemon
    assert "warning: timeout 3h is above the 1h that workers accept by default" in r.stderr
    quiet = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "publish", str(d), "--timeout", "600"])
    assert "warning" not in quiet.stderr


def test_try_warns_like_publish(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "p2pci.toml").write_text(f'[build]\nimage = "sha256:{"0" * 64}"\ncommand = "true"\ntimeout = "3h"\n')
    r = CliRunner().invoke(try_command, [str(d)])
    assert r.exit_code == 2  # the image is not here (or no Docker): after the warning
    assert "warning: timeout 3h is above the 1h that workers accept by default" in r.stderr
