"""open_envelope's refusals by reason code and message, and Fact immutability: behaviours that
surviving mutants of core/signing.py showed untested (docs/testing.md "Mutation testing").

The reason code is the stable counter name of `p2pci status --json` (facts.rejected:
ProtocolError.reason); the message is what a log line and `p2pci import` show."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest

from p2pci.core.codec import canonical
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.messages import Cancel
from p2pci.core.signing import MAX_ENVELOPE, open_envelope, seal, signed_bytes

from .jobgen import key

RAW = seal(key("signer"), Cancel(b"j" * 32)).raw
ENV: dict[str, Any] = msgpack.unpackb(RAW, raw=False)


def pack(**changes: Any) -> bytes:
    return bytes(msgpack.packb({**ENV, **changes}, use_bin_type=True))


def signed_bad_body() -> bytes:
    """A correctly signed, canonical envelope whose cancel body has a 31-byte job."""
    k = key("signer")
    body = {"job": b"j" * 31}
    sig = k.sign(signed_bytes("cancel", canonical(body)))
    return bytes(canonical({"body": body, "kind": "cancel", "sig": sig, "signer": k.public, "v": 2}))


CASES: list[tuple[str, Any, str, str]] = [
    ("not bytes", "a str", "encoding", "^envelope: expected bytes$"),
    (
        "oversize",
        b"\x85" + b"\x00" * MAX_ENVELOPE,
        "oversize",
        f"^envelope: {MAX_ENVELOPE + 1} bytes exceeds the limit of {MAX_ENVELOPE}$",
    ),
    ("not a 5-field map", b"\x80", "encoding", "^envelope: not a canonical 5-field map starting with body$"),
    ("not msgpack", RAW[:-3] + b"\xc1", "encoding", r"^envelope: not valid msgpack: \w+$"),
    (
        "non-minimal int",
        RAW[:-1] + b"\xcc" + RAW[-1:],
        "encoding",
        r"^envelope: not canonical \(re-encoding differs\)$",
    ),
    (
        "field order",
        bytes(msgpack.packb({k: ENV[k] for k in ("body", "sig", "kind", "signer", "v")}, use_bin_type=True)),
        "encoding",
        "^envelope: fields must be exactly body, kind, sig, signer, v in canonical order$",
    ),
    (
        "version 1",
        pack(v=1),
        "version",
        r"^envelope: protocol version 1 is no longer accepted \(this node speaks version 2\)$",
    ),
    ("version 3", pack(v=3), "version", "^envelope: unsupported version 3$"),
    ("sig of 63 bytes", pack(sig=ENV["sig"][:63]), "encoding", r"^envelope\.sig: expected 64 bytes$"),
    ("bad signature", pack(sig=bytes(64)), "signature", "^envelope: bad signature$"),
    ("bad body", signed_bad_body(), "body", "job"),
    (
        "signer of 31 bytes",
        pack(signer=ENV["signer"][:31]),
        "encoding",
        r"^envelope\.signer: expected 32 bytes$",
    ),
]


@pytest.mark.parametrize(("case", "raw", "reason", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_refusal_has_its_reason_code_and_message(case: str, raw: Any, reason: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        open_envelope(raw)
    assert info.value.reason == reason


def test_the_cases_are_one_change_away_from_a_valid_envelope() -> None:
    assert pack() == RAW and open_envelope(RAW).raw == RAW


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_bytearray_and_memoryview_are_read_as_bytes(wrap: Any) -> None:
    fact = open_envelope(wrap(RAW))
    assert type(fact.raw) is bytes and fact.raw == RAW and fact.id == open_envelope(RAW).id


def test_a_fact_is_immutable() -> None:
    # facts are shared by every job view and cache of a board: none may change one in place
    fact = open_envelope(RAW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fact.raw = b"other"  # type: ignore[misc]


def _offer_of_envelope_size(total: int) -> Any:
    """An offer whose sealed envelope would be `total` bytes (16 env entries: the map and each
    string keep their msgpack header size while the last value's length is tuned)."""
    from dataclasses import replace

    from .jobgen import make_offer

    def offer(pad: int) -> Any:
        env = tuple(sorted({**{f"K{i:02d}": "x" * 4096 for i in range(15)}, "PAD": "y" * pad}.items()))
        return replace(make_offer(key("publisher")), env=env)

    base = 1000
    size = len(seal(key("publisher"), offer(base)).raw)
    pad = base + total - size
    assert 256 <= pad <= 4096
    return offer(pad)


def test_seal_takes_an_envelope_of_exactly_64_kib_and_refuses_one_byte_more() -> None:
    # the limit is inclusive on both sides of the wire: what seal makes, open_envelope takes
    at_limit = _offer_of_envelope_size(MAX_ENVELOPE)
    fact = seal(key("publisher"), at_limit)
    assert len(fact.raw) == MAX_ENVELOPE == 65536
    assert open_envelope(fact.raw).id == fact.id
    over = _offer_of_envelope_size(MAX_ENVELOPE + 1)
    with pytest.raises(LocalError, match="^offer envelope of 65537 bytes exceeds 65536$"):
        seal(key("publisher"), over)


# --------------------------------------------------------------------------
# map key order inside a body (`_check_canonical_order`): msgpack keeps a map's order when it
# re-encodes, so only this check refuses a body whose keys are out of order; the signature covers
# the body bytes as sent, so a signer can make such an envelope.


def _sorted_keys(o: Any) -> Any:
    if type(o) is dict:
        return {k: _sorted_keys(o[k]) for k in sorted(o, key=str.encode)}
    if type(o) is list:
        return [_sorted_keys(v) for v in o]
    return o


def _reversed_at(o: Any, path: tuple[str, ...]) -> Any:
    """A copy of `o` with the keys of the map at `path` in reverse order."""
    if not path:
        return {k: o[k] for k in reversed(list(o))}
    return {k: (_reversed_at(v, path[1:]) if k == path[0] else v) for k, v in o.items()}


def _hand_signed(kind: str, body: Any) -> bytes:
    """A correctly signed envelope whose body is packed exactly as given (its key order kept)."""
    k = key("signer")
    sig = k.sign(signed_bytes(kind, bytes(msgpack.packb(body, use_bin_type=True))))
    env = {"body": body, "kind": kind, "sig": sig, "signer": k.public, "v": 2}
    return bytes(msgpack.packb(env, use_bin_type=True))


def _bodies() -> dict[str, Any]:
    from p2pci.core.messages import BlobRef, Claim, Decline, Reveal

    from .jobgen import JobSim, h, make_offer

    sim = JobSim(make_offer(key("publisher")))
    b = sim.built(key("signer"))
    msgs = {
        "offer": sim.offer,
        "claim": Claim(sim.job, 5, b""),
        "reveal": Reveal.of(sim.job, b.digest, b.salt, 0, b.manifest, BlobRef(h(b"log"), 3), ()),
        "decline": Decline(sim.job, "image", "no such image", BlobRef(h(b"log"), 3)),
    }
    return {kind: _sorted_keys(m.to_obj()) for kind, m in msgs.items()}


BODIES = _bodies()
ORDER_CASES = [
    ("claim", ()),  # a kind checked by its fixed field order
    ("reveal", ()),  # reveal: its own fields, then each of its two blob maps
    ("reveal", ("log",)),
    ("reveal", ("manifest",)),
    ("offer", ()),  # the general walk: the top level and each nested map
    ("offer", ("limits",)),
    ("offer", ("source",)),
    ("decline", ("log",)),
]


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_the_hand_signed_bodies_in_canonical_order_are_accepted(kind: str) -> None:
    # the cases below differ from these only by the order of one map's keys
    fact = open_envelope(_hand_signed(kind, BODIES[kind]))
    assert fact.kind == kind and fact.body.to_obj() == BODIES[kind]


@pytest.mark.parametrize(("kind", "path"), ORDER_CASES, ids=[f"{k}:{'.'.join(p) or 'top'}" for k, p in ORDER_CASES])
def test_a_body_map_with_keys_out_of_order_is_refused(kind: str, path: tuple[str, ...]) -> None:
    body = _reversed_at(BODIES[kind], path)
    inner, before = body, BODIES[kind]
    for p in path:
        inner, before = inner[p], before[p]
    assert list(inner) != list(before) and inner == before  # the same map, another order
    with pytest.raises(ProtocolError, match="^envelope: map keys not in canonical order$") as info:
        open_envelope(_hand_signed(kind, body))
    assert info.value.reason == "encoding"


def test_a_body_map_with_an_int_key_is_an_encoding_error() -> None:
    # docs/protocol.md section 1: maps have str keys; the decoder refuses others before any field check
    body = {**BODIES["claim"], 7: b"x"}
    with pytest.raises(ProtocolError, match="^envelope: not valid msgpack: ValueError$") as info:
        open_envelope(_hand_signed("claim", body))
    assert info.value.reason == "encoding"


def test_fact_and_node_key_reprs_name_kind_id_and_peer() -> None:
    # what log lines show: kind, the fact id's first 12 hex digits, the signer's short id
    k = key("signer")
    fact = open_envelope(RAW)
    assert repr(fact) == f"Fact(cancel {fact.id.hex()[:12]} by {k.peer_id[-8:]})"
    assert repr(k) == f"NodeKey({k.peer_id})"


def test_a_fact_has_no_instance_dict() -> None:
    # a board holds every fact of every job: slots keep each one small
    assert not hasattr(open_envelope(RAW), "__dict__")


def test_seal_names_the_kind_of_an_invalid_body() -> None:
    with pytest.raises(LocalError, match="^invalid cancel: job: expected 32 bytes$"):
        seal(key("signer"), Cancel(b"j" * 31))


def test_from_seed_is_the_key_of_that_seed() -> None:
    # what the daemon and the CLI call on node.key
    from p2pci.core.signing import NodeKey

    seed = bytes(range(32))
    k = NodeKey.from_seed(seed)
    assert type(k) is NodeKey and k.seed == seed and k.public == NodeKey(seed).public


def test_generate_makes_a_fresh_working_key() -> None:
    # what the CLI calls when a node has no node.key yet
    from p2pci.core.signing import NodeKey, verify

    a, b = NodeKey.generate(), NodeKey.generate()
    assert type(a) is NodeKey and len(a.seed) == 32 and a.seed != b.seed
    assert NodeKey(a.seed).public == a.public and verify(a.public, b"m", a.sign(b"m"))
