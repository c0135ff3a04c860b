"""`p2pci diff` (issue 14): only counted groups are compared, and diffoscope runs only inside the
build sandbox (no network, user nobody, read-only source, a timeout). Real daemons on the memory
network through the CLI; real Docker for the sandbox."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from p2pci.cli.main import cli
from p2pci.core.messages import BlobRef, Reveal
from p2pci.core.results import ManifestEntry
from p2pci.core.signing import NodeKey, seal
from p2pci.runner.base import Limits
from p2pci.runner.diffbox import DIFF_IMAGE, builtin_diff, diff_in_container, run_sandboxed
from p2pci.testing.cluster import ScriptedRunner, open_cluster, sealed_claim


async def run_cli(home: Path, *args: str) -> Result:
    def go() -> Result:
        return CliRunner().invoke(cli, ["--home", str(home), *args])

    return await trio.to_thread.run_sync(go)


async def test_diff_never_fetches_uncounted_reveals(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), None]) as c:
        observer, builder, junk = c.nodes
        # the allowlist names the junk node too (it never builds: no runner), so that its claim,
        # and with it its reveal, is stored (docs/protocol.md §4.8); only `builder` is selected
        job = await c.publish(observer, replicas=1, quorum=1, workers=[builder.peer_id, junk.peer_id])
        with trio.fail_after(20):
            (obj,) = await c.wait_verdict(job, [observer])
        assert obj["verdict"] == "REPRODUCED"
        # a node that was not selected, with no commit, reveals another result and serves it
        bait = b"\x1b[2J not counted, never fetched\n"
        ref = junk.blobs.put_bytes(bait)
        # tied and served for the job, as a worker's outputs are: only the counting rule keeps the
        # observer (the job's publisher, whom any holder serves) from fetching it
        junk.db.tie(bytes.fromhex(job), [(ref.sha256, "output")], served=True, at=0)
        with trio.fail_after(10):
            while junk.board.job(bytes.fromhex(job)) is None:  # its blob server checks the job's rule
                await junk.changed.wait()
        assert await junk.blob_access(ref.sha256, observer.peer_id) is None
        manifest = (ManifestEntry("artifact.txt", ref.size, 0o644, ref.sha256),)
        key = NodeKey.from_seed(hashlib.sha256(b"node2").digest())
        rev = Reveal.of(bytes.fromhex(job), None, secrets.token_bytes(16), 0, manifest,
                     BlobRef(bytes(32), 0), ())
        assert await observer.ingest(sealed_claim(key, bytes.fromhex(job)).raw) is not None
        assert await observer.ingest(seal(key, rev).raw) is not None
        r = await run_cli(observer.paths.home, "diff", job)
        assert r.exit_code == 0, r.output
        assert "nothing to compare: 1 counted result(s)" in r.stdout
        assert not observer.blobs.has(ref.sha256)


async def test_diff_of_counted_groups_is_escaped(tmp_path: Path) -> None:
    runners = [None, ScriptedRunner(), ScriptedRunner(lie=True, lie_tag="\x1b[31mred\x1b[0m")]
    async with open_cluster(tmp_path, 3, runners=runners) as c:
        job = await c.publish(c.nodes[0], replicas=2, quorum=2)
        with trio.fail_after(20):
            (obj,) = await c.wait_verdict(job, [c.nodes[0]])
        assert obj["verdict"] == "DISPUTED" and len(obj["groups"]) == 2
        r = await run_cli(c.nodes[0].paths.home, "diff", job)
        assert r.exit_code == 1, r.output  # the results differ (diff(1)'s convention)
        assert "artifact.txt" in r.stdout and "\\x1b[31mred" in r.stdout and "\x1b" not in r.stdout


def test_builtin_diff_names_files_and_shows_small_text(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, text in ((a, "same\nold\n"), (b, "same\nnew\n")):
        (d / "x" / "y").mkdir(parents=True)
        (d / "x" / "y" / "f.txt").write_text(text)
        (d / "same").write_text("s")
    (b / "only-b").write_bytes(b"\x00" * 10)
    out = builtin_diff(a, b)
    assert "x/y/f.txt: " in out and "-old\n+new\n" in out and "only-b: - != " in out and "same:" not in out


def busybox() -> str:
    try:
        from p2pci.runner.images import resolve_image

        return resolve_image("busybox")
    except Exception as exc:  # no Docker here
        pytest.skip(f"docker unavailable: {exc}")


def trees(tmp: Path) -> dict[str, Path]:
    a, b = tmp / "ta", tmp / "tb"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("one\n")
    (b / "f").write_text("two\n")
    return {"a": a, "b": b}


def test_the_sandbox_has_no_network_is_nobody_and_cannot_write_its_input(tmp_path: Path) -> None:
    image = busybox()
    script = ("cat /proc/net/dev > /out/net; id -u > /out/uid; ls /build/src > /out/ls; "
              "if echo x > /build/src/a/f 2>/dev/null; then echo WROTE > /out/w; else echo refused > /out/w; fi")
    limits = Limits(timeout_s=60, memory_mb=64, cpus=1, pids=32, out_mb=1)
    result = run_sandboxed(("sh", "-c", script), trees(tmp_path), image, limits=limits)
    try:
        assert result.status == "ok" and result.exit_code == 0 and result.out_dir is not None, result
        out = result.out_dir
        ifaces = [line.split(":")[0].strip() for line in (out / "net").read_text().splitlines()[2:]]
        assert ifaces == ["lo"]
        assert (out / "uid").read_text().strip() == "65534"
        assert (out / "ls").read_text().split() == ["a", "b"]
        assert (out / "w").read_text().strip() == "refused"
    finally:
        result.cleanup()


def test_the_sandbox_stops_at_the_time_limit(tmp_path: Path) -> None:
    image = busybox()
    limits = Limits(timeout_s=2, memory_mb=64, cpus=1, pids=32, out_mb=1)
    result = run_sandboxed(("sleep", "600"), trees(tmp_path), image, limits=limits)
    try:
        assert result.status == "timeout" and result.duration_s < 30
    finally:
        result.cleanup()


def test_diffoscope_runs_in_the_sandbox(tmp_path: Path) -> None:
    from p2pci.runner.images import resolve_image

    image = resolve_image(DIFF_IMAGE)  # built here when missing (mmdebstrap, as BUILD_HINT tells users)
    t = trees(tmp_path)
    report = diff_in_container(t["a"], t["b"], image)
    assert "-one" in report and "+two" in report, report
