"""docs/protocol.md section 3, rebuilt by hand (nacl + msgpack, not p2pci's encoder): the bytes of
an envelope and its limits. Written from mutation testing: constants such as the signing domain,
the envelope version and size limit and the integer range had no test that could fail."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import nacl.signing
import pytest

from p2pci.core.codec import canonical, decode
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import Claim
from p2pci.core.results import ManifestEntry, result_digest
from p2pci.core.signing import NodeKey, open_envelope, peer_id_of, public_of, seal

SEED = bytes(range(32))
JOB = hashlib.sha256(b"job").digest()


def by_hand(kind: str, body: dict[str, object], *, domain: bytes = b"p2pci/v2/", v: object = 2) -> bytes:
    sk = nacl.signing.SigningKey(SEED)
    body = dict(sorted(body.items(), key=lambda kv: kv[0].encode()))  # canonical: keys in UTF-8 byte order
    body_bytes = msgpack.packb(body, use_bin_type=True)
    sig = sk.sign(domain + kind.encode() + b"\x00" + body_bytes).signature
    env = {"body": body, "kind": kind, "sig": sig, "signer": bytes(sk.verify_key), "v": v}
    return msgpack.packb(env, use_bin_type=True)


def test_an_envelope_built_from_the_spec_is_the_one_seal_makes_and_opens() -> None:
    # version 2 (docs/protocol.md section 3): `v` is the int 2, the signing domain is "p2pci/v2/"
    claim = Claim(JOB, 123_456, b"\x00\x01nonce")
    raw = by_hand("claim", claim.to_obj())
    sealed = seal(NodeKey(SEED), claim)
    assert sealed.raw == raw and sealed.id == hashlib.sha256(raw).digest()
    fact = open_envelope(raw)
    assert fact.kind == "claim" and fact.body == claim and fact.signer == NodeKey(SEED).public


def test_seal_writes_the_canonical_envelope_of_every_kind_of_body() -> None:
    # seal packs the envelope around the body's canonical bytes (envelope_bytes) instead of
    # normalising the whole map again: the bytes must be canonical() of the whole map
    from p2pci.core.messages import BlobRef, Commit, Decline, Reveal

    entries = (ManifestEntry("a", 1, 0o644, hashlib.sha256(b"a").digest()),)
    log = BlobRef(hashlib.sha256(b"log").digest(), 3)
    bodies = [
        Claim(JOB, 2**40, b"n" * 32),
        Commit(JOB, hashlib.sha256(b"c").digest()),
        Reveal.of(JOB, result_digest(0, entries), b"s" * 16, 0, entries, log, (b"\x01" * 32, b"\x02" * 32)),
        Decline(JOB, "timeout", "d\u00e9tail", log),
    ]
    key = NodeKey(SEED)
    for body in bodies:
        fact = seal(key, body)
        sig = fact.raw[-(2 + 1 + 7 + 34 + 66) : -(2 + 1 + 7 + 34)][2:]  # the bin64 after "sig"
        whole = {"v": 2, "kind": body.KIND, "body": body.to_obj(), "signer": key.public, "sig": sig}
        assert fact.raw == canonical(whole), body.KIND
        assert open_envelope(fact.raw).body == body


@pytest.mark.parametrize(
    ("domain", "v", "message"),
    [
        (b"p2pci/v2/", 1, "^envelope: protocol version 1 is no longer accepted"),
        (b"p2pci/v1/", 1, "^envelope: protocol version 1 is no longer accepted"),
        (b"p2pci/v2/", 3, None),
        (b"p2pci/v2/", 0, None),
        (b"", 2, None),
        (b"p2pci/v1/", 2, None),
        (b"p2pci/v3/", 2, None),
    ],
)
def test_another_signing_domain_or_version_is_refused(domain: bytes, v: int, message: str | None) -> None:
    with pytest.raises(ProtocolError, match=message):
        open_envelope(by_hand("claim", Claim(JOB, 1).to_obj(), domain=domain, v=v))


def test_the_envelope_size_limit_is_65536_bytes_exactly() -> None:
    raw = by_hand("claim", Claim(JOB, 1).to_obj())
    with pytest.raises(ProtocolError, match="65537 bytes exceeds the limit of 65536"):
        open_envelope(raw + b"\x00" * (65537 - len(raw)))
    try:  # 65536 bytes passes the size check (and fails later, as trailing garbage)
        open_envelope(raw + b"\x00" * (65536 - len(raw)))
    except ProtocolError as exc:
        assert "exceeds" not in str(exc)


@pytest.mark.parametrize("n", [-(2**63), 2**64 - 1, 0, -1])
def test_integers_in_the_msgpack_range_encode(n: int) -> None:
    assert decode(canonical({"n": n})) == {"n": n}


@pytest.mark.parametrize("n", [-(2**63) - 1, 2**64])
def test_integers_outside_the_msgpack_range_are_refused(n: int) -> None:
    with pytest.raises(LocalError, match=f"^integer out of range: {n}$"):
        canonical({"n": n})


def test_the_result_digest_is_the_documented_formula_by_hand() -> None:
    h1, h2 = hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()
    manifest = [ManifestEntry("b/x", 3, 0o755, h1), ManifestEntry("a", 0, 0o644, h2)]
    # sha256(canonical([exit_code, [{mode, path, sha256, size}...] sorted by path])): keys in UTF-8 order
    entries = [{"mode": 0o644, "path": "a", "sha256": h2, "size": 0}, {"mode": 0o755, "path": "b/x", "sha256": h1, "size": 3}]
    assert result_digest(0, manifest) == hashlib.sha256(msgpack.packb([0, entries], use_bin_type=True)).digest()
    assert result_digest(2, manifest) == hashlib.sha256(msgpack.packb([2, entries], use_bin_type=True)).digest()


def test_manifest_entries_are_immutable_and_ordered() -> None:
    a, b = ManifestEntry("a", 1, 0o644, bytes(32)), ManifestEntry("b", 1, 0o644, bytes(32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.size = 2  # type: ignore[misc]
    assert sorted([b, a]) == [a, b]


@pytest.mark.parametrize("seed", [bytes(32), bytes(range(32)), b"\xff" * 32])
def test_peer_ids_are_libp2p_peer_ids(seed: bytes) -> None:
    # py-libp2p's own encoding of the same key (an independent implementation of base58 and the
    # identity multihash), both ways
    from libp2p.crypto.ed25519 import Ed25519PublicKey
    from libp2p.peer.id import ID

    key = NodeKey(seed)
    theirs = ID.from_pubkey(Ed25519PublicKey.from_bytes(key.public)).to_base58()
    assert peer_id_of(key.public) == theirs and theirs.startswith("12D3KooW")
    assert public_of(theirs) == key.public


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (5, "^not an Ed25519 peer ID"),
        ("12D3KooW", "^not an Ed25519 peer ID"),
        ("0" * 52, "^not base58: '0'$"),
        ("1" * 52, "^not an Ed25519 peer ID"),
    ],
)
def test_bad_peer_ids_are_refused_by_name(bad: object, message: str) -> None:
    with pytest.raises(LocalError, match=message):
        public_of(bad)  # type: ignore[arg-type]


def test_a_public_key_is_32_bytes() -> None:
    with pytest.raises(LocalError, match="^an Ed25519 public key is 32 bytes$"):
        peer_id_of(b"\x01" * 31)


def nested(n: int, inner: object = 0, as_map: bool = False) -> object:
    v = inner
    for _ in range(n):
        v = {"k": v} if as_map else [v]
    return v


@pytest.mark.parametrize("as_map", [False, True])
def test_values_nest_16_deep_and_no_deeper(as_map: bool) -> None:
    assert decode(canonical(nested(16, as_map=as_map))) == nested(16, as_map=as_map)
    with pytest.raises(LocalError, match="^value nested too deeply to encode$"):
        canonical(nested(17, as_map=as_map))


def test_decode_takes_65536_bytes_and_no_more_by_default() -> None:
    at_limit = canonical(b"x" * 65533)  # bin16: 3 header bytes
    assert len(at_limit) == 65536 and decode(at_limit) == b"x" * 65533
    with pytest.raises(ProtocolError, match="^message of 65537 bytes exceeds the limit of 65536$"):
        decode(canonical(b"x" * 65534))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("text", "^expected bytes$"),
        (b"\xc1", "^not valid msgpack: "),
        (b"\x81\x01\x02", "^not valid msgpack: "),  # {1: 2}: map keys must be strings
        (b"\xcb" + bytes(8), "^not canonical: cannot encode float canonically$"),
        (msgpack.packb({"b": 1, "a": 2}), r"^not canonical: re-encoding differs \(key order, int width or float\)$"),
        (b"\xcd\x00\x01", r"^not canonical: re-encoding differs"),  # 1 as uint16
    ],
)
def test_decode_refuses_by_name(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(data)


def test_canonical_refuses_non_string_keys_by_name() -> None:
    with pytest.raises(LocalError, match="^map keys must be str, got int$"):
        canonical({1: 2})


def b58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def test_a_peer_id_must_be_an_ed25519_identity_multihash() -> None:
    pub = NodeKey(SEED).public
    prefix = b"\x00\x24\x08\x01\x12\x20"  # identity multihash of a protobuf Ed25519 PublicKey
    assert public_of(b58(prefix + pub)) == pub
    for raw in (b"\x00\x24\x08\x02\x12\x20" + pub, prefix + pub[:31], prefix + pub + b"\x00"):  # secp256k1 type; short; long
        with pytest.raises(LocalError, match="^not an Ed25519 peer ID"):
            public_of(b58(raw))


def test_short_id_is_the_last_8_characters_of_the_peer_id() -> None:
    from p2pci.core.signing import short_id

    pub = NodeKey(SEED).public
    assert len(short_id(pub)) == 8 and peer_id_of(pub).endswith(short_id(pub))


def test_a_node_key_seed_is_32_bytes() -> None:
    with pytest.raises(LocalError, match="^a node key seed is 32 bytes$"):
        NodeKey(b"\x01" * 31)


def test_verify_accepts_exactly_the_signed_bytes() -> None:
    from p2pci.core.signing import verify

    key = NodeKey(SEED)
    sig = key.sign(b"data")
    assert verify(key.public, b"data", sig) is True
    assert verify(key.public, b"datA", sig) is False
    assert verify(key.public, b"data", bytes(64)) is False
    assert verify(NodeKey(bytes(32)).public, b"data", sig) is False
    assert verify(b"short", b"data", sig) is False  # a malformed key is a refusal, not an exception
