"""Strict decoding of message bodies: the error names the field."""

from __future__ import annotations

from typing import Any

import pytest

from p2pci.core.codec import canonical, decode
from p2pci.core.errors import ProtocolError
from p2pci.core.messages import Offer, Reveal, job_of, message_from_obj

from .jobgen import JobSim, key, make_offer

SIM = JobSim(make_offer(key("publisher")))
SIM.honest_round([(key("a"), b"good", 0)])
OFFER = SIM.offer.to_obj()
REVEAL = next(f.body for f in SIM.facts if f.kind == "reveal").to_obj()


def bad(kind: str, obj: dict[str, Any], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        message_from_obj(kind, decode(canonical(obj)))


def test_valid_bodies_decode() -> None:
    assert message_from_obj("offer", OFFER) == SIM.offer
    assert isinstance(message_from_obj("reveal", REVEAL), Reveal)
    assert job_of(SIM.offer) is None
    assert job_of(message_from_obj("reveal", REVEAL)) == SIM.job


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("project", "", "project"),
        ("project", "x" * 201, "project"),
        ("project", 5, "project"),
        ("command", [], "command"),
        ("command", ["ok", 3], r"command\[1\]"),
        ("env", {"1BAD": "x"}, "env"),
        ("env", {"A": 1}, "env.A"),
        ("replicas", 65, "replicas"),
        ("replicas", 0, "replicas"),
        ("quorum", 4, "quorum"),
        ("quorum", True, "quorum"),
        ("workers", "closed", "workers"),
        ("workers", [], "workers"),
        ("workers", [b"k" * 32, b"k" * 32], "duplicate"),
        ("workers", [b"short"], r"workers\[0\]"),
        ("require", {"keys": [b"k" * 32], "min": 2}, "require.min"),
        ("require", {"keys": [b"k" * 32]}, "require"),
        ("deadline", 0, "deadline"),
        ("source_date_epoch", -1, "source_date_epoch"),
        ("limits", {"timeout_s": 1}, "limits"),
        ("image", {"id": "latest", "archive": None}, "image.id"),
        ("source", {"sha256": b"x" * 31, "size": 1}, "source.sha256"),
    ],
)
def test_offer_field_errors_name_the_field(field: str, value: Any, match: str) -> None:
    bad("offer", {**OFFER, field: value}, match)


def test_missing_and_extra_fields() -> None:
    obj = dict(OFFER)
    del obj["created"]
    bad("offer", obj, "missing fields \\['created'\\]")
    bad("offer", {**OFFER, "secret": "x"}, "extra fields \\['secret'\\]")
    with pytest.raises(ProtocolError, match="unknown kind"):
        message_from_obj("vote", {})
    with pytest.raises(ProtocolError, match="expected a map"):
        Offer.from_obj([1, 2])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("salt", b"s" * 15, "salt"),
        ("salt", b"s" * 33, "salt"),
        ("exit_code", 256, "exit_code"),
        ("exit_code", -1, "exit_code"),
        ("seen", [b"c" * 32, b"c" * 32], "seen"),
        ("seen", [b"c" * 32] * 0 + [b"short"], r"seen\[0\]"),
        ("log", {"sha256": b"l" * 32}, "log"),
        ("manifest", {"sha256": b"h" * 32}, "manifest"),
        ("manifest", [], "manifest"),
        ("manifest", {"sha256": b"h" * 31, "size": 1}, "manifest.sha256"),
        ("manifest", {"sha256": b"h" * 32, "size": 1 + 61}, "manifest.size"),  # 0 files take 1 byte
        ("files", -1, "files"),
        ("files", 1_000_001, "files"),
        ("files", True, "files"),
    ],
)
def test_reveal_field_errors_name_the_field(field: str, value: Any, match: str) -> None:
    bad("reveal", {**REVEAL, field: value}, match)


def test_require_keys_outside_the_allowlist_are_refused() -> None:
    """issue 18: with an allowlist, every require key must be in it (such a job could never finish):
    refused on the wire (ProtocolError), and by the publisher before signing (LocalError)."""
    from p2pci.core.errors import LocalError
    from p2pci.core.messages import BlobRef, Require
    from p2pci.core.offer import PublishRequest, check
    from p2pci.core.signing import seal

    pub, a, b = key("pub"), key("a"), key("b")
    inside = make_offer(pub, replicas=2, quorum=1, workers=(a.public, b.public), require=Require((b.public,), 1))
    message_from_obj("offer", decode(canonical(inside.to_obj())))  # accepted
    outside = inside.to_obj() | {"workers": [a.public], "require": {"keys": [b.public], "min": 1}}
    with pytest.raises(ProtocolError, match="not in the allowlist"):
        message_from_obj("offer", decode(canonical(outside)))
    open_mode = inside.to_obj() | {"workers": "open", "require": {"keys": [b.public], "min": 1}}
    message_from_obj("offer", decode(canonical(open_mode)))  # open mode: any require key
    import dataclasses

    with pytest.raises(LocalError, match="not in the allowlist"):
        seal(pub, dataclasses.replace(inside, workers=(a.public,)))
    req = PublishRequest("p", BlobRef(bytes(32), 1), "busybox", ("true",), replicas=2, quorum=1,
                         workers=(a.public,), require=Require((b.public,), 1))  # fmt: skip
    with pytest.raises(LocalError, match="is not in the workers list"):
        check(req)
