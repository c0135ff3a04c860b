"""The identity proof in the home: minted once by `p2pci init`, reused by the daemon, and a
worker whose proof is weaker than an offer's `identity_bits` declines it (code `identity`)."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.main import cli
from p2pci.cli.progress import MintProgress
from p2pci.config import Config, Paths, default_identity_bits, load_config
from p2pci.core.errors import LocalError
from p2pci.core.identity import DEFAULT_IDENTITY_BITS, identity_bits, mint
from p2pci.core.node import NodeConfig, NodeMachine, Publish
from p2pci.core.signing import NodeKey, open_envelope
from p2pci.core.worker import WorkerConfig
from p2pci.identity_home import ensure_identity, load_identity, save_identity

from .jobgen import JobSim, key, make_offer

T0 = 1_000_000


def init(home: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["--home", str(home), "init", *args])
    return r.exit_code, r.stdout, r.stderr


def node_key(home: Path) -> NodeKey:
    return NodeKey.from_seed((home / "node.key").read_bytes())


def test_init_mints_the_proof_once_stores_it_0600_and_json_stays_one_document(tmp_path: Path) -> None:
    home = tmp_path / "h"
    code, out, err = init(home, "--identity-bits", "10", "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout is exactly one JSON document: the progress went to stderr
    assert doc["identity_bits"] >= 10 and doc["identity_minted"] is True and doc["identity_seconds"] >= 0
    assert "minting the identity proof (10 bits" in err and "identity proof:" in err
    path = home / "identity"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    k = node_key(home)
    stored = load_identity(Paths(home), k)
    assert stored is not None and identity_bits(k.public, stored.nonce) >= 10
    # again: reused, not minted, nothing on stderr about minting
    code, out, err = init(home, "--identity-bits", "10", "--json")
    assert code == 0 and json.loads(out)["identity_minted"] is False and "minting" not in err
    assert load_identity(Paths(home), k) == stored
    # a stronger demand than the stored proof happens to meet replaces it with a stronger proof
    stronger = identity_bits(k.public, stored.nonce) + 1
    code, out, _ = init(home, "--identity-bits", str(stronger), "--json")
    assert json.loads(out)["identity_minted"] is True and json.loads(out)["identity_bits"] >= stronger
    again = load_identity(Paths(home), k)
    assert again is not None and identity_bits(k.public, again.nonce) >= stronger


def test_init_default_difficulty_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PCI_IDENTITY_BITS", "9")
    code, out, _ = init(tmp_path / "h", "--json")
    assert code == 0 and json.loads(out)["identity_bits"] >= 9
    monkeypatch.setenv("P2PCI_IDENTITY_BITS", "nine")
    code, _, err = init(tmp_path / "h2")
    assert code == 2 and "P2PCI_IDENTITY_BITS" in err
    code, _, err = init(tmp_path / "h3", "--identity-bits", "41")
    assert code == 2 and "41" in err


def test_the_default_difficulty_is_27_bits_and_config_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2PCI_IDENTITY_BITS", raising=False)
    assert DEFAULT_IDENTITY_BITS == 27 and default_identity_bits() == 27
    assert Config().publish.identity_bits == 27
    cfg = tmp_path / "config.toml"
    cfg.write_text("[publish]\nidentity_bits = 5\n")
    assert load_config(cfg).publish.identity_bits == 5
    monkeypatch.setenv("P2PCI_IDENTITY_BITS", "7")
    assert load_config(cfg).publish.identity_bits == 5  # the file wins over the environment
    cfg.write_text("[publish]\n")
    assert load_config(cfg).publish.identity_bits == 7
    cfg.write_text("[publish]\nidentity_bits = 41\n")
    with pytest.raises(LocalError, match="line 2.*publish.identity_bits"):
        load_config(cfg)
    cfg.write_text("[publish]\nbits = 3\n")
    with pytest.raises(LocalError, match="publish.bits"):
        load_config(cfg)


def test_a_proof_file_of_another_key_or_junk_is_an_error_naming_the_file(tmp_path: Path) -> None:
    paths, k, other = Paths(tmp_path), key("a"), key("b")
    assert load_identity(paths, k) is None
    save_identity(paths, other, mint(other.public, 4))
    with pytest.raises(LocalError, match="identity proof of another key") as e:
        load_identity(paths, k)
    assert str(paths.identity) in str(e.value)
    for junk in (b"\xff\xfe", b"[]", b'{"nonce": "zz"}', b"x" * 5000, json.dumps({"nonce": "00" * 33}).encode()):
        paths.identity.write_bytes(junk)
        with pytest.raises(LocalError, match="is not an identity proof"):
            load_identity(paths, k)


def test_an_edited_bits_field_gives_no_strength(tmp_path: Path) -> None:
    paths, k = Paths(tmp_path), key("a")
    weak = next(bytes([i]) for i in range(256) if identity_bits(k.public, bytes([i])) == 0)
    paths.identity.write_text(json.dumps({"peer_id": k.peer_id, "nonce": weak.hex(), "bits": 40}))
    got = load_identity(paths, k)
    assert got is not None and got.bits == 0
    assert ensure_identity(paths, k, 6).minted  # so init mints a real one


def test_mint_progress_plain_lines_when_not_a_tty_and_a_bar_on_a_tty() -> None:
    plain = io.StringIO()
    p = MintProgress(20, plain, tty=False, every_s=0.0)
    p.start()
    p(1 << 19)
    p.done(21, 1.5)
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("minting the identity proof (20 bits")
    assert "(50% of expected)" in lines[1] and "\r" not in plain.getvalue()
    assert lines[-1] == "identity proof: 21 bits in 1.5s"
    bar = io.StringIO()
    t = MintProgress(20, bar, tty=True)
    t(1 << 19)
    assert bar.getvalue().startswith("\r\x1b[2K") and "[" + "#" * 15 + "-" * 15 + "]" in bar.getvalue()


def _worker(k: NodeKey, nonce: bytes) -> NodeMachine:
    wc = WorkerConfig(k.public, lease_ms=10_000, claim_window_ms=1_000, salt_secret=k.seed, claim_delay_ms=0)
    return NodeMachine(NodeConfig(key=k, worker=wc, identity=nonce))


@pytest.mark.parametrize("have", [0, 6])
def test_a_worker_below_the_offers_identity_bits_declines_with_the_reason(have: int) -> None:
    k = key("w")
    sim = JobSim(make_offer(key("publisher"), created=T0, deadline=T0 + 600_000, identity_bits=7))
    # a proof of exactly `have` bits (a minted one may happen to be stronger than asked)
    nonce = next(n for n in (i.to_bytes(8, "big") for i in range(1 << 16)) if identity_bits(k.public, n) == have)
    m = _worker(k, nonce)
    assert m.cfg.worker.identity_bits == identity_bits(k.public, nonce) < 7
    m.receive_facts([sim.offer_fact], T0)
    facts = [e.fact for e in m.tick(T0) if isinstance(e, Publish)]
    assert [f.kind for f in facts] == ["decline"]
    body = open_envelope(facts[0].raw).body
    assert body.reason == "identity"  # type: ignore[union-attr]
    assert "below the offer's 7" in body.detail and "--identity-bits 7" in body.detail  # type: ignore[union-attr]
    assert m.jobs[sim.job].phase == "SKIPPED"


def test_a_worker_with_enough_identity_claims_and_carries_its_nonce() -> None:
    k = key("w")
    nonce = mint(k.public, 7)
    m = _worker(k, nonce)
    sim = JobSim(make_offer(key("publisher"), created=T0, deadline=T0 + 600_000, identity_bits=7))
    m.receive_facts([sim.offer_fact], T0)
    facts = [e.fact for e in m.tick(T0) if isinstance(e, Publish)]
    assert [f.kind for f in facts] == ["claim"]
    assert open_envelope(facts[0].raw).body.identity == nonce  # type: ignore[union-attr]
