"""Seed corpora: valid inputs for every target, generated from the code (nothing binary committed)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tar(entries: list[tuple[str, bytes | None, int]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """A tar of (name, data or None for a directory, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = 1_700_000_000
            if data is None:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _facts() -> tuple[list[bytes], list[bytes]]:
    """Envelopes of one whole job (offer, claims, commits, reveals, a cancel) and its bundles."""
    from p2pci.core.board import Board
    from p2pci.core.evidence import export_bundle
    from p2pci.core.messages import Cancel
    from p2pci.core.signing import seal
    from tests.unit.jobgen import JobSim, key, make_offer

    envelopes: list[bytes] = []
    bundles: list[bytes] = []
    for replicas, quorum, workers in [(3, 2, "open"), (1, 1, (key("a").public,))]:
        sim = JobSim(make_offer(key("publisher"), replicas=replicas, quorum=quorum, workers=workers))  # type: ignore[arg-type]
        names = ["a", "b", "c"][:replicas]
        sim.honest_round([(key(n), b"good" if n != "c" else b"evil", 0) for n in names])
        board = Board()
        for f in sim.facts:
            envelopes.append(f.raw)
            board.add(f.raw, 1_500_000)
        view = board.job(sim.job)
        assert view is not None
        bundles.append(export_bundle(view))
    envelopes.append(seal(key("publisher"), Cancel(sim.job)).raw)  # type: ignore[call-arg]
    return envelopes, bundles


def _signed_bodies(envelopes: list[bytes]) -> list[bytes]:
    """For the envelope-signed target: a byte picking the kind, then the body's canonical bytes."""
    import msgpack

    from p2pci.core import signing
    from p2pci.core.codec import canonical

    kinds = sorted(signing.KINDS)
    out = []
    for raw in envelopes:
        env = msgpack.unpackb(raw, raw=False)
        out.append(bytes([kinds.index(env["kind"])]) + canonical(env["body"]))
    return out


def sorted_kinds() -> list[str]:
    from p2pci.core import signing

    return sorted(signing.KINDS)


def _wire_seeds(envelopes: list[bytes]) -> dict[str, list[bytes]]:
    from p2pci.net import wire

    ids = [hashlib.sha256(e).digest() for e in envelopes[:4]]
    addr = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWKbxkf257nuZ9duwFCt6y5yGtxRgZhF27q5XtrSi4YJrZ"

    def payload(framed: bytes) -> bytes:
        return framed[4:]

    return {
        "wire-sync": [
            b"\x00" + payload(wire.sync_hello(ids)),
            b"\x00" + payload(wire.sync_hello([])),
            b"\x01" + payload(wire.sync_reply(envelopes[:3], ids[:2], True)),
            b"\x01" + payload(wire.sync_reply([], [], False)),
            b"\x02" + payload(wire.sync_facts(envelopes[:2])),
            b"\x03" + wire.sync_hello(ids)[:4],
        ],
        "wire-blob": [
            b"\x00" + payload(wire.blob_request(ids[0], 1234)),
            b"\x01" + payload(wire.blob_response(True)),
            b"\x01" + payload(wire.blob_response(False, "no such blob")),
            b"\x02" + wire.frame(b"x" * 10)[:4],
            b"\x03" + payload(wire.range_request(ids[0], 2 * wire.PIECE, wire.PIECE, wire.PIECE)),
            b"\x04" + payload(wire.range_response(True, "", b"\x03")),
            b"\x04" + payload(wire.range_response(False, "no such blob")),
        ],
        "wire-peers": [
            b"\x00" + payload(wire.peers_request([addr])),
            b"\x01" + payload(wire.peers_response([addr], [addr, addr.replace("4001", "4002")])),
            b"\x01" + payload(wire.peers_response([], [])),
        ],
        "wire-logtail": [
            b"\x00" + payload(wire.logtail_request(ids[0], 0)),
            b"\x01" + payload(wire.logtail_response(True, "", 0, b"step 1\n", 7)),
            b"\x01" + payload(wire.logtail_response(False, "only the publisher may read this log")),
        ],
    }


def _control_seeds() -> list[bytes]:
    from p2pci.control.frames import pack_frame

    reqs = [
        {"op": "id", "args": {}},
        {"op": "show", "args": {"job": "ab" * 32}},
        {"op": "publish", "args": {"project": "/tmp/x", "replicas": 3, "quorum": 2, "wait": True}},
        {"op": "trust_add", "args": {"peer_id": "12D3KooWKbxkf257nuZ9duwFCt6y5yGtxRgZhF27q5XtrSi4YJrZ"}},
        {"op": "subscribe"},
    ]
    return [pack_frame(r) for r in reqs] + [b"".join(pack_frame(r) for r in reqs)]


def _recipe_seeds() -> list[bytes]:
    found = sorted((ROOT / "examples").glob("*/p2pci.toml"))
    return [p.read_bytes() for p in found]


def _config_seeds() -> list[bytes]:
    from p2pci.config import write_default_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        write_default_config(path)
        default = path.read_bytes()
    return [default, b"", b"[worker]\nopen_jobs = false\nmax_timeout_s = 600\n"]


def _source_seeds() -> list[bytes]:
    from p2pci.runner.source import pack_source

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, d in enumerate(sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())):
            dest = Path(tmp) / f"{i}.tar"
            pack_source(d, dest)
            out.append(dest.read_bytes())
    out.append(_tar([("a", None, 0o755), ("a/b.txt", b"hello\n", 0o644), ("run.sh", b"#!/bin/sh\n", 0o755)]))
    return out


