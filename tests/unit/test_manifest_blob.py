"""The manifest as a blob: its bytes, and the digest computed from them without parsing."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from p2pci.core.codec import canonical
from p2pci.core.results import (
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_ENTRIES,
    ManifestEntry,
    digest_of_manifest_bytes,
    manifest_bytes,
    result_digest,
)

entries = st.lists(
    st.builds(
        ManifestEntry,
        st.text("abc/é", min_size=1, max_size=12).filter(lambda p: "//" not in f"/{p}/"),
        st.integers(0, 2**40),
        st.integers(0, 0o777),
        st.binary(min_size=32, max_size=32),
    ),
    max_size=20,
    unique_by=lambda e: e.path,
)


@given(st.integers(-(2**31), 2**31), entries)
def test_the_digest_from_the_blob_bytes_is_the_result_digest(exit_code: int, manifest: list[ManifestEntry]) -> None:
    data = manifest_bytes(manifest)
    assert data == canonical(sorted((e.to_obj() for e in manifest), key=lambda o: o["path"]))
    assert digest_of_manifest_bytes(exit_code, data) == result_digest(exit_code, manifest)
    if manifest:  # one changed byte of the blob, or another exit code, is another digest
        assert digest_of_manifest_bytes(exit_code + 1, data) != result_digest(exit_code, manifest)
        flipped = bytes([data[-1] ^ 1]) if data else b""
        assert digest_of_manifest_bytes(exit_code, data[:-1] + flipped) != result_digest(exit_code, manifest)


def test_a_million_entries_fit_the_byte_limit_at_ordinary_path_lengths() -> None:
    one = ManifestEntry(f"site/api/module_{999_999:06d}/index.html", 2**32, 0o644, hashlib.sha256(b"x").digest())
    assert MAX_MANIFEST_ENTRIES >= 1_000_000
    assert len(manifest_bytes([one])) * MAX_MANIFEST_ENTRIES < MAX_MANIFEST_BYTES


# --------------------------------------------------------------------------
# a manifest blob from the network is checked against the reveal that names it

import msgpack  # noqa: E402
import pytest  # noqa: E402

from p2pci.core.errors import ProtocolError  # noqa: E402
from p2pci.core.results import manifest_size_error, pack_manifest, parse_manifest  # noqa: E402

GOOD = tuple(
    ManifestEntry(p, i, 0o644, hashlib.sha256(p.encode()).digest()) for i, p in enumerate(["a", "b/c", "d"])
)


def liar(exit_code: int, data: bytes, files: int) -> dict[str, object]:
    """A reveal that is consistent with `data` (hash, size and digest all computed from it): what a
    hostile worker would send. Only the blob's own checks can refuse it."""
    return {
        "sha256": hashlib.sha256(data).digest(),
        "files": files,
        "exit_code": exit_code,
        "digest": digest_of_manifest_bytes(exit_code, data),
    }


def test_a_packed_manifest_parses_back_and_names_its_blob() -> None:
    p = pack_manifest(3, GOOD)
    assert p.files == 3 and p.size == len(p.data) and p.sha256 == hashlib.sha256(p.data).digest()
    assert p.digest == result_digest(3, GOOD)
    assert parse_manifest(p.data, **liar(3, p.data, 3)) == GOOD  # type: ignore[arg-type]
    empty = pack_manifest(0, ())
    assert empty.data == b"\x90" and parse_manifest(empty.data, **liar(0, empty.data, 0)) == ()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("items", "files", "reason"),
    [
        ([e.to_obj() for e in GOOD], 2, "count"),  # the reveal's count is not the blob's
        ([e.to_obj() for e in GOOD], 4, "count"),
        ([e.to_obj() for e in reversed(GOOD)], 3, "entry"),  # not sorted
        ([GOOD[0].to_obj(), GOOD[0].to_obj()], 2, "entry"),  # a path twice
        ([{**GOOD[0].to_obj(), "path": "../etc/passwd"}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "path": "/abs"}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "path": "a//b"}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "path": "a\x00b"}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "mode": 0o4755}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "sha256": b"x" * 31}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "size": -1}], 1, "entry"),
        ([{**GOOD[0].to_obj(), "extra": 1}], 1, "entry"),
        ([[1, 2, 3, 4]], 1, "entry"),
    ],
)
def test_a_consistent_but_hostile_manifest_blob_is_refused(items: list[object], files: int, reason: str) -> None:
    data = canonical(items) if all(isinstance(i, dict) for i in items) else msgpack.packb(items, use_bin_type=True)
    if manifest_size_error(files, len(data)) is not None:
        reason = "size"  # such a reveal is refused on receipt already; the blob check says so too
    with pytest.raises(ProtocolError) as exc:
        parse_manifest(data, **liar(0, data, files))  # type: ignore[arg-type]
    assert exc.value.reason == reason, exc.value


