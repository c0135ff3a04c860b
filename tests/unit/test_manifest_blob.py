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
