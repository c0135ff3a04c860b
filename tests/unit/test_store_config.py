"""config.toml parsing (p2pci.config)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from p2pci.config import DEFAULT_CONFIG_TEXT, Config, load_config, parse_config, write_default_config
from p2pci.core.errors import LocalError


def test_default_text_is_the_default_config() -> None:
    assert parse_config(tomllib.loads(DEFAULT_CONFIG_TEXT)) == Config()


def test_missing_file_is_default(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.toml") == Config()


def test_write_default_once(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    assert write_default_config(p)
    p.write_text('listen = ["/ip4/127.0.0.1/tcp/0"]\n')
    assert not write_default_config(p)
    assert load_config(p).listen == ("/ip4/127.0.0.1/tcp/0",)


def test_values_are_read() -> None:
    cfg = parse_config(
        tomllib.loads(
            """
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc"]
build = false
[worker]
slots = 3
images = ["sha256:aa"]
open_jobs = false
[timing]
claim_window_ms = 50
"""
        )
    )
    assert cfg.build is False and cfg.worker.slots == 3 and cfg.worker.images == ("sha256:aa",)
    assert cfg.worker.open_jobs is False and cfg.timing.claim_window_ms == 50
    assert cfg.timing.lease_ms == 30_000
    over = cfg.with_overrides(listen=("/ip4/127.0.0.1/tcp/9",), bootstrap=("/x",), build=True)
    assert over.listen == ("/ip4/127.0.0.1/tcp/9",) and over.bootstrap[-1] == "/x" and over.build


@pytest.mark.parametrize(
    "text, msg",
    [
        ("colour = 1", "unknown key colour"),
        ("[worker]\nslot = 1", "unknown key worker.slot"),
        ("[worker]\nslots = true", "worker.slots"),
        ("[worker]\nslots = -1", "worker.slots"),
        ("[worker]\nimages = 5", "worker.images"),
        ("listen = [1]", "listen"),
        ("[timing]\nlease_ms = 'x'", "timing.lease_ms"),
    ],
)
def test_bad_config_names_the_key(text: str, msg: str) -> None:
    with pytest.raises(LocalError, match=msg):
        parse_config(tomllib.loads(text))


def test_bad_toml(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text("listen = [")
    with pytest.raises(LocalError, match="config"):
        load_config(p)


GOOD = "12D3KooWAdebRWmR69kvcoYJHna4fJmhFZ4TAJDD4svbbhrEQA1b"
BAD = "12D3KooWnotapeerid"


@pytest.mark.parametrize(
    "text, msg",
    [
        (f'[trust]\nkeys = ["{GOOD}", "{BAD}"]', r"line 2: trust\.keys\[1\] is not an Ed25519 peer ID: '12D3KooWnotapeerid'"),
        (f'[trust]\nrequire_keys = ["{BAD}"]\nrequire_min = 1', r"line 2: trust\.require_keys\[0\]"),
        (f'[trust]\nrequire_keys = ["{GOOD}"]', r"require_min must be 1\.\.1"),
        ("[trust]\nrequire_min = 1", "require_keys is empty"),
        (f'[trust]\nkeys = ["{GOOD}"]\ncount = "all"', 'count = "all" would ignore it'),
        ('[trust]\ncount = "some"', 'trust.count must be "all" or "listed"'),
        (f'[trust]\nkeys = ["{GOOD}", "{GOOD}"]', "twice"),
    ],
)
def test_trust_settings_fail_closed_and_name_the_key_and_file(tmp_path: Path, text: str, msg: str) -> None:
    p = tmp_path / "config.toml"
    p.write_text(text + "\n")
    with pytest.raises(LocalError, match=msg) as exc:
        load_config(p)
    assert str(p) in str(exc.value)


def test_trust_count_is_explicit_and_keys_imply_listed() -> None:
    assert parse_config({}).trust.count == "all"
    assert parse_config({"trust": {"keys": [GOOD]}}).trust.count == "listed"
    assert parse_config({"trust": {"count": "listed"}}).trust == parse_config({"trust": {"count": "listed"}}).trust
    listed_empty = parse_config({"trust": {"count": "listed"}}).trust
    assert listed_empty.count == "listed" and listed_empty.keys == ()
