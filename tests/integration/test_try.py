"""`p2pci try` on real projects with a real Docker engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.build_cmds import try_command

pytestmark = pytest.mark.docker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def project(tmp_path: Path, command: str, extra: str = "") -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "input.txt").write_text("input\n")
    for name in "abcdefgh":
        (d / name).write_text(name)
    (d / "p2pci.toml").write_text(
        f'[build]\nimage = "busybox"\ncommand = {command!r}\ntimeout = "1m"\ncpus = 2\n{extra}'
    )
    return d


def test_try_reproducible_example_exits_0() -> None:
    r = CliRunner().invoke(try_command, [str(EXAMPLES / "busybox-smoke")])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("reproducible: digest ")
    assert "run 2/2" in r.stderr and "source-order=shuffled" in r.stderr


def test_try_unreproducible_example_exits_1_and_names_the_file() -> None:
    r = CliRunner().invoke(try_command, [str(EXAMPLES / "unreproducible"), "--runs", "2"])
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert out.startswith("not reproducible: 2 different digests")
    assert "differs: stamp.txt" in out and "differs: message.txt" not in out
    assert "sha256 " in out  # the hashes of each run
    assert "stamp.txt" in out.split("differs: stamp.txt", 1)[1]  # diffoscope's part names it too


@pytest.mark.parametrize(
    ("command", "culprit"),
    [
        ("cat input.txt > /out/f", "mode 0664"),  # file mode from the umask
        ("echo ${SOURCE_DATE_EPOCH:-unset} > /out/f; chmod 644 /out/f", "differs: f"),  # the date
        ("nproc > /out/f; chmod 644 /out/f", "differs: f"),  # the CPU count
        ("find . -type f > /out/f; chmod 644 /out/f", "differs: f"),  # directory order
    ],
)
def test_try_catches_each_variation(tmp_path: Path, command: str, culprit: str) -> None:
    r = CliRunner().invoke(try_command, [str(project(tmp_path, command))])
    assert r.exit_code == 1, r.output
    assert culprit in r.stdout


def test_try_recipe_date_is_kept(tmp_path: Path) -> None:
    d = project(
        tmp_path, "echo $SOURCE_DATE_EPOCH > /out/f; chmod 644 /out/f", "source_date_epoch = 1234567890\n"
    )
    r = CliRunner().invoke(try_command, [str(d)])
    assert r.exit_code == 0, r.output


def test_try_errors_exit_2(tmp_path: Path) -> None:
    d = project(tmp_path, "true", "imagee = 'x'\n")
    r = CliRunner().invoke(try_command, [str(d)])
    assert r.exit_code == 2 and "unknown key 'imagee'" in r.stderr
    failing = tmp_path / "f"
    failing.mkdir()
    (failing / "p2pci.toml").write_text('[build]\nimage = "busybox"\ncommand = "echo broken >&2; exit 4"\n')
    r = CliRunner().invoke(try_command, [str(failing)])
    assert r.exit_code == 2 and "exit 4" in r.stderr and "broken" in r.stderr
