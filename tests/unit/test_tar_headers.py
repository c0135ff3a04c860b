"""Hostile tar *headers* for both tar decoders of peer bytes (the fuzz findings of docs/testing.md).

`unpack_source` (a source tar from the network) and `read_outputs` (a build's /out) must refuse
each of these with their own error, BuildError and OutputError, naming the problem: never an
uncaught UnicodeDecodeError/ValueError/OSError, never a hang, and never a file written.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from p2pci.core.errors import BuildError
from p2pci.runner.outputs import OutputError, read_outputs
from p2pci.runner.source import unpack_source


def pax_tar(members: list[tuple[str, bytes, dict[str, str]]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, pax in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.pax_headers = pax
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def bad_gname_first_header(name: str) -> bytes:
    """One ustar member whose group name is not UTF-8: tarfile.open itself decodes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        ti = tarfile.TarInfo(name)
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"x\n"))
    raw = bytearray(buf.getvalue())
    raw[297:299] = b"\xff\xff"  # gname field
    raw[148:156] = b"        "  # recompute the header checksum
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    return bytes(raw)


# (case, members or raw bytes for the source side, expected message)
HUGE = 10**15
CASES = {
    # the fuzz finding: the first header is read inside tarfile.open, outside the old guard
    "non-UTF-8 group name in the first header": ("raw", "not valid UTF-8|codec can't decode"),
    # tarfile int()s these pax values itself: ValueError
    "pax GNU.sparse.map not a number": ([("f", b"hello", {"GNU.sparse.map": "x,y"})], "invalid literal"),
    "pax GNU.sparse.size not a number": ([("f", b"hello", {"GNU.sparse.size": "zz"})], "invalid literal"),
    # tarfile trusts a sparse map: a negative offset makes it seek ~1 PB forward in the stream (a hang)
    "sparse map that seeks a petabyte": (
        [("f", b"hello", {"GNU.sparse.map": f"{-HUGE},{HUGE},0,5"})],
        "sparse file",
    ),
    "negative pax size": ([("a", b"", {"size": "-100"}), ("b", b"x" * 600, {})], "negative size"),
}


def _src(case: str, prefix: str) -> bytes:
    spec, _ = CASES[case]
    if spec == "raw":
        return bad_gname_first_header(prefix + "README.md")
    assert isinstance(spec, list)
    return pax_tar([(prefix + n, d, p) for n, d, p in spec])


def _ends_the_archive(data: bytes) -> bool:
    """True where this Python's tarfile itself ends the archive at the hostile header and yields
    no member at all (Debian bookworm's Python 3.11.2 does so for a negative pax size; later
    versions yield the member with its negative size, which p2pci must refuse)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            return not t.getmembers()
    except (tarfile.TarError, ValueError, UnicodeDecodeError):
        return False


@pytest.mark.timeout(30)  # before the fix the sparse case hangs: a timeout is its failure
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_header_is_a_build_error(tmp_path: Path, case: str) -> None:
    data = _src(case, "")
    (tmp_path / "s.tar").write_bytes(data)
    if case == "negative pax size" and _ends_the_archive(data):
        unpack_source(tmp_path / "s.tar", tmp_path / "src", max_bytes=1 << 20)  # an empty tree
    else:
        with pytest.raises(BuildError, match=CASES[case][1]):
            unpack_source(tmp_path / "s.tar", tmp_path / "src", max_bytes=1 << 20)
    assert [p for p in (tmp_path / "src").rglob("*") if p.is_file()] == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_header_is_an_output_error(tmp_path: Path, case: str) -> None:
    data = _src(case, "out/")
    if case == "negative pax size" and _ends_the_archive(data):
        assert read_outputs(io.BytesIO(data), tmp_path / "out", max_bytes=1 << 20) == ()
    else:
        with pytest.raises(OutputError, match=CASES[case][1]):
            read_outputs(io.BytesIO(data), tmp_path / "out", max_bytes=1 << 20)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("name", ["out/a\x00b", "out/" + "x" * 256])
def test_an_output_name_the_host_cannot_store_is_an_output_error(tmp_path: Path, name: str) -> None:
    # NUL (os.mkdir: ValueError) or a component over NAME_MAX (OSError ENAMETOOLONG)
    data = pax_tar([(name, b"x", {"path": name})])
    with pytest.raises(OutputError, match="unsafe name"):
        read_outputs(io.BytesIO(data), tmp_path / "out", max_bytes=1 << 20)


def test_a_255_byte_output_name_is_still_accepted(tmp_path: Path) -> None:
    name = "out/" + "é" * 127 + "x"  # 255 bytes of UTF-8: the longest name Linux stores
    manifest = read_outputs(io.BytesIO(pax_tar([(name, b"x", {})])), tmp_path / "out", max_bytes=1 << 20)
    assert [e.path for e in manifest] == [name[4:]]


def test_a_small_sparse_source_member_is_refused_by_name(tmp_path: Path) -> None:
    # within max_source_mb, a sane map: still refused (pack_source never makes one)
    (tmp_path / "s.tar").write_bytes(pax_tar([("f", b"hello", {"GNU.sparse.map": "0,5"})]))
    with pytest.raises(BuildError, match="'f' is a sparse file"):
        unpack_source(tmp_path / "s.tar", tmp_path / "src", max_bytes=1 << 20)
