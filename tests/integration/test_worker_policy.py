"""`p2pci worker policy`: the effective donor policy from config.toml, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.main import cli
from p2pci.runner.base import RunnerPolicy


def test_defaults_without_a_config(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["worker", "policy", "--home", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    pol = json.loads(r.stdout)
    assert pol == {"config": str(tmp_path / "config.toml"), "build": True, "slots": 1, "open_jobs": True,
                   "max_timeout_s": 3600, "max_memory_mb": 4096, "max_cpus": 2, "max_out_mb": 1024,
                   "max_pids": RunnerPolicy().max_pids, "images": "any", "default_recipe_fits": True}
    text = CliRunner().invoke(cli, ["--home", str(tmp_path), "worker", "policy"]).stdout
    assert "timeout     at most 1h" in text and "(missing: the defaults)" in text


def test_a_strict_donor(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[worker]\nmax_out_mb = 512\nopen_jobs = false\n")
    pol = json.loads(CliRunner().invoke(cli, ["--home", str(tmp_path), "worker", "policy", "--json"]).stdout)
    assert pol["max_out_mb"] == 512 and pol["open_jobs"] is False and pol["default_recipe_fits"] is False
    text = CliRunner().invoke(cli, ["--home", str(tmp_path), "worker", "policy"]).stdout
    assert "output      at most 512m in /out" in text and "only offers that name this node" in text
    assert "fits: no: recipes with the default limits are refused" in text


def test_a_bad_config_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[worker]\n\nslots = -2\n")
    r = CliRunner().invoke(cli, ["--home", str(tmp_path), "worker", "policy"])
    assert r.exit_code == 2 and f"{tmp_path / 'config.toml'} line 3: worker.slots must be at least 0" in r.stderr


@pytest.mark.docker
def test_image_names_show_their_local_ids(tmp_path: Path) -> None:
    from p2pci.runner.images import resolve_image

    busybox = resolve_image("busybox")
    (tmp_path / "config.toml").write_text(f'[worker]\nimages = ["busybox", "debian:no-such-p2pci-suite", "{busybox}"]\n')
    pol = json.loads(CliRunner().invoke(cli, ["--home", str(tmp_path), "worker", "policy", "--json"]).stdout)
    assert pol["images"] == [
        {"name": "busybox", "id": busybox, "note": "built here"},
        {"name": "debian:no-such-p2pci-suite", "id": None, "note": "not built here: the daemon builds it when it starts"},
        {"name": busybox, "id": busybox, "note": "an image ID"},
    ]
