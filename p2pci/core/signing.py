"""Node keys, peer IDs and signed envelopes (docs/protocol.md sections 2 and 3).

Envelope on the wire (protocol version 2): the canonical map `{v: 2, kind, body, signer, sig}`,
`sig = Ed25519(signer, b"p2pci/v2/" + kind + b"\\x00" + canonical(body))`,
fact id = sha256(envelope bytes). Version 1 envelopes are refused with a reason
that says so.

Signatures are verified with libsodium's `crypto_sign_open` (strict rules: S
canonical (< L), R and the public key not of small order, the public key
canonically encoded, the cofactorless equation checked by comparing the
encoding of R); docs/protocol.md section 3 states them for other implementations.

`open_envelope` is the one door for bytes from the network: it decodes,
checks that the bytes are the canonical encoding (re-encoding and exact key
order), checks every field of the body and verifies the signature. A reveal names its
manifest blob by hash (and entry count): its digest is checked against the
manifest when that blob is fetched (`results.parse_manifest`), never at
receipt. Anything wrong is a `ProtocolError`; nothing else escapes.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.signing

from p2pci.core.codec import canonical
from p2pci.core.errors import LocalError, ProtocolError
from p2pci.core.frozen import builder
from p2pci.core.messages import (
    KINDS,
    MAX_SEEN,
    SALT_MAX,
    SALT_MIN,
    BlobRef,
    Message,
    Offer,
    Reveal,
    message_from_obj,
)
from p2pci.core.results import manifest_size_error

DOMAIN = b"p2pci/v2/"
VERSION = 2
MAX_ENVELOPE = 65536

# --------------------------------------------------------------------------
# peer IDs: base58btc(identity multihash(protobuf PublicKey{Type=Ed25519, Data=key}))

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_PEER_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        i = _B58_INDEX.get(c)
        if i is None:
            raise LocalError(f"not base58: {c!r}")
        n = n * 58 + i
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * pad + body


def peer_id_of(public: bytes) -> str:
    """The libp2p peer ID string (12D3KooW...) of a raw Ed25519 public key."""
    if type(public) is not bytes or len(public) != 32:
        raise LocalError("an Ed25519 public key is 32 bytes")
    return _peer_id(public)


@functools.lru_cache(maxsize=4096)
def _peer_id(public: bytes) -> str:
    # memoised: every verdict object names each worker several times, on every tick that
    # touches the job, and base58 of 38 bytes is ~50 long divisions (bounded: 4096 keys)
    return _b58encode(_PEER_PREFIX + public)


def public_of(peer_id: str) -> bytes:
    """The raw Ed25519 public key inside a peer ID; LocalError if it is not one."""
    if not isinstance(peer_id, str) or not 40 <= len(peer_id) <= 60:
        raise LocalError(f"not an Ed25519 peer ID: {peer_id!r:.80}")
    raw = _b58decode(peer_id)
    if len(raw) != 38 or not raw.startswith(_PEER_PREFIX):
        raise LocalError(f"not an Ed25519 peer ID: {peer_id!r:.80}")
    return raw[6:]


def short_id(public: bytes) -> str:
    """A short human label for a key: the tail of its peer ID."""
    return peer_id_of(public)[-8:]


# --------------------------------------------------------------------------
# node keys


class NodeKey:
    """An Ed25519 key pair made from a 32-byte seed (the content of node.key)."""

    __slots__ = ("_sk", "seed", "public", "peer_id")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != 32:
            raise LocalError("a node key seed is 32 bytes")
        self._sk = nacl.signing.SigningKey(seed)
        self.seed = seed
        self.public: bytes = bytes(self._sk.verify_key)
        self.peer_id: str = peer_id_of(self.public)

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        return cls(seed)

    def sign(self, data: bytes) -> bytes:
        sig: bytes = self._sk.sign(data).signature
        return sig

    def __repr__(self) -> str:
        return f"NodeKey({self.peer_id})"


def verify(public: bytes, data: bytes, sig: bytes) -> bool:
    """Raw Ed25519 verification (no exception)."""
    try:
        nacl.bindings.crypto_sign_open(sig + data, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True


def signed_bytes(kind: str, body_bytes: bytes) -> bytes:
    return DOMAIN + kind.encode() + b"\x00" + body_bytes


def commit_hash(salt: bytes, digest: bytes, signer: bytes) -> bytes:
    """sha256(salt || digest || signer): what a commit publishes before the reveal."""
    return hashlib.sha256(salt + digest + signer).digest()


# --------------------------------------------------------------------------
# facts


@dataclass(frozen=True, slots=True)
class Fact:
    """A verified signed envelope."""

    id: bytes  # sha256(raw)
    kind: str
    signer: bytes  # 32-byte Ed25519 public key
    body: Message
    raw: bytes

    @property
    def job(self) -> bytes:
        """The job this fact belongs to (an offer's job id is its own id)."""
        if isinstance(self.body, Offer):
            return self.id
        return self.body.job

    def __repr__(self) -> str:
        return f"Fact({self.kind} {self.id.hex()[:12]} by {short_id(self.signer)})"


def envelope_bytes(kind: str, body_bytes: bytes, signer: bytes, sig: bytes) -> bytes:
    """canonical({"v": 2, "kind": kind, "body": body, "signer": signer, "sig": sig}) from the
    body's canonical bytes: the map's keys in canonical order, each value packed as itself
    (msgpack nests by concatenation), so the body is not normalised and packed twice."""
    pack = functools.partial(msgpack.packb, use_bin_type=True)
    return b"".join(
        (_HEAD, body_bytes, pack("kind"), pack(kind), pack("sig"), pack(sig), pack("signer"), pack(signer), pack("v"), pack(VERSION))
    )


def seal(key: NodeKey, body: Message) -> Fact:
    """Sign `body` with `key` into an envelope. LocalError if the body is invalid."""
    try:
        body_obj = body.to_obj()
        body_bytes = canonical(body_obj)
        type(body).from_obj(msgpack.unpackb(body_bytes, raw=False))
    except ProtocolError as exc:
        raise LocalError(f"invalid {body.KIND}: {exc}") from None
    sig = key.sign(signed_bytes(body.KIND, body_bytes))
    raw = envelope_bytes(body.KIND, body_bytes, key.public, sig)
    if len(raw) > MAX_ENVELOPE:
        raise LocalError(f"{body.KIND} envelope of {len(raw)} bytes exceeds {MAX_ENVELOPE}")
    return Fact(hashlib.sha256(raw).digest(), body.KIND, key.public, body, raw)


_PREFIXES = {k: DOMAIN + k.encode() + b"\x00" for k in KINDS}
# One reusable msgpack packer per thread (msgpack.packb builds a new Packer on every call).
_LOCAL = threading.local()
_sign_open = nacl.bindings.crypto_sign_open

# Keys of the envelope in canonical order (sorted by UTF-8 bytes).
_ENVELOPE_KEYS = ("body", "kind", "sig", "signer", "v")
# Bytes after the body: "kind" str, "sig" bin64, "signer" bin32, "v" 1.
_TAIL_FIXED = 5 + 1 + 4 + 66 + 7 + 34 + 2 + 1
_HEAD = b"\x85\xa4body"


def _checked_bytes(raw: bytes, max_size: int) -> bytes:
    """`raw` as `bytes` (a bytearray or memoryview is copied), at most `max_size` long.
    ProtocolError("encoding") for any other type, ProtocolError("oversize") past the limit."""
    if type(raw) is not bytes:
        if isinstance(raw, (bytearray, memoryview)):
            raw = bytes(raw)
        else:
            raise ProtocolError("envelope: expected bytes", "encoding")
    if len(raw) > max_size:
        raise ProtocolError(f"envelope: {len(raw)} bytes exceeds the limit of {max_size}", "oversize")
    return raw


def open_envelope(raw: bytes, *, max_size: int = MAX_ENVELOPE, fact_id: bytes | None = None) -> Fact:
    """Decode and verify one envelope from the network. ProtocolError on anything wrong.

    `fact_id`: sha256(raw) when the caller already computed it (the board does).

    A reveal in its canonical layout takes `_open_reveal` (the bytes checked by one regular
    expression, the signature verified before anything is decoded); every other input, and any
    reveal that path does not take, takes `open_envelope_generic`, which gives the same `Fact`
    or names what is wrong.
    """
    raw = _checked_bytes(raw, max_size)
    m = _REVEAL_RE.fullmatch(raw)
    if m is not None:
        fact = _open_reveal(raw, m, fact_id)
        if fact is not None:
            return fact
    return _open_generic(raw, fact_id)


def open_envelope_generic(raw: bytes, *, max_size: int = MAX_ENVELOPE, fact_id: bytes | None = None) -> Fact:
    """`open_envelope` without the reveal fast path: generic msgpack decode, re-encoding, the
    field checks of `messages`, then the signature. The reference the fast path is tested
    against (tests/unit/test_reveal_parser.py, the `reveal-fast` fuzz target)."""
    raw = _checked_bytes(raw, max_size)
    return _open_generic(raw, fact_id)


def _open_generic(raw: bytes, fact_id: bytes | None) -> Fact:
    if not raw.startswith(_HEAD):
        raise ProtocolError("envelope: not a canonical 5-field map starting with body", "encoding")
    try:
        env = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
        try:
            packer = _LOCAL.packer
        except AttributeError:
            packer = _LOCAL.packer = msgpack.Packer(use_bin_type=True)
        again = packer.pack(env)
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise ProtocolError(f"envelope: not valid msgpack: {type(exc).__name__}", "encoding") from None
    if again != raw:
        raise ProtocolError("envelope: not canonical (re-encoding differs)", "encoding")
    if type(env) is not dict or tuple(env) != _ENVELOPE_KEYS:
        raise ProtocolError(
            "envelope: fields must be exactly body, kind, sig, signer, v in canonical order", "encoding"
        )
    if env["v"] != VERSION or type(env["v"]) is not int:
        if env["v"] == 1 and type(env["v"]) is int:
            raise ProtocolError(
                "envelope: protocol version 1 is no longer accepted (this node speaks version 2)", "version"
            )
        raise ProtocolError(f"envelope: unsupported version {env['v']!r:.20}", "version")
    kind = env["kind"]
    signer = env["signer"]
    sig = env["sig"]
    if type(signer) is not bytes or len(signer) != 32:
        raise ProtocolError("envelope.signer: expected 32 bytes", "encoding")
    if type(sig) is not bytes or len(sig) != 64:
        raise ProtocolError("envelope.sig: expected 64 bytes", "encoding")
    body_obj = env["body"]
    body: Message
    try:
        body = message_from_obj(kind, body_obj)
        _check_canonical_order(kind, body_obj)
    except ProtocolError as exc:
        if exc.reason == "invalid":  # the field checks of messages.py: a bad body
            exc.reason = "body"
        raise
    body_bytes = raw[6 : len(raw) - _TAIL_FIXED - len(kind)]
    try:
        _sign_open(b"".join((sig, _PREFIXES[kind], body_bytes)), signer)
    except Exception:  # BadSignatureError, or a key libsodium refuses
        raise ProtocolError("envelope: bad signature", "signature") from None
    return Fact(hashlib.sha256(raw).digest() if fact_id is None else fact_id, kind, signer, body, raw)


def _canon(fields: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(fields, key=str.encode))


_REVEAL_ORDER = _canon(Reveal.FIELDS)
_BLOB_ORDER = _canon(BlobRef.FIELDS)
# kinds whose bodies hold no nested map: only the top-level key order needs checking
_FLAT_ORDERS = {k: _canon(c.FIELDS) for k, c in KINDS.items() if k in ("claim", "commit", "cancel", "select")}


def _check_canonical_order(kind: str, obj: Any) -> None:
    """Every map in a decoded body must have its keys in canonical (sorted UTF-8) order.

    Types and key sets are already checked by `from_obj` (no floats, no ext,
    str keys only); the re-encoding preserved the order, so only it is left.
    """
    if kind == "reveal":
        if tuple(obj) != _REVEAL_ORDER or tuple(obj["log"]) != _BLOB_ORDER or tuple(obj["manifest"]) != _BLOB_ORDER:
            raise ProtocolError("envelope: map keys not in canonical order", "encoding")
        return
    flat = _FLAT_ORDERS.get(kind)
    if flat is not None:
        if tuple(obj) != flat:
            raise ProtocolError("envelope: map keys not in canonical order", "encoding")
        return
    stack = [obj]
    while stack:
        o = stack.pop()
        if type(o) is dict:
            enc = [k.encode() for k in o]
            if enc != sorted(enc):
                raise ProtocolError("envelope: map keys not in canonical order", "encoding")
            stack.extend(v for v in o.values() if type(v) is dict or type(v) is list)
        elif type(o) is list:
            stack.extend(v for v in o if type(v) is dict or type(v) is list)


# --------------------------------------------------------------------------
# the reveal fast path
#
# A reveal envelope in canonical msgpack has one byte layout: the envelope's and the body's keys
# in sorted order as fixstr, every hash a bin8 of 32 bytes, every int in its shortest unsigned
# form. `_REVEAL_RE` matches exactly the envelopes of that layout whose fields have the types,
# lengths and ranges `Reveal.from_obj` demands, except three checks left to `_open_reveal`
# (seen's item count against its header, seen's items distinct, the manifest's size for its
# `files`). Whatever it does not match, or `_open_reveal` hands back (None), takes the generic
# path, which accepts it as the same Fact or refuses it with the same reason: the fast path
# decides nothing the generic one would decide otherwise (tests/unit/test_reveal_parser.py).

# a canonical unsigned int 0 .. 2**63-1: fixint, else the shortest of uint8/16/32/64
_UINT = (
    rb"(?:[\x00-\x7f]|\xcc[\x80-\xff]|\xcd[\x01-\xff].|\xce(?:[\x01-\xff].|\x00[\x01-\xff]).."
    rb"|\xcf(?:[\x01-\x7f]...|\x00(?:[\x01-\xff]..|\x00(?:[\x01-\xff].|\x00[\x01-\xff])))....)"
)
_H32 = rb"\xc4\x20(.{32})"  # bin8 of 32 bytes
_REVEAL_RE = re.compile(
    rb"\x85\xa4body\x88"
    rb"\xa6digest" + _H32
    + rb"\xa9exit_code([\x00-\x7f]|\xcc[\x80-\xff])"  # 0..255
    + rb"\xa5files(" + _UINT + rb")"
    + rb"\xa3job" + _H32
    + rb"\xa3log\x82\xa6sha256" + _H32 + rb"\xa4size(" + _UINT + rb")"
    + rb"\xa8manifest\x82\xa6sha256" + _H32 + rb"\xa4size(" + _UINT + rb")"
    # salt: bin8 of SALT_MIN..SALT_MAX bytes (length byte included in the group)
    + rb"\xa4salt\xc4(" + rb"|".join(bytes([n]) + rb".{%d}" % n for n in range(SALT_MIN, SALT_MAX + 1)) + rb")"
    # seen: a fixarray, or an array16 of 16..MAX_SEEN items; then bin8-32 items (count checked after)
    + rb"\xa4seen([\x90-\x9f]|\xdc(?:\x00[\x10-\xff]|[\x01-\x03].|\x04\x00))((?:\xc4\x20.{32})*)"
    + rb"\xa4kind\xa6reveal\xa3sig\xc4\x40(.{64})\xa6signer" + _H32 + rb"\xa1v\x02",
    re.DOTALL,
)
assert MAX_SEEN == 0x400 and (SALT_MIN, SALT_MAX) == (16, 32)  # the bounds written in _REVEAL_RE
_REVEAL_PREFIX = _PREFIXES["reveal"]
_REVEAL_BODY_END = _TAIL_FIXED + len("reveal")  # bytes after the body
_build_fact = builder(Fact)
_build_reveal = builder(Reveal)
_build_blob = builder(BlobRef)
_from_bytes = int.from_bytes


def _uint(b: bytes) -> int:
    """The value of a canonical unsigned msgpack int matched by `_UINT`."""
    return b[0] if len(b) == 1 else _from_bytes(b[1:], "big")


def _open_reveal(raw: bytes, m: re.Match[bytes], fact_id: bytes | None) -> Fact | None:
    """The reveal envelope `m` matched: its Fact, ProtocolError for a bad signature, or None
    when a field check fails (the generic path then names it)."""
    digest, exit_b, files_b, job, log_sha, log_b, man_sha, man_b, salt_b, seen_h, seen_b, sig, signer = m.groups()
    n = seen_h[0] - 0x90 if len(seen_h) == 1 else _from_bytes(seen_h[1:], "big")
    if len(seen_b) != 34 * n:
        return None
    # verify before decoding: a bad signature costs no objects
    try:
        _sign_open(b"".join((sig, _REVEAL_PREFIX, raw[6 : len(raw) - _REVEAL_BODY_END])), signer)
        signed = True
    except Exception:  # BadSignatureError, or a key libsodium refuses
        signed = False
    files = files_b[0] if len(files_b) == 1 else _uint(files_b)
    man_size = _uint(man_b)
    seen = tuple([seen_b[i : i + 32] for i in range(2, 34 * n, 34)])
    if manifest_size_error(files, man_size) is not None or (n > 1 and len(set(seen)) != n):
        return None  # a bad body is named before a bad signature, as the generic path does
    if not signed:
        raise ProtocolError("envelope: bad signature", "signature")
    body = _build_reveal(
        job,
        digest,
        salt_b[1:],
        exit_b[-1],
        _build_blob(man_sha, man_size),
        files,
        _build_blob(log_sha, _uint(log_b)),
        seen,
    )
    return _build_fact(hashlib.sha256(raw).digest() if fact_id is None else fact_id, "reveal", signer, body, raw)