def test_a_non_canonical_or_non_list_blob_is_refused() -> None:
    ok = manifest_bytes(GOOD)
    # keys out of canonical order: the same entries, the maps packed in insertion order
    shuffled = msgpack.packb([{"path": e.path, "mode": e.mode, "sha256": e.sha256, "size": e.size} for e in GOOD])
    assert shuffled != ok
    with pytest.raises(ProtocolError) as exc:
        parse_manifest(shuffled, **liar(0, shuffled, 3))  # type: ignore[arg-type]
    assert exc.value.reason == "entry"  # "map keys not in canonical order"
    # a wider int than needed (size 0 as uint64): decodes to the same list, re-encodes differently
    wide = ok.replace(b"\xa4size\x00", b"\xa4size\xcf" + bytes(8), 1)
    with pytest.raises(ProtocolError) as exc:
        parse_manifest(wide, **liar(0, wide, 3))  # type: ignore[arg-type]
    assert exc.value.reason == "encoding"
    m = canonical({"a": 1}) + bytes(61)
    with pytest.raises(ProtocolError) as exc:
        parse_manifest(m, **liar(0, m, 1))  # type: ignore[arg-type]
    assert exc.value.reason == "encoding"


def test_a_blob_not_matching_the_reveal_is_refused_by_hash_size_or_digest() -> None:
    p = pack_manifest(0, GOOD)
    good = liar(0, p.data, 3)
    for i in range(len(p.data)):  # every flipped byte: the hash no longer matches
        mutated = p.data[:i] + bytes([p.data[i] ^ 1]) + p.data[i + 1 :]
        with pytest.raises(ProtocolError) as exc:
            parse_manifest(mutated, **good)  # type: ignore[arg-type]
        assert exc.value.reason in ("sha256", "size")
    with pytest.raises(ProtocolError) as exc:  # the right blob, another exit code's digest
        parse_manifest(p.data, **{**good, "exit_code": 1})  # type: ignore[arg-type]
    assert exc.value.reason == "digest"
    with pytest.raises(ProtocolError) as exc:
        parse_manifest(p.data + b"\x00", **good)  # type: ignore[arg-type]
    assert exc.value.reason == "sha256"


def test_limits_are_checked_before_the_blob_is_packed_or_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert manifest_size_error(MAX_MANIFEST_ENTRIES + 1, 1 << 20) is not None
    assert manifest_size_error(1, MAX_MANIFEST_BYTES + 1) is not None
    assert manifest_size_error(MAX_MANIFEST_ENTRIES, 200 << 20) is None
    with pytest.raises(ValueError, match="exceed the limit"):
        pack_manifest(0, [GOOD[0]] * (MAX_MANIFEST_ENTRIES + 1))
    # the byte limit (256 MiB: too much memory for a unit test, so a smaller one, same code)
    from p2pci.core import results

    many = [ManifestEntry(f"{i:04d}" + "😀" * 4000, 1, 0o644, bytes(32)) for i in range(8)]
    monkeypatch.setattr(results, "MAX_MANIFEST_BYTES", len(manifest_bytes(many)) - 1)
    with pytest.raises(ValueError, match="over the limit"):
        pack_manifest(0, many)
    pack_manifest(0, many[:-1])
