"""One fuzz target per decoder of outside bytes.

Each target feeds arbitrary bytes to a public decoder. The decoder may refuse them with its
documented error (ProtocolError for network input, LocalError for local files and the control
socket, BuildError for a source archive, OutputError for a build's /out); any other exception, a
hang or unbounded memory is a finding. Targets import p2pci lazily so that atheris can instrument
the modules before they load.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    name: str
    doc: str
    modules: tuple[str, ...]  # the decoder's modules: coverage is measured over these files
    make: Callable[[], Callable[[bytes], None]]  # returns the one-input function
    # the decoding functions/classes of those modules (coverage counts their lines); () = whole files
    functions: tuple[str, ...] = ()


SCRATCH_ENV = "P2PCI_FUZZ_SCRATCH"
_scratch_base: Path | None = None


def _scratch() -> Path:
    """A fresh empty directory for one input (decoders that write files).

    It lives in the directory named by $P2PCI_FUZZ_SCRATCH: `python -m tests.fuzz` creates that one
    before each fuzzing process and removes it after, whatever the process's end (libFuzzer ends it
    at a finding, a timeout or Ctrl-C without running Python's exit handlers). Without it (pytest,
    coverage, an import of this module) the process gets its own temporary directory, removed when
    it exits."""
    global _scratch_base
    if _scratch_base is None:
        given = os.environ.get(SCRATCH_ENV)
        if given:
            _scratch_base = Path(given)
        else:
            _scratch_base = Path(tempfile.mkdtemp(prefix=f"p2pci-fuzz-{os.getpid()}-"))
            atexit.register(shutil.rmtree, _scratch_base, ignore_errors=True)
    d = _scratch_base / "input"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    return d


def _envelope() -> Callable[[bytes], None]:
    from p2pci.core.errors import ProtocolError
    from p2pci.core.signing import open_envelope

    def one(data: bytes) -> None:
        try:
            fact = open_envelope(data)
        except ProtocolError:
            return
        assert fact.raw == data and len(fact.signer) == 32

    return one


def _envelope_signed() -> Callable[[bytes], None]:
    """Any msgpack body, canonically encoded and correctly signed: past the envelope checks into
    every message's field checks (random bytes rarely make a canonical, signed envelope)."""
    import msgpack

    from p2pci.core import signing
    from p2pci.core.codec import canonical
    from p2pci.core.errors import LocalError, ProtocolError

    key = signing.NodeKey(bytes(range(32)))
    kinds = sorted(signing.KINDS)

    def one(data: bytes) -> None:
        if not data:
            return
        kind = kinds[data[0] % len(kinds)]
        try:
            body = msgpack.unpackb(data[1:], raw=False, strict_map_key=True)
            body_bytes = canonical(body)
        except (LocalError, ValueError, TypeError, msgpack.UnpackException, RecursionError):
            return
        sig = key.sign(signing.signed_bytes(kind, body_bytes))
        try:
            raw = canonical({"body": body, "kind": kind, "sig": sig, "signer": key.public, "v": 1})
            fact = signing.open_envelope(raw)
        except (LocalError, ProtocolError):
            return
        assert fact.kind == kind and fact.signer == key.public

    return one


def _reveal_fast() -> Callable[[bytes], None]:
    """The input is a reveal body's bytes (canonical or not), signed as they are: the reveal fast
    path of `open_envelope` must give what `open_envelope_generic` gives (the same Fact, or the
    same refusal and reason), whatever the bytes."""
    from p2pci.core import signing
    from p2pci.core.errors import ProtocolError

    key = signing.NodeKey(bytes(range(32)))
    tail = b"\xa6signer\xc4\x20" + key.public + b"\xa1v\x02"

    def outcome(f: Callable[[bytes], object], raw: bytes) -> object:
        try:
            return f(raw)
        except ProtocolError as exc:
            return (str(exc), exc.reason)

    def one(data: bytes) -> None:
        sig = key.sign(signing.signed_bytes("reveal", data))
        raw = b"\x85\xa4body" + data + b"\xa4kind\xa6reveal\xa3sig\xc4\x40" + sig + tail
        fast, generic = outcome(signing.open_envelope, raw), outcome(signing.open_envelope_generic, raw)
        assert fast == generic, (fast, generic)

    return one


