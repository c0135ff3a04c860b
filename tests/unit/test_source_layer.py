"""Image layer normalisation (pure: no Docker)."""

from __future__ import annotations

import io
import tarfile

from p2pci.runner.images import IMAGE_EPOCH, _tar_nodes, write_layer


def rootfs(order: list[str]) -> bytes:
    """A rootfs tar like mmdebstrap's: ./-prefixed, owners, a hard link, a device."""
    members: dict[str, tarfile.TarInfo] = {}

    def mk(name: str, kind: bytes, **kw: object) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        for k, v in kw.items():
            setattr(ti, k, v)
        members[name] = ti

    mk("./", tarfile.DIRTYPE, mode=0o755)
    mk("./usr/", tarfile.DIRTYPE, mode=0o755, mtime=123)
    mk("./usr/bin/", tarfile.DIRTYPE, mode=0o755)
    mk("./usr/bin/zz", tarfile.REGTYPE, mode=0o755, size=5, uname="root", uid=0)
    mk("./usr/bin/aa", tarfile.LNKTYPE, linkname="./usr/bin/zz", mode=0o755)
    mk("./var/mail/", tarfile.DIRTYPE, mode=0o2775, gid=8, gname="mail")
    mk("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
    mk("./bin", tarfile.SYMTYPE, linkname="usr/bin")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in order:
            ti = members[name]
            t.addfile(ti, io.BytesIO(b"hello") if ti.isreg() else None)
    return buf.getvalue()


def normalised(order: list[str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(rootfs(order))) as src:
        write_layer(_tar_nodes(src), out)
    return out.getvalue()


def test_layer_is_sorted_fixed_and_order_independent() -> None:
    a = ["./", "./usr/", "./usr/bin/", "./usr/bin/zz", "./usr/bin/aa", "./var/mail/", "./dev/null", "./bin"]
    b = ["./bin", "./var/mail/", "./", "./usr/", "./usr/bin/", "./usr/bin/zz", "./dev/null", "./usr/bin/aa"]
    la, lb = normalised(a), normalised(b)
    assert la == lb
    with tarfile.open(fileobj=io.BytesIO(la)) as t:
        ms = t.getmembers()
        names = [m.name for m in ms]
        assert names == ["bin", "usr", "usr/bin", "usr/bin/aa", "usr/bin/zz", "var/mail"]  # no device
        by = {m.name: m for m in ms}
        # the data moved to the first name in sorted order; the other is a link to it
        assert (
            by["usr/bin/aa"].isreg()
            and by["usr/bin/zz"].islnk()
            and by["usr/bin/zz"].linkname == "usr/bin/aa"
        )
        fh = t.extractfile("usr/bin/aa")
        assert fh is not None and fh.read() == b"hello"
        assert {m.mtime for m in ms} == {IMAGE_EPOCH}
        assert {(m.uname, m.gname) for m in ms} == {("", "")}
        assert by["var/mail"].gid == 8 and by["var/mail"].mode == 0o2775
