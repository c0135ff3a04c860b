"""config.toml errors name the file and the line; `[worker] images` takes names as well as IDs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.main import cli
from p2pci.config import Config, WorkerSettings, key_line, load_config, resolve_worker_images
from p2pci.core.errors import LocalError

ID = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("listen = []\n\n[worker]\nslots = -1\n", 4, "worker.slots must be at least 0"),
        ("[worker]\nslots = 1\nmax_cpus = true\n", 3, "worker.max_cpus must be an integer"),
        ("build = true\ncolour = 1\n", 2, "unknown key colour"),
        ("[trust]\n\nkeyz = []\n", 3, "unknown key trust.keyz"),
        ("[timing]\nlease_ms = 'x'\n", 2, "timing.lease_ms has the wrong type (str)"),
        ('[worker]\nimages = [\n  "busybox",\n  "ubuntu",\n]\n', 4, "worker.images: unknown image 'ubuntu' (use \"busybox\""),
        ('listen = ["a"\nbuild = true\n', 2, "Unclosed array (column 1)"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(LocalError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p} line {line}: {message}")


def test_key_line() -> None:
    text = 'slots = 9\n[worker]\n "slots" = 1\n[trust]\nslots = 2\n'
    assert key_line(text, "slots") == 1 and key_line(text, "worker.slots") == 3
    assert key_line(text, "trust.slots") == 5 and key_line(text, "worker") == 2
    assert key_line(text, "timing.lease_ms") is None


def test_images_take_names_and_ids(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text(f'[worker]\nimages = ["busybox", "{ID}", "debian:bookworm+build-essential,python3"]\n')
    cfg = load_config(p)
    assert cfg.worker.image_names() == ("busybox", "debian:bookworm+build-essential,python3")
    with pytest.raises(LocalError, match="'busybox' is a name: resolve it"):
        cfg.worker.policy()  # an unresolved name never silently matches nothing
    ids = {"busybox": "sha256:" + "11" * 32, "debian:bookworm+build-essential,python3": ID}
    resolved = resolve_worker_images(cfg, ids.__getitem__)
    assert resolved.worker.images == ("sha256:" + "11" * 32, ID)  # duplicates merged, order kept
    assert resolved.worker.policy().images == frozenset({ID, "sha256:" + "11" * 32})
    assert resolve_worker_images(Config(), ids.__getitem__) == Config()
    assert WorkerSettings().image_names() == ()


def test_daemon_with_an_unknown_image_name_fails_naming_file_and_line(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text('listen = ["/ip4/127.0.0.1/tcp/0"]\n[worker]\nimages = ["ubuntu:22.04"]\n')
    r = CliRunner().invoke(cli, ["daemon", "--home", str(home)])
    assert r.exit_code == 2
    assert f"{home / 'config.toml'} line 3: worker.images: unknown image 'ubuntu:22.04'" in r.stderr
