"""`[worker] images` names resolved to the deterministic image IDs at daemon start (real Docker)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from p2pci.cli.checks import resolve_config_images
from p2pci.config import load_config
from p2pci.core.errors import LocalError
from p2pci.core.messages import ImageRef
from p2pci.core.signing import NodeKey
from p2pci.core.worker import eligible
from p2pci.runner.images import resolve_image
from tests.unit.jobgen import make_offer

pytestmark = pytest.mark.docker


def test_a_name_admits_exactly_its_image(tmp_path: Path) -> None:
    busybox = resolve_image("busybox")
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text('[worker]\nimages = ["busybox"]\n')
    cfg = resolve_config_images(load_config(cfg_path), cfg_path)
    assert cfg.worker.images == (busybox,)
    policy = cfg.worker.policy()
    offer = make_offer(NodeKey.generate())
    assert eligible(dataclasses.replace(offer, image=ImageRef(busybox, None)), policy) is None
    other = dataclasses.replace(offer, image=ImageRef("sha256:" + "0" * 64, None))
    assert eligible(other, policy) == f"image {'sha256:' + '0' * 64} not allowed"


def test_a_name_that_cannot_be_built_names_file_and_line(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.toml"
    # a valid name whose suite does not exist: resolving it fails (no mirror / mmdebstrap error)
    cfg_path.write_text('build = true\n[worker]\nslots = 1\nimages = ["debian:no-such-suite-p2pci"]\n')
    cfg = load_config(cfg_path)
    with pytest.raises(LocalError) as e:
        resolve_config_images(cfg, cfg_path)
    assert str(e.value).startswith(f"{cfg_path} line 4: worker.images: cannot resolve 'debian:no-such-suite-p2pci'")
    # a node that never builds needs no image: nothing is resolved
    assert resolve_config_images(dataclasses.replace(cfg, build=False), cfg_path) is not None
