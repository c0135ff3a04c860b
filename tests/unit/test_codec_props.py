"""Codec and envelope properties (issue 3): round trips, unique bytes, hostile input."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.core.board import Board
from p2pci.core.codec import canonical, decode
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import KINDS, Message, message_from_obj
from p2pci.core.signing import (
    Fact,
    NodeKey,
    open_envelope,
    peer_id_of,
    public_of,
    seal,
)

from .jobgen import JobSim, key, make_offer, manifest_for
from .strategies import junk, messages

K = key("signer")


def sample_facts() -> list[Fact]:
    sim = JobSim(make_offer(key("publisher")))
    sim.honest_round([(key("a"), b"good", 0), (key("b"), b"good", 3)])
    sim.decline(key("c"), "image", "no such image")
    sim.cancel()
    return sim.facts


SAMPLES = sample_facts()
KINDS_SEEN = {f.kind for f in SAMPLES}


def test_samples_cover_every_kind() -> None:
    assert KINDS_SEEN == set(KINDS)


@given(messages)
def test_round_trip_every_kind(msg: Message) -> None:
    # body: to_obj -> canonical -> decode -> from_obj gives the same value
    again = message_from_obj(msg.KIND, decode(canonical(msg.to_obj())))
    assert again == msg
    # envelope: seal -> open gives the same fact, byte for byte
    fact = seal(K, msg)
    opened = open_envelope(fact.raw)
    assert opened == fact
    assert opened.body == msg
    assert canonical(decode(fact.raw)) == fact.raw


@given(st.binary(max_size=300))
def test_canonical_bytes_are_unique_or_rejected(data: bytes) -> None:
    try:
        obj = decode(data)
    except ProtocolError:
        return
    assert canonical(obj) == data


@given(junk)
def test_noncanonical_encodings_of_junk_are_rejected(obj: Any) -> None:
    for data in (msgpack.packb(obj, use_bin_type=True), msgpack.packb(obj, use_bin_type=False)):
        try:
            again = decode(data)
        except ProtocolError:
            continue
        assert canonical(again) == data


@given(st.binary(max_size=2000))
def test_random_garbage_only_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        open_envelope(data)
    board = Board()
    assert board.add(data, 0).status == "rejected"


@given(junk, st.sampled_from(sorted(KINDS)))
def test_structured_garbage_only_raises_protocol_error(obj: Any, kind: str) -> None:
    with pytest.raises(ProtocolError):
        message_from_obj(kind, obj)
    env = {"v": 2, "kind": kind, "body": obj, "signer": K.public, "sig": b"\0" * 64}
    for raw in (
        msgpack.packb(env, use_bin_type=True),
        msgpack.packb(dict(sorted(env.items())), use_bin_type=True),
    ):
        with pytest.raises(ProtocolError):
            open_envelope(raw)


@given(st.sampled_from(SAMPLES), st.data())
def test_valid_bodies_with_one_field_replaced_by_junk_are_rejected(fact: Fact, data: st.DataObject) -> None:
    obj = decode(fact.raw)
    body = obj["body"]
    field = data.draw(st.sampled_from(sorted(body)))
    value = data.draw(junk)
    try:
        same = message_from_obj(fact.kind, {**body, field: value}) == fact.body
    except ProtocolError:
        return
    # accepted only if it is still a valid body; then the signature must fail
    if not same:
        obj["body"] = {**body, field: value}
        try:
            raw = canonical(obj)
        except LocalError:
            return
        with pytest.raises(ProtocolError):
            open_envelope(raw)


@pytest.mark.parametrize("fact", SAMPLES, ids=lambda f: f.kind)
def test_every_single_byte_mutation_and_truncation_is_rejected(fact: Fact) -> None:
    raw = fact.raw
    assert open_envelope(raw) == fact
    for i in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            mutated = raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1 :]
            with pytest.raises(ProtocolError):
                open_envelope(mutated)
    for n in range(len(raw)):
        with pytest.raises(ProtocolError):
            open_envelope(raw[:n])
    with pytest.raises(ProtocolError):
        open_envelope(raw + b"\x00")


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.integers(0, 10_000), st.integers(1, 255))
def test_random_single_byte_mutations_are_rejected(fact: Fact, pos: int, delta: int) -> None:
    raw = fact.raw
    i = pos % len(raw)
    mutated = raw[:i] + bytes([(raw[i] + delta) % 256]) + raw[i + 1 :]
    with pytest.raises(ProtocolError):
        open_envelope(mutated)


def test_oversize_envelope_rejected() -> None:
    fact = SAMPLES[-2]
    with pytest.raises(ProtocolError, match="exceeds"):
        open_envelope(fact.raw, max_size=len(fact.raw) - 1)


def test_a_reveal_with_a_wrong_digest_is_a_fact_but_its_manifest_is_refused() -> None:
    """The digest is not checked on receipt (the manifest is a blob): a reveal whose digest is not
    that of its manifest is a valid fact (a vote for that digest), and the manifest it names is
    refused by everyone who fetches it (`parse_manifest`), so no artifact is ever taken from it."""
    from p2pci.core.results import manifest_bytes, parse_manifest
    from p2pci.core.signing import signed_bytes

    reveal = next(f for f in SAMPLES if f.kind == "reveal")
    body = reveal.body.to_obj()
    body["digest"] = b"\x11" * 32
    kb = key("b")
    raw = canonical(
        {
            "v": 2,
            "kind": "reveal",
            "body": body,
            "signer": kb.public,
            "sig": kb.sign(signed_bytes("reveal", canonical(body))),
        }
    )
    rev = open_envelope(raw).body
    data = manifest_bytes(manifest_for(b"good"))
    with pytest.raises(ProtocolError, match="digest") as exc:
        parse_manifest(
            data, sha256=rev.manifest.sha256, files=rev.files, exit_code=rev.exit_code, digest=rev.digest
        )  # type: ignore[union-attr]
    assert exc.value.reason == "digest"
    good = reveal.body
    assert parse_manifest(
        data, sha256=good.manifest.sha256, files=good.files, exit_code=good.exit_code, digest=good.digest
    ) == manifest_for(b"good")  # type: ignore[union-attr]


def test_seal_rejects_invalid_bodies_locally() -> None:
    from dataclasses import replace

    commit = next(f.body for f in SAMPLES if f.kind == "commit")
    with pytest.raises(LocalError):
        seal(K, replace(commit, hash=b"short"))  # type: ignore[type-var]


@given(st.binary(min_size=32, max_size=32))
def test_peer_id_round_trip(seed: bytes) -> None:
    k = NodeKey.from_seed(seed)
    assert k.peer_id.startswith("12D3KooW")
    assert public_of(k.peer_id) == k.public
    assert peer_id_of(k.public) == k.peer_id
    assert NodeKey.from_seed(k.seed).public == k.public


def test_peer_id_known_value_and_bad_input() -> None:
    # value computed by libp2p (py-libp2p 0.8.1 ID.from_pubkey) for seed 0x01*32
    assert NodeKey.from_seed(b"\x01" * 32).peer_id == "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    for bad in ("", "12D3KooW", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "12D3KooW0OIl" + "1" * 40):
        with pytest.raises(LocalError):
            public_of(bad)
    with pytest.raises(LocalError):
        peer_id_of(b"short")
    with pytest.raises(LocalError):
        NodeKey.from_seed(b"short")


@pytest.mark.slow
def test_every_byte_value_at_every_position_of_a_claim_is_rejected() -> None:
    raw = next(f for f in SAMPLES if f.kind == "claim").raw
    for i in range(len(raw)):
        for v in range(256):
            if v == raw[i]:
                continue
            with pytest.raises(ProtocolError):
                open_envelope(raw[:i] + bytes([v]) + raw[i + 1 :])


@settings(max_examples=200)
@given(
    st.sampled_from([0, 1, 127, 128, 255]) | st.integers(0, 255),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]),
    st.integers(0, 20),
    st.binary(min_size=16, max_size=32),
    st.integers(0, 4),
    st.data(),
)
def test_reveal_round_trips_for_every_width(
    code: int, log_size: int, n_seen: int, salt: bytes, n_files: int, data: st.DataObject
) -> None:
    """A reveal names its manifest blob; every width of exit code, log size, seen list and file
    count decodes to the same reveal, through the envelope and through `Reveal.from_obj`."""
    from p2pci.core.messages import BlobRef, Reveal
    from p2pci.core.results import ManifestEntry, parse_manifest, result_digest

    manifest = tuple(
        ManifestEntry(f"f{i:02d}", data.draw(st.integers(0, 2**63 - 1)), 0o644, bytes([i]) * 32)
        for i in range(n_files)
    )
    seen = tuple(bytes([i, 7]) * 16 for i in range(n_seen))
    rev = Reveal.of(b"\x01" * 32, None, salt, code, manifest, BlobRef(b"\x02" * 32, log_size), seen)
    assert rev.digest == result_digest(code, manifest) and rev.files == n_files
    fact = seal(K, rev)
    body_obj = msgpack.unpackb(fact.raw, raw=False)["body"]
    assert Reveal.from_obj(body_obj) == rev
    assert open_envelope(fact.raw) == fact
    from p2pci.core.results import manifest_bytes

    data_ = manifest_bytes(manifest)
    assert (
        parse_manifest(data_, sha256=rev.manifest.sha256, files=n_files, exit_code=code, digest=rev.digest)
        == manifest
    )


@pytest.mark.parametrize(
    ("files", "size"),
    [
        (0, 0),
        (0, 2),
        (1, 1),
        (3, 3 * 61),
        (10, 1 + 9 * 61),
        (1_000_001, 200 << 20),
        (2, 1 + 2 * 16459),
        (5, (256 << 20) + 1),
    ],
)
def test_a_reveal_whose_manifest_size_cannot_hold_its_files_is_refused(files: int, size: int) -> None:
    """`files` and `manifest.size` are checked on receipt: a manifest blob is never fetched beyond
    the limits, nor with a size no `files` entries can have."""
    from p2pci.core.signing import signed_bytes

    reveal = next(f for f in SAMPLES if f.kind == "reveal")
    body = reveal.body.to_obj()
    body["files"] = files
    body["manifest"] = {"sha256": b"\x05" * 32, "size": size}
    sig = K.sign(signed_bytes("reveal", canonical(body)))
    raw = canonical({"v": 2, "kind": "reveal", "body": body, "signer": K.public, "sig": sig})
    with pytest.raises(ProtocolError, match="files|manifest"):
        open_envelope(raw)


def test_the_largest_reveal_fits_the_envelope() -> None:
    """Outputs of any size: a reveal's size no longer depends on the outputs (the old failure:
    an inline manifest over 64 KiB could not be sealed), only on `seen`, which is bounded."""
    from p2pci.core.messages import MAX_SEEN, BlobRef, Reveal

    rev = Reveal(
        b"\x01" * 32,
        b"\x02" * 32,
        b"\x03" * 32,
        255,
        BlobRef(b"\x04" * 32, 256 << 20),
        1_000_000,
        BlobRef(b"\x05" * 32, 2**63 - 1),
        tuple(i.to_bytes(32, "big") for i in range(MAX_SEEN)),
    )
    fact = seal(K, rev)
    assert len(fact.raw) < 40_000 and open_envelope(fact.raw).body == rev
