"""The pure helpers of `make demo` (no processes, no Docker): fast."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from p2pci.config import parse_config
from p2pci.core.signing import NodeKey
from p2pci.demo import diff_highlights, set_allowlist
from p2pci.recipe import load_recipe
from p2pci.testing.mesh import FAST_TIMING, toml_text

REPO = Path(__file__).resolve().parents[2]

DIFFOSCOPE = """\
--- /tmp/p2pci-diff-ufnb3src/24200f84f06f
+++ /tmp/p2pci-diff-ufnb3src/32050f8bb088
├── stat {}
│ @@ -1,8 +1,8 @@
│ -Modify: 2026-11-25 20:38:11.416591661 +0000
│ +Modify: 2026-11-25 20:38:11.429032432 +0000
│   --- /tmp/p2pci-diff-ufnb3src/24200f84f06f/message.txt
├── +++ /tmp/p2pci-diff-ufnb3src/32050f8bb088/message.txt
│ ├── stat {}
│ │ -Modify: 2026-11-25 20:38:11.415873556 +0000
│ │ +Modify: 2026-11-25 20:38:11.417553138 +0000
│   --- /tmp/p2pci-diff-ufnb3src/24200f84f06f/stamp.txt
├── +++ /tmp/p2pci-diff-ufnb3src/32050f8bb088/stamp.txt
│ @@ -1,2 +1,2 @@
│  built at 2026-11-25T20:37:48Z
│ -build id 932614a7-69c8-4e40-80a9-238e8b6451b0
│ +build id f39df34c-39de-43ea-952d-b0d6ebf62992
"""


def test_diff_highlights_name_the_file_and_bytes_not_metadata() -> None:
    assert diff_highlights(DIFFOSCOPE) == [
        "file stamp.txt",
        "  -build id 932614a7-69c8-4e40-80a9-238e8b6451b0",
        "  +build id f39df34c-39de-43ea-952d-b0d6ebf62992",
    ]
    assert diff_highlights("--- a\n+++ b\n") == []


def test_set_allowlist_makes_the_traditional_example_publishable(tmp_path: Path) -> None:
    project = tmp_path / "traditional"
    shutil.copytree(REPO / "examples" / "traditional", project)
    worker = NodeKey.generate().peer_id
    set_allowlist(project, [worker], replicas=1, quorum=1)
    recipe = load_recipe(project)
    assert recipe.trust.workers == (worker,)
    assert (recipe.trust.replicas, recipe.trust.quorum) == (1, 1)
    # Idempotent: a second rewrite replaces, never duplicates, the keys.
    set_allowlist(project, [worker], replicas=1, quorum=1)
    assert load_recipe(project).trust.workers == (worker,)


def test_demo_config_is_a_valid_node_config() -> None:
    text = toml_text(
        {
            "listen": ["/ip4/127.0.0.1/tcp/0"],
            "bootstrap": ['/ip4/127.0.0.1/tcp/1/p2p/12D3Koo"x'],
            "build": False,
            "worker": {"slots": 2},
            "timing": FAST_TIMING,
        }
    )
    cfg = parse_config(tomllib.loads(text))
    assert cfg.build is False and cfg.worker.slots == 2
    assert cfg.bootstrap == ('/ip4/127.0.0.1/tcp/1/p2p/12D3Koo"x',)
    assert cfg.timing.claim_window_ms == FAST_TIMING["claim_window_ms"]
