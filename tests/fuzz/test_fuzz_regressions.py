"""Every fuzz target replays its seeds and the committed regression inputs (no atheris needed).

tests/fuzz/regressions/<target>/ holds the inputs that once crashed a decoder (listed in
docs/testing.md); each must now be refused cleanly or decoded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.seeds import all_seeds
from tests.fuzz.targets import TARGETS

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
SEEDS = dict(all_seeds())


def test_every_target_has_valid_seeds() -> None:
    assert set(SEEDS) == set(TARGETS)
    assert all(len(s) >= 2 for s in SEEDS.values()), {k: len(v) for k, v in SEEDS.items()}


@pytest.mark.timeout(120)  # a finding that was a hang (source-tar, output-tar) fails, not blocks
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_and_regressions_replay(name: str) -> None:
    one = TARGETS[name].make()
    for seed in SEEDS[name]:
        one(seed)
    d = REGRESSIONS / name
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        one(p.read_bytes())


@pytest.mark.parametrize("name", ["envelope", "bundle", "recipe", "config", "image-archive", "output-tar"])
def test_the_seeds_are_accepted_not_just_refused(name: str) -> None:
    # a seed corpus of inputs the decoder refuses would fuzz only the first check
    import io
    import tempfile

    from p2pci.config import load_config
    from p2pci.core.evidence import load_bundle
    from p2pci.core.signing import open_envelope
    from p2pci.recipe import parse_recipe
    from p2pci.runner.images import archive_image_id
    from p2pci.runner.outputs import read_outputs

    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(SEEDS[name]):
            base = Path(tmp) / str(i)
            base.mkdir()
            if name == "envelope":
                open_envelope(seed)
            elif name == "bundle":
                load_bundle(seed)
            elif name == "recipe":
                parse_recipe(seed.decode(), base)
            elif name == "config":
                (base / "c.toml").write_bytes(seed)
                load_config(base / "c.toml")
            elif name == "image-archive":
                (base / "i.tar").write_bytes(seed)
                archive_image_id(base / "i.tar")
            else:
                read_outputs(io.BytesIO(seed), base / "out", max_bytes=1 << 22)
