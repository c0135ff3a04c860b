"""tests/vectors/ (written from docs/protocol.md, see its README) against p2pci's own decoder and tally.

The same files are checked by the independent JS client (tests/interop); a
disagreement here means the code or the document is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pci.core.codec import decode
from p2pci.core.errors import ProtocolError
from p2pci.core.evidence import verify_bundle
from p2pci.core.results import manifest_bytes, parse_manifest
from p2pci.core.signing import open_envelope
from p2pci.core.tally import verdict_json

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())


def test_index_has_each_kind_of_vector() -> None:
    assert INDEX["protocol"] == 2
    kinds = {e["kind"] for e in INDEX["envelopes"] if e["expect"] == "valid"}
    assert kinds == {"offer", "claim", "commit", "reveal", "cancel", "select", "decline"}
    assert sum(e["expect"] == "invalid" for e in INDEX["envelopes"]) >= 40
    assert {j["expect"]["verdict"] for j in INDEX["jobs"]} >= {
        "REPRODUCED",
        "DISPUTED",
        "FAILED",
        "PENDING",
        "CANCELLED",
        "EXPIRED",
    }
    assert sum(m["expect"] == "invalid" for m in INDEX["manifests"]) >= 10
    assert any(m["expect"] == "valid" for m in INDEX["manifests"])
    names = {j["name"] for j in INDEX["jobs"]}
    assert {"select_faults_seed_first", "several_claims_any_identity", "expired_no_round"} <= names


@pytest.mark.parametrize("vec", INDEX["envelopes"], ids=lambda v: str(v["name"]))
def test_envelope_vector(vec: dict[str, Any]) -> None:
    raw = (VECTORS / vec["file"]).read_bytes()
    if vec["expect"] == "valid":
        fact = open_envelope(raw)
        assert fact.id.hex() == vec["fact_id"]
        assert fact.kind == vec["kind"]
    else:
        with pytest.raises(ProtocolError):
            open_envelope(raw)


@pytest.mark.parametrize("vec", INDEX["codec"], ids=lambda v: str(v["name"]))
def test_codec_vector(vec: dict[str, Any]) -> None:
    raw = (VECTORS / vec["file"]).read_bytes()
    if vec["expect"] == "canonical":
        decode(raw)
    else:
        with pytest.raises(ProtocolError):
            decode(raw)


@pytest.mark.parametrize("vec", INDEX["manifests"], ids=lambda v: str(v["name"]))
def test_manifest_vector(vec: dict[str, Any]) -> None:
    """A manifest blob against the reveal fields naming it (docs/protocol.md §4.4.1)."""
    data = (VECTORS / vec["file"]).read_bytes()
    r = vec["reveal"]
    args = {
        "sha256": bytes.fromhex(r["sha256"]),
        "files": r["files"],
        "exit_code": r["exit_code"],
        "digest": bytes.fromhex(r["digest"]),
    }
    if vec["expect"] == "valid":
        assert manifest_bytes(parse_manifest(data, **args)) == data
    else:
        with pytest.raises(ProtocolError):
            parse_manifest(data, **args)


@pytest.mark.parametrize("vec", INDEX["jobs"], ids=lambda v: str(v["name"]))
def test_job_vector(vec: dict[str, Any]) -> None:
    view, verdict = verify_bundle((VECTORS / vec["bundle"]).read_bytes(), vec["now"])
    got = verdict_json(view, verdict)
    want = vec["expect"]
    assert {k: got.get(k) for k in want} == want  # field by field, reason strings whole
