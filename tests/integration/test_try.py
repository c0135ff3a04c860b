"""`p2pci try` on real projects with a real Docker engine."""

from __future__ import annotations

import json
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
    ("command", "strict", "cause"),
    [
        ("nproc > /out/f; chmod 644 /out/f", False, "cpus"),  # the CPU count
        ("find . -type f > /out/f; chmod 644 /out/f", False, "order"),  # directory order
        ("cat /proc/sys/kernel/random/uuid > /out/f; chmod 644 /out/f", False, "time"),  # random
        ("echo ${SOURCE_DATE_EPOCH:-unset} > /out/f; chmod 644 /out/f", True, "date"),  # the date
    ],
)
def test_try_attributes_each_difference_to_its_variation(tmp_path: Path, command: str, strict: bool, cause: str) -> None:
    args = [str(project(tmp_path, command)), "--json"] + (["--strict"] if strict else [])
    r = CliRunner().invoke(try_command, args)
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert [d["path"] for d in doc["differences"]] == ["f"]
    assert doc["differences"][0]["caused_by"] == [cause], doc["causes"]
    assert {c["variation"] for c in doc["causes"]} == set(doc["varied"])


def test_default_umask_tree_is_reproducible_by_default_not_under_strict(tmp_path: Path) -> None:
    # files created with the default umask: the mesh (umask pinned) reproduces this build
    d = project(tmp_path, "mkdir /out/d; cat input.txt > /out/d/f; cp a b /out/")
    r = CliRunner().invoke(try_command, [str(d)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("reproducible: digest ")
    r = CliRunner().invoke(try_command, [str(d), "--strict"])
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "differs: d/f" in out and "mode 0664" in out
    caused = out.split("caused by", 1)[1]
    assert "  umask: d/f   [" in caused  # the umask alone changes the new file's mode (cp keeps a, b at 0644)
    assert "  cpus: no difference" in caused and "  order: no difference" in caused
    assert "  time: no difference" in caused


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
