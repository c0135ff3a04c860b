"""Frames and messages of the p2pci stream protocols (pure: no libp2p, no I/O).

Every stream protocol uses the same framing: a 4-byte big-endian length and
a msgpack map. Length-prefixed framing (not "read until EOF") because closing
a py-libp2p stream does not reliably give the remote an empty read.

* `/p2pci/peers/1`: client sends `{addrs: [ma]}` (its own listen addresses,
  each ending in `/p2p/<its id>`); server replies `{addrs: [ma], peers: [ma]}`
  (its own addresses and those of up to 16 peers it is connected to).
* `/p2pci/sync/1`: client sends `{ids: [id32]}` (its live fact ids); server
  replies `{facts: [raw], want: [id32], more: bool}` (facts the client lacks,
  ids the server lacks, `more` if `facts` was cut at the byte budget);
  client sends `{facts: [raw]}` answering `want`.
* `/p2pci/blob/1`: client sends `{sha256: b32, size: int}`; server replies
  `{ok: bool, error: str}`; if ok, the blob follows as raw chunk frames
  (4-byte length + bytes, each ≤ CHUNK, non-empty) until `size` bytes.
* `/p2pci/blob/2` (ranges, docs/protocol.md §8.4): client sends `{sha256, size, offset,
  length}` (`offset` a multiple of PIECE); server replies `{ok, error, have}` (`have`: a bitmap
  of the pieces it can serve, empty when it holds none); if ok and `length` > 0, `length` bytes
  follow as chunk frames. `length` 0 asks only for `have`.
* `/p2pci/logtail/1` (docs/protocol.md §8.6): client sends `{job: b32, offset: int}`; server
  replies `{ok, error, offset, data, size}`: at most LOGTAIL_MAX bytes of ITS OWN log of that
  job's running (or just finished) build, starting at `offset` (≥ the one asked for when the
  older bytes are no longer kept), and `size`, the bytes of log so far. Only the job's
  publisher may ask; anyone else gets `ok` false.

Decoders raise ProtocolError on anything that is not exactly the shape.

Deadlines (enforced by the stream handlers, not here): a frame must arrive
whole within `frame_deadline(read_timeout, n)` of its first byte (the header
within `read_timeout`, the body at no less than FRAME_MIN_RATE bytes/s on
top), and one request (a whole peers or sync exchange) within
`request_timeout`. A peer that trickles one byte at a time is cut off by
the frame's deadline, not kept alive by each byte it sends. A blob's chunk
frames keep pace at BLOB_MIN_RATE instead (after a grace of `read_timeout`),
checked by the receiver over the whole blob or range, not per frame: a frame
may be a single byte.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from p2pci.core.errors import ProtocolError

PROTO_PEERS = "/p2pci/peers/1"
PROTO_SYNC = "/p2pci/sync/1"
PROTO_BLOB = "/p2pci/blob/1"
PROTO_BLOB2 = "/p2pci/blob/2"
PROTO_LOGTAIL = "/p2pci/logtail/1"
LOGTAIL_MAX = 16 * 1024  # bytes of log text in one /p2pci/logtail/1 reply
PIECE = 1 << 20  # /p2pci/blob/2 ranges start on a piece boundary; `have` has a bit per piece

LEN = struct.Struct(">I")
CHUNK = 256 * 1024
MAX_CONTROL_FRAME = 64 * 1024  # peers and blob request/response
MAX_SYNC_FRAME = 8 * 1024 * 1024  # ids list or a batch of facts
MAX_IDS = 100_000  # 3.2 MB of ids
MAX_FACTS = MAX_IDS  # facts in one sync frame (a real one holds 4 MiB of facts of 100 bytes or more)
MAX_ADDRS = 16
MAX_ADDR_LEN = 256
FRAME_MIN_RATE = 512 * 1024  # bytes/s a frame's body must at least arrive at
BLOB_MIN_RATE = 128 * 1024  # bytes/s a blob's (or range's) chunk frames must at least keep up, after a grace
REQUEST_TIMEOUT = 60.0  # seconds for one whole peers/sync exchange (default)


def frame_deadline(read_timeout: float, n: int) -> float:
    """Seconds a frame with an `n`-byte body may take from its first byte to its last."""
    return read_timeout + n / FRAME_MIN_RATE


def frame(payload: bytes) -> bytes:
    return LEN.pack(len(payload)) + payload


def encode(obj: dict[str, Any]) -> bytes:
    """One framed msgpack map."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return frame(data)