def _manifest_blob() -> Callable[[bytes], None]:
    import hashlib

    import msgpack

    from p2pci.core.errors import ProtocolError
    from p2pci.core.results import digest_of_manifest_bytes, manifest_bytes, parse_manifest

    def one(data: bytes) -> None:
        # a hostile worker's reveal is consistent with its blob: only the blob's checks are left
        try:
            items = msgpack.unpackb(data)
            files = len(items) if isinstance(items, list) else 0
        except Exception:
            files = 0
        sha, digest = hashlib.sha256(data).digest(), digest_of_manifest_bytes(0, data)
        try:
            entries = parse_manifest(data, sha256=sha, files=files, exit_code=0, digest=digest)
        except ProtocolError:
            return
        assert manifest_bytes(entries) == data  # accepted: exactly the canonical manifest

    return one


def _bundle() -> Callable[[bytes], None]:
    from p2pci.core.errors import ProtocolError
    from p2pci.core.evidence import export_bundle, load_bundle

    def one(data: bytes) -> None:
        try:
            view = load_bundle(data)
        except ProtocolError:
            return
        assert export_bundle(view) == data  # canonical: an accepted bundle re-exports to itself

    return one


def _wire(kind: str) -> Callable[[], Callable[[bytes], None]]:
    def make() -> Callable[[bytes], None]:
        from p2pci.core.errors import ProtocolError
        from p2pci.net import wire

        parsers: dict[str, list[Callable[[bytes], object]]] = {
            "sync": [
                wire.parse_sync_hello,
                lambda p: wire.parse_sync_reply(p, 65536),
                lambda p: wire.parse_sync_facts(p, 65536),
                lambda p: wire.parse_length(p[:4], wire.MAX_SYNC_FRAME),
            ],
            "blob": [
                wire.parse_blob_request,
                wire.parse_blob_response,
                lambda p: wire.parse_length(p[:4], wire.CHUNK),
                wire.parse_range_request,  # /p2pci/blob/2
                lambda p: wire.parse_range_response(p, 2 * wire.PIECE),
            ],
            "peers": [wire.parse_peers_request, wire.parse_peers_response],
            "logtail": [wire.parse_logtail_request, lambda p: wire.parse_logtail_response(p, 0)],
        }
        options = parsers[kind]

        def one(data: bytes) -> None:
            if not data:
                return
            parse = options[data[0] % len(options)]
            try:
                parse(data[1:])
            except ProtocolError:
                return

        return one

    return make


def _control() -> Callable[[bytes], None]:
    from p2pci.control import frames, server
    from p2pci.core.errors import LocalError

    parse_request = server._parse_request

    def one(data: bytes) -> None:
        # what the daemon reads from a control-socket client: frames, then {op, args} requests
        buf = frames.FrameBuffer()
        buf.feed(data)
        try:
            while (body := buf.next_body()) is not None:
                req = frames.unpack_body(body)
                op, args, err = parse_request(req)
                assert err is not None or (isinstance(op, str) and isinstance(args, dict))
        except LocalError:
            return

    return one


def _recipe() -> Callable[[bytes], None]:
    from p2pci.core.errors import LocalError
    from p2pci.recipe import load_recipe

    def one(data: bytes) -> None:
        d = _scratch()
        (d / "p2pci.toml").write_bytes(data)
        try:
            load_recipe(d)
        except LocalError:
            return

    return one


def _config() -> Callable[[bytes], None]:
    from p2pci.config import load_config
    from p2pci.core.errors import LocalError

    def one(data: bytes) -> None:
        path = _scratch() / "config.toml"
        path.write_bytes(data)
        try:
            load_config(path)
        except LocalError:
            return

    return one


def _source_tar() -> Callable[[bytes], None]:
    from p2pci.core.errors import BuildError
    from p2pci.runner.source import unpack_source

    def one(data: bytes) -> None:
        d = _scratch()
        (d / "src.tar").write_bytes(data)
        try:
            unpack_source(d / "src.tar", d / "src", max_bytes=1 << 22, max_entries=2000)
        except BuildError:
            return
        for p in (d / "src").rglob("*"):  # nothing escaped: every entry stays under dest
            assert p.resolve(strict=False).is_relative_to(d) or p.is_symlink()

    return one


def _image_archive() -> Callable[[bytes], None]:
    from p2pci.core.errors import LocalError
    from p2pci.runner import images

    untagged_copy = getattr(images, "_untagged_copy", None)

    def one(data: bytes) -> None:
        d = _scratch()
        (d / "image.tar").write_bytes(data)
        try:
            image_id = images.archive_image_id(d / "image.tar")
            assert image_id.startswith("sha256:") and len(image_id) == 71
            if untagged_copy is not None:  # what import_image hands to `docker load`
                untagged_copy(d / "image.tar", d / "clean.tar")
        except LocalError:
            return

    return one