def _image_seeds() -> list[bytes]:
    from p2pci.runner.images import write_image_archive

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        layer.write_bytes(_tar([("bin", None, 0o755), ("bin/sh", b"\x7fELF", 0o755)]))
        for tag in (None, "p2pci/fuzz:seed"):
            arch = Path(tmp) / "image.tar"
            write_image_archive(layer, arch, labels={"p2pci.recipe": "fuzz"}, tag=tag)
            out.append(arch.read_bytes())
    config = json.dumps({"os": "linux"}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["x:y"], "Layers": []}]).encode()
    out.append(_tar([("c.json", config, 0o644), ("manifest.json", manifest, 0o644)]))
    return out


def _output_seeds() -> list[bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("out", None), ("out/sub", None), ("out/a.txt", b"a\n"), ("out/sub/b", b"bb")]:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("out/hard")
        link.type, link.linkname, link.mode = tarfile.LNKTYPE, "out/a.txt", 0o644
        tar.addfile(link)
    return [
        buf.getvalue(),
        _tar([("out", None, 0o755), ("out/x", b"x" * 1000, 0o755)], fmt=tarfile.PAX_FORMAT),
        _tar([("out", None, 0o755)], fmt=tarfile.USTAR_FORMAT),
    ]


def _manifest_seeds() -> list[bytes]:
    import hashlib

    from p2pci.core.results import ManifestEntry, manifest_bytes

    def e(p: str, n: int) -> ManifestEntry:
        return ManifestEntry(p, n, 0o644, hashlib.sha256(p.encode()).digest())

    return [
        manifest_bytes([]),
        manifest_bytes([e("a", 0)]),
        manifest_bytes([e(f"d/{i:03d}.html", i * 1000) for i in range(20)]),
        manifest_bytes([e("é/😀", 2**40), e("z", 2**63 - 1)]),
    ]


def all_seeds() -> Iterator[tuple[str, list[bytes]]]:
    envelopes, bundles = _facts()
    yield "envelope", envelopes
    yield "envelope-signed", _signed_bodies(envelopes)
    yield "reveal-fast", [b[1:] for b in _signed_bodies(envelopes) if b[0] == sorted_kinds().index("reveal")]
    yield "bundle", bundles
    yield "manifest-blob", _manifest_seeds()
    yield from _wire_seeds(envelopes).items()
    yield "control", _control_seeds()
    yield "recipe", _recipe_seeds()
    yield "config", _config_seeds()
    yield "source-tar", _source_seeds()
    yield "image-archive", _image_seeds()
    yield "output-tar", _output_seeds()


def write_seeds(root: Path) -> dict[str, int]:
    """Write every target's seeds into root/<target>/; returns the count per target."""
    counts = {}
    for name, seeds in all_seeds():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for s in seeds:
            (d / hashlib.sha1(s).hexdigest()).write_bytes(s)
        counts[name] = len(seeds)
    return counts