def parse_length(header: bytes, limit: int) -> int:
    if len(header) != LEN.size:
        raise ProtocolError("truncated frame header")
    (n,) = LEN.unpack(header)
    if n > limit:
        raise ProtocolError(f"frame of {n} bytes exceeds the limit of {limit}")
    return int(n)


def decode_map(
    payload: bytes, fields: dict[str, type | tuple[type, ...]], max_items: int = -1
) -> dict[str, Any]:
    """Decode a msgpack map with exactly `fields` (name → type). `max_items` bounds every list in
    it before it is built (msgpack's own default is the payload's length: an 8 MiB frame of
    empty byte strings is a list of 4 million)."""
    try:
        obj = msgpack.unpackb(
            payload, raw=False, strict_map_key=True, use_list=True, max_array_len=max_items
        )
    except Exception as exc:  # msgpack raises many types on garbage
        raise ProtocolError(f"bad frame: {type(exc).__name__}") from None
    if not isinstance(obj, dict) or set(obj) != set(fields):
        raise ProtocolError(f"bad frame: expected fields {sorted(fields)}")
    for name, typ in fields.items():
        value = obj[name]
        if isinstance(value, bool) and typ is int:
            raise ProtocolError(f"bad frame: {name} is a bool")
        if not isinstance(value, typ):
            raise ProtocolError(f"bad frame: {name} has type {type(value).__name__}")
    return obj


def _ids(values: list[Any], what: str, limit: int = MAX_IDS) -> list[bytes]:
    if len(values) > limit:
        raise ProtocolError(f"too many {what}")
    for v in values:
        if not isinstance(v, bytes) or len(v) != 32:
            raise ProtocolError(f"bad {what}: not 32 bytes")
    return values


def _addrs(values: list[Any]) -> list[str]:
    if len(values) > MAX_ADDRS:
        raise ProtocolError("too many addresses")
    for v in values:
        if not isinstance(v, str) or not v.startswith("/") or len(v) > MAX_ADDR_LEN:
            raise ProtocolError("bad address")
    return values


def _raws(values: list[Any], max_fact: int) -> list[bytes]:
    for v in values:
        if not isinstance(v, bytes) or len(v) > max_fact:
            raise ProtocolError("bad fact in sync frame")
    return values


# -- /p2pci/peers/1 -------------------------------------------------------------
def peers_request(addrs: list[str]) -> bytes:
    return encode({"addrs": addrs[:MAX_ADDRS]})


def parse_peers_request(payload: bytes) -> list[str]:
    return _addrs(decode_map(payload, {"addrs": list})["addrs"])


def peers_response(addrs: list[str], peers: list[str]) -> bytes:
    return encode({"addrs": addrs[:MAX_ADDRS], "peers": peers[:MAX_ADDRS]})


def parse_peers_response(payload: bytes) -> tuple[list[str], list[str]]:
    d = decode_map(payload, {"addrs": list, "peers": list})
    return _addrs(d["addrs"]), _addrs(d["peers"])


# -- /p2pci/sync/1 --------------------------------------------------------------
def sync_hello(ids: list[bytes]) -> bytes:
    return encode({"ids": ids[:MAX_IDS]})


def parse_sync_hello(payload: bytes) -> list[bytes]:
    return _ids(decode_map(payload, {"ids": list}, MAX_IDS)["ids"], "ids")


def sync_reply(facts: list[bytes], want: list[bytes], more: bool) -> bytes:
    return encode({"facts": facts, "want": want[:MAX_IDS], "more": more})


