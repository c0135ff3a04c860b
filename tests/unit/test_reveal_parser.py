"""The reveal fast path of `open_envelope` against the generic decoder (`open_envelope_generic`).

The fast path (`signing._REVEAL_RE` and `_open_reveal`) must accept exactly what the generic path
accepts, as the same Fact, and leave every refusal to it: for any input both give the same Fact or
the same ProtocolError (message and reason code). It must also be taken for every valid canonical
reveal (else it would be dead code that the differential test cannot see). The `reveal-fast` fuzz
target runs the same comparison on arbitrary signed bodies.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from p2pci.core import signing
from p2pci.core.board import AddResult
from p2pci.core.codec import canonical
from p2pci.core.errors import ProtocolError
from p2pci.core.frozen import builder
from p2pci.core.messages import MAX_SEEN, BlobRef, Cancel, Reveal
from p2pci.core.results import ENTRY_MAX_BYTES, ENTRY_MIN_BYTES, MAX_MANIFEST_BYTES, MAX_MANIFEST_ENTRIES
from p2pci.core.selection import Selection
from p2pci.core.signing import (
    DOMAIN,
    Fact,
    open_envelope,
    open_envelope_generic,
    seal,
)
from p2pci.core.tally import Group, Ignored, Verdict

from .jobgen import key

KEY = key("reveal-parser")
H = bytes(range(32))


def envelope(body: bytes, *, kind: bytes = b"reveal", sig: bytes | None = None) -> bytes:
    """An envelope around `body` (canonical bytes or not), signed over exactly those bytes."""
    if sig is None:
        sig = KEY.sign(DOMAIN + kind + b"\x00" + body)
    return (
        b"\x85\xa4body" + body + b"\xa4kind" + bytes([0xA0 + len(kind)]) + kind
        + b"\xa3sig\xc4\x40" + sig + b"\xa6signer\xc4\x20" + KEY.public + b"\xa1v\x02"
    )  # fmt: skip


def body_obj(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "job": H,
        "digest": b"d" * 32,
        "salt": b"s" * 16,
        "exit_code": 0,
        "manifest": {"sha256": b"m" * 32, "size": 1 + 3 * ENTRY_MIN_BYTES},
        "files": 3,
        "log": {"sha256": b"l" * 32, "size": 10},
        "seen": [bytes([i]) * 32 for i in range(3)],
    }
    obj.update(changes)
    return obj


def outcome(decode: Any, raw: Any) -> tuple[str, object, object]:
    try:
        fact = decode(raw)
    except ProtocolError as exc:
        return ("refused", str(exc), exc.reason)
    return ("accepted", fact, type(fact.body))


def same(raw: Any) -> tuple[str, object, object]:
    """Both decoders agree on `raw`; their common outcome."""
    fast, generic = outcome(open_envelope, raw), outcome(open_envelope_generic, raw)
    assert fast == generic, (fast, generic)
    return fast


def took_fast_path(raw: bytes) -> bool:
    m = signing._REVEAL_RE.fullmatch(raw)
    return m is not None and signing._open_reveal(raw, m, None) is not None


# ints at every boundary of msgpack's unsigned encodings, and past the field limits
EDGES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
seen_lists = st.lists(st.binary(min_size=32, max_size=32), max_size=40, unique=True)


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    files = draw(st.sampled_from([0, 1, 15, 16, 1000, 65536, MAX_MANIFEST_ENTRIES]) | st.integers(0, 2000))
    head = 1 if files < 16 else 3 if files <= 0xFFFF else 5
    lo, hi = head + files * ENTRY_MIN_BYTES, min(head + files * ENTRY_MAX_BYTES, MAX_MANIFEST_BYTES)
    size = draw(st.sampled_from([lo, hi]) | st.integers(lo, hi))
    return body_obj(
        job=draw(st.binary(min_size=32, max_size=32)),
        digest=draw(st.binary(min_size=32, max_size=32)),
        salt=draw(st.binary(min_size=16, max_size=32)),
        exit_code=draw(st.integers(0, 255)),
        manifest={"sha256": draw(st.binary(min_size=32, max_size=32)), "size": size},
        files=files,
        log={"sha256": draw(st.binary(min_size=32, max_size=32)), "size": draw(st.sampled_from(EDGES[:11]))},
        seen=draw(seen_lists),
    )


@given(valid_bodies())
@example(body_obj(seen=[bytes([i]) * 32 for i in range(16)]))  # the first array16 header
@example(body_obj(seen=[]))
def test_every_valid_reveal_takes_the_fast_path_to_the_same_fact(obj: dict[str, Any]) -> None:
    raw = envelope(canonical(obj))
    assert took_fast_path(raw)
    status, fact, kind = same(raw)
    assert status == "accepted" and kind is Reveal
    assert isinstance(fact, Fact) and fact.body.to_obj() == obj and fact.raw == raw


def test_a_sealed_reveal_takes_the_fast_path() -> None:
    fact = seal(KEY, Reveal(H, H, b"s" * 20, 3, BlobRef(H, 1 + 2 * ENTRY_MIN_BYTES), 2, BlobRef(H, 5), (H,)))
    assert took_fast_path(fact.raw)
    assert open_envelope(fact.raw) == fact == open_envelope_generic(fact.raw)
    assert open_envelope(fact.raw, fact_id=b"i" * 32).id == b"i" * 32  # the board's precomputed id


@pytest.mark.parametrize(
    ("case", "obj", "reason", "message"),
    [
        ("seen repeats an id", body_obj(seen=[H, H]), "body", "seen: duplicate keys"),
        ("seen over the limit", body_obj(seen=[i.to_bytes(32, "big") for i in range(MAX_SEEN + 1)]), "body", "seen"),
        ("manifest too small", body_obj(files=3, manifest={"sha256": H, "size": 5}), "body", "manifest.size"),
        ("files over the limit", body_obj(files=MAX_MANIFEST_ENTRIES + 1), "body", "files"),
        ("salt of 15 bytes", body_obj(salt=b"s" * 15), "body", "salt"),
        ("salt of 33 bytes", body_obj(salt=b"s" * 33), "body", "salt"),
        ("exit code 256", body_obj(exit_code=256), "body", "exit_code"),
        ("log size 2**63", body_obj(log={"sha256": H, "size": 2**63}), "body", "log.size"),
        ("job of 31 bytes", body_obj(job=H[:31]), "body", "job"),
        ("seen item of 31 bytes", body_obj(seen=[H[:31]]), "body", "seen"),
        ("exit code a str", body_obj(exit_code="0"), "body", "exit_code"),
        ("an extra field", body_obj(extra=1), "body", "extra"),
    ],
)
def test_a_signed_bad_body_is_refused_as_the_generic_path_refuses_it(
    case: str, obj: dict[str, Any], reason: str, message: str
) -> None:
    raw = envelope(canonical(obj))
    status, msg, why = same(raw)
    assert (status, why) == ("refused", reason) and message in str(msg)
    # a bad body is named before a bad signature, on both paths
    bad_sig = envelope(canonical(obj), sig=bytes(64))
    assert same(bad_sig)[::2] == ("refused", reason)


def test_a_bad_signature_on_a_good_body_is_a_signature_refusal() -> None:
    raw = envelope(canonical(body_obj()), sig=bytes(64))
    assert same(raw) == ("refused", "envelope: bad signature", "signature")
    other = bytearray(envelope(canonical(body_obj())))
    other[-40] ^= 1  # inside the signer key
    assert same(bytes(other))[0] == "refused"


@pytest.mark.parametrize(
    ("case", "old", "new"),
    [
        ("exit code as uint8", b"\xa9exit_code\x00", b"\xa9exit_code\xcc\x00"),
        ("files as uint16", b"\xa5files\x03", b"\xa5files\xcd\x00\x03"),
        ("log size as uint32", b"\xa4size\x0a", b"\xa4size\xce\x00\x00\x00\x0a"),
        ("salt as bin16", b"\xa4salt\xc4\x10", b"\xa4salt\xc5\x00\x10"),
        ("seen as array16", b"\xa4seen\x93", b"\xa4seen\xdc\x00\x03"),
        ("job as str", b"\xa3job\xc4\x20", b"\xa3job\xb2" + b"x" * 18 + b"\xa3xxx\xc4\x20"),
    ],
)
def test_a_signed_non_canonical_encoding_is_refused_as_the_generic_path_refuses_it(
    case: str, old: bytes, new: bytes
) -> None:
    body = canonical(body_obj())
    assert body.count(old) == 1
    raw = envelope(body.replace(old, new))
    assert not took_fast_path(raw)
    assert same(raw)[0] == "refused"


def test_a_seen_header_that_disagrees_with_its_items_is_left_to_the_generic_path() -> None:
    body = canonical(body_obj())
    for header in (b"\xa4seen\x92", b"\xa4seen\x94"):  # 2 or 4 items announced, 3 present
        raw = envelope(body.replace(b"\xa4seen\x93", header))
        assert signing._REVEAL_RE.fullmatch(raw) is not None or header == b"\xa4seen\x92"
        assert not took_fast_path(raw)
        assert same(raw)[0] == "refused"


@given(st.data())
def test_any_mutation_of_a_signed_reveal_body_gets_the_same_outcome(data: st.DataObject) -> None:
    body = bytearray(canonical(data.draw(valid_bodies())))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, len(body) - 1))
        if op == "flip":
            body[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            body[i] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0x90, 0x9F, 0xC4, 0xCC, 0xCD, 0xDC, 0xFF]))
        elif op == "insert":
            body[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and len(body) > 1:
            del body[i]
        else:
            del body[i + 1 :]
    signed = data.draw(st.booleans() | st.just(True))
    raw = envelope(bytes(body), sig=None if signed else bytes(64))
    same(raw)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_get_the_same_outcome(raw: bytes) -> None:
    same(raw)
    same(b"\x85\xa4body\x88\xa6digest\xc4\x20" + raw)


def test_other_kinds_and_non_bytes_are_unchanged() -> None:
    fact = seal(KEY, Cancel(H))
    assert same(fact.raw) == ("accepted", fact, Cancel)
    assert same("a str")[0] == "refused"
    assert same(bytearray(fact.raw))[0] == "accepted"
    assert same(memoryview(fact.raw))[0] == "accepted"
    assert outcome(lambda r: open_envelope(r, max_size=100), fact.raw)[2] == "oversize"


# --------------------------------------------------------------------------
# core.frozen.builder


def values(cls: type) -> list[object]:
    sel = Selection()
    by_type: dict[str, object] = {"bytes": H, "str": "x", "int": 7, "Selection": sel}
    out: list[object] = []
    for f in dataclasses.fields(cls):
        t = str(f.type)
        out.append(next((v for k, v in by_type.items() if t.startswith(k)), ()))
    return out


@pytest.mark.parametrize("cls", [Fact, Reveal, BlobRef, Verdict, Group, Ignored, AddResult])
def test_a_builder_makes_the_object_the_class_makes(cls: type) -> None:
    args = values(cls)
    built, made = builder(cls)(*args), cls(*args)
    assert type(built) is cls and built == made and hash(built) == hash(made) and repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(cls)[0].name, None)
    with pytest.raises(TypeError):
        builder(cls)(*args[:-1])  # every field, no defaults


def test_a_builder_refuses_classes_it_would_get_wrong() -> None:
    with pytest.raises(TypeError, match="__post_init__"):
        builder(Selection)

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    with pytest.raises(TypeError, match="slots"):
        builder(NoSlots)


def test_msgpack_decodes_the_fast_path_bytes_as_the_generic_path_does() -> None:
    # the layout the regular expression matches is msgpack's canonical one (a sanity check that
    # the two agree on what "canonical" means: re-encoding is the identity)
    raw = envelope(canonical(body_obj(files=70000, manifest={"sha256": H, "size": 5 + 70000 * ENTRY_MIN_BYTES})))
    assert took_fast_path(raw)
    assert msgpack.packb(msgpack.unpackb(raw, raw=False), use_bin_type=True) == raw