def _output_tar() -> Callable[[bytes], None]:
    from p2pci.runner.outputs import OutputError, read_outputs

    def one(data: bytes) -> None:
        d = _scratch()
        try:
            manifest = read_outputs(io.BytesIO(data), d / "out", max_bytes=1 << 22)
        except OutputError:
            return
        total = 0
        for e in manifest:
            p = d / "out" / e.path
            assert not p.is_symlink() and p.is_file() and p.stat().st_size == e.size
            total += e.size
        assert total <= 1 << 22

    return one


# what both envelope targets cover in messages.py: the field checks and every message type
_MESSAGE_FIELDS = (
    "_fields",
    "_int",
    "_bytes",
    "_h32",
    "_str",
    "_list",
    "_keys",
    "BlobRef",
    "ImageRef",
    "Limits",
    "Require",
    "Offer",
    "Claim",
    "Commit",
    "reveal_fields_ok",
    "Reveal",
    "Cancel",
    "message_from_obj",
)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "envelope",
            "signed envelope (open_envelope)",
            ("p2pci/core/signing.py", "p2pci/core/messages.py"),
            _envelope,
            (
                "open_envelope",
                "_canon",
                "_check_canonical_order",
                "verify",
                "decode",
                *_MESSAGE_FIELDS,
            ),
        ),
        Target(
            "envelope-signed",
            "any body, signed (open_envelope field checks)",
            ("p2pci/core/signing.py", "p2pci/core/messages.py"),
            _envelope_signed,
            (
                "open_envelope",
                "_canon",
                "_check_canonical_order",
                "verify",
                *_MESSAGE_FIELDS,
            ),
        ),
        Target(
            "reveal-fast",
            "a signed reveal body: the fast path against the generic decoder (open_envelope)",
            ("p2pci/core/signing.py",),
            _reveal_fast,
            ("open_envelope", "open_envelope_generic", "_open_generic", "_open_reveal", "_uint"),
        ),
        Target(
            "bundle",
            "evidence bundle (load_bundle)",
            ("p2pci/core/evidence.py", "p2pci/core/codec.py"),
            _bundle,
            ("load_bundle", "decode"),
        ),
        Target(
            "manifest-blob",
            "a manifest blob against a consistent reveal (parse_manifest)",
            ("p2pci/core/results.py",),
            _manifest_blob,
            ("manifest_size_error", "parse_manifest", "entries_of", "entry_error", "_bad_path", "_array_header"),
        ),
        Target(
            "wire-sync",
            "sync frames (parse_sync_*)",
            ("p2pci/net/wire.py",),
            _wire("sync"),
            (
                "parse_length",
                "decode_map",
                "_ids",
                "_raws",
                "parse_sync_hello",
                "parse_sync_reply",
                "parse_sync_facts",
            ),
        ),
        Target(
            "wire-blob",
            "blob frames (parse_blob_*)",
            ("p2pci/net/wire.py",),
            _wire("blob"),
            (
                "parse_length",
                "decode_map",
                "parse_blob_request",
                "parse_blob_response",
                "parse_range_request",
                "parse_range_response",
            ),
        ),
        Target(
            "wire-peers",
            "peer-exchange frames (parse_peers_*)",
            ("p2pci/net/wire.py",),
            _wire("peers"),
            ("decode_map", "_addrs", "parse_peers_request", "parse_peers_response"),
        ),
        Target(
            "wire-logtail",
            "live-log frames (parse_logtail_*)",
            ("p2pci/net/wire.py",),
            _wire("logtail"),
            ("decode_map", "parse_logtail_request", "parse_logtail_response"),
        ),
        Target(
            "control",
            "control-socket frames and requests",
            ("p2pci/control/frames.py", "p2pci/control/server.py"),
            _control,
            ("unpack_body", "FrameBuffer", "_parse_request"),
        ),
        Target("recipe", "recipe p2pci.toml (load_recipe)", ("p2pci/recipe.py",), _recipe),
        Target(
            "config",
            "config.toml (load_config)",
            ("p2pci/config.py",),
            _config,
            ("load_config", "parse_config", "_take", "_strs", "_nonneg"),
        ),
        Target(
            "source-tar",
            "source archive unpacker (unpack_source)",
            ("p2pci/runner/source.py",),
            _source_tar,
            ("unpack_source", "_safe_rel", "_ensure_dirs"),
        ),
        Target(
            "image-archive",
            "image archive loader (archive_image_id)",
            ("p2pci/runner/images.py",),
            _image_archive,
            ("archive_image_id", "_read_member", "_untagged_copy"),
        ),
        Target(
            "output-tar",
            "build output tar walker (read_outputs)",
            ("p2pci/runner/outputs.py",),
            _output_tar,
            ("read_outputs", "_relative", "_make_dirs", "_new_file"),
        ),
    ]
}