def parse_sync_reply(payload: bytes, max_fact: int) -> tuple[list[bytes], list[bytes], bool]:
    d = decode_map(payload, {"facts": list, "want": list, "more": bool}, MAX_FACTS)
    return _raws(d["facts"], max_fact), _ids(d["want"], "want"), bool(d["more"])


def sync_facts(facts: list[bytes]) -> bytes:
    return encode({"facts": facts})


def parse_sync_facts(payload: bytes, max_fact: int) -> list[bytes]:
    return _raws(decode_map(payload, {"facts": list}, MAX_FACTS)["facts"], max_fact)


# -- /p2pci/blob/1 --------------------------------------------------------------
def blob_request(sha256: bytes, size: int) -> bytes:
    return encode({"sha256": sha256, "size": size})


def parse_blob_request(payload: bytes) -> tuple[bytes, int]:
    d = decode_map(payload, {"sha256": bytes, "size": int})
    if len(d["sha256"]) != 32 or d["size"] < 0:
        raise ProtocolError("bad blob request")
    return d["sha256"], d["size"]


def blob_response(ok: bool, error: str = "") -> bytes:
    return encode({"ok": ok, "error": error[:200]})


def parse_blob_response(payload: bytes) -> tuple[bool, str]:
    d = decode_map(payload, {"ok": bool, "error": str})
    return bool(d["ok"]), d["error"]


# -- /p2pci/blob/2 --------------------------------------------------------------
def have_len(size: int) -> int:
    """Bytes of a `have` bitmap for a blob of `size` bytes."""
    return ((size + PIECE - 1) // PIECE + 7) // 8


def range_request(sha256: bytes, size: int, offset: int, length: int) -> bytes:
    return encode({"sha256": sha256, "size": size, "offset": offset, "length": length})


def parse_range_request(payload: bytes) -> tuple[bytes, int, int, int]:
    d = decode_map(payload, {"sha256": bytes, "size": int, "offset": int, "length": int})
    sha, size, off, n = d["sha256"], d["size"], d["offset"], d["length"]
    if len(sha) != 32 or size < 0 or off < 0 or n < 0 or off % PIECE or off + n > size:
        raise ProtocolError("bad blob range request")
    if n and off >= size:
        raise ProtocolError("bad blob range request")
    return sha, size, off, n


def range_response(ok: bool, error: str = "", have: bytes = b"") -> bytes:
    return encode({"ok": ok, "error": error[:200], "have": have})


def parse_range_response(payload: bytes, size: int) -> tuple[bool, str, bytes]:
    d = decode_map(payload, {"ok": bool, "error": str, "have": bytes})
    have = d["have"]
    if have and len(have) != have_len(size):
        raise ProtocolError("bad have bitmap")
    return bool(d["ok"]), d["error"], have


# -- /p2pci/logtail/1 -----------------------------------------------------------
def logtail_request(job: bytes, offset: int) -> bytes:
    return encode({"job": job, "offset": offset})


def parse_logtail_request(payload: bytes) -> tuple[bytes, int]:
    d = decode_map(payload, {"job": bytes, "offset": int})
    if len(d["job"]) != 32 or d["offset"] < 0:
        raise ProtocolError("bad logtail request")
    return d["job"], d["offset"]


def logtail_response(ok: bool, error: str = "", offset: int = 0, data: bytes = b"", size: int = 0) -> bytes:
    return encode(
        {"ok": ok, "error": error[:200], "offset": offset, "data": data[:LOGTAIL_MAX], "size": size}
    )


def parse_logtail_response(payload: bytes, asked: int) -> tuple[bool, str, int, bytes, int]:
    """`(ok, error, offset, data, size)`; a reply that starts before `asked`, carries more than
    LOGTAIL_MAX bytes or ends past `size` is a ProtocolError."""
    d = decode_map(payload, {"ok": bool, "error": str, "offset": int, "data": bytes, "size": int})
    off, data, size = d["offset"], d["data"], d["size"]
    if d["ok"] and (off < asked or len(data) > LOGTAIL_MAX or off + len(data) > size):
        raise ProtocolError("bad logtail reply")
    return bool(d["ok"]), d["error"], off, data, size
