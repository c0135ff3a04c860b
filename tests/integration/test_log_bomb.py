"""`p2pci logs` against hostile revealers (issue 14): a log bomb is refused unfetched, a big log
is read by range (`--max`, `--tail`) and streamed, control characters shown escaped.

In-process daemons on the memory network, the real control socket, the CLI through click.
The revealer's reveal is signed by its node key, its log served from its blob store.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import trio
from click.testing import CliRunner, Result

from p2pci.cli.main import cli
from p2pci.core.messages import BlobRef, Reveal
from p2pci.core.results import result_digest
from p2pci.core.signing import NodeKey, seal
from p2pci.daemon import logs
from p2pci.daemon.node import Node
from p2pci.testing.cluster import open_cluster, sealed_claim


async def run_cli(home: Path, *args: str) -> Result:
    def go() -> Result:
        return CliRunner().invoke(cli, ["--home", str(home), *args])

    return await trio.to_thread.run_sync(go)


async def reveal_log(observer: Node, revealer: Node, job: str, data: bytes) -> BlobRef:
    """`revealer` holds `data` as a log blob and reveals it for `job` (the observer ingests it)."""
    ref = revealer.blobs.put_bytes(data)
    # as a worker's serve_outputs does: the log is served for the job (to whom the job allows)
    revealer.db.tie(bytes.fromhex(job), [(ref.sha256, "log")], served=True, at=0)
    with trio.fail_after(10):
        while revealer.board.job(bytes.fromhex(job)) is None:  # its blob server checks the job's rule
            await revealer.changed.wait()
    key = NodeKey.from_seed(hashlib.sha256(f"node{revealer_index(revealer)}".encode()).digest())
    rev = Reveal.of(bytes.fromhex(job), result_digest(0, ()), secrets.token_bytes(16), 0, (), BlobRef(ref.sha256, ref.size), ())
    # a reveal is stored only from a key that claimed the job (docs/protocol.md §4.8)
    assert await observer.ingest(sealed_claim(key, bytes.fromhex(job)).raw) is not None
    assert await observer.ingest(seal(key, rev).raw) is not None
    return BlobRef(ref.sha256, ref.size)


def revealer_index(node: Node) -> int:
    return int(node.paths.home.name[1:])


async def test_a_log_bomb_is_refused_unfetched(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        observer, bomber = c.nodes
        job = await c.publish(observer, replicas=2, quorum=2)
        bomb = b"A" * (logs.MAX_LOG_FETCH + (1 << 20))  # served for real: today it is fetched and read whole
        ref = await reveal_log(observer, bomber, job, bomb)
        r = await run_cli(observer.paths.home, "logs", job)
        assert r.exit_code == 2, r.output
        assert f"declares {len(bomb)} bytes" in r.stdout and "not fetched" in r.stdout
        assert not observer.blobs.has(ref.sha256)  # not a byte of it stored
        # the TUI's one-shot op refuses it too
        r2 = await run_cli(observer.paths.home, "logs", job, "--worker", bomber.peer_id[-8:])
        assert r2.exit_code == 2
        from p2pci.control.client import acontrol_call

        text = await acontrol_call(observer.paths.home, "logs", job=job)
        assert "more than the limit" in text and not observer.blobs.has(ref.sha256)


async def test_a_big_log_is_read_by_range_and_escaped(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        observer, revealer = c.nodes
        job = await c.publish(observer, replicas=2, quorum=2)
        lines = [f"line {i:07d}" for i in range(300_000)]  # ~3.6 MB
        lines[-2] = "fake \x1b[2J\x1b[Hverdict  REPRODUCED\r"
        data = ("\n".join(lines) + "\n").encode()
        await reveal_log(observer, revealer, job, data)
        home = observer.paths.home
        r = await run_cli(home, "logs", job, "--tail", "2")
        assert r.exit_code == 0, r.output
        body = r.stdout.splitlines()
        assert body[-2:] == ["fake \\x1b[2J\\x1b[Hverdict  REPRODUCED\\r", "line 0299999"], body[-3:]
        assert "(… earlier lines not shown: --tail)" in r.stdout and "line 0299997" not in r.stdout
        r = await run_cli(home, "logs", job, "--max", "64K")
        assert r.exit_code == 0, r.output
        shown = r.stdout.split("<==\n", 1)[1]
        assert shown.startswith("line 0000000\n") and f"(… {len(data) - 65536} more bytes not shown: --max)" in shown
        assert len(shown) < 65536 + 200
        r = await run_cli(home, "logs", job, "--max", "4M")  # more than one range: streamed in pieces
        assert r.exit_code == 0 and r.stdout.count("line ") == 300_000 - 1 and "\x1b" not in r.stdout
        r = await run_cli(home, "logs", job, "--max", "nope")
        assert r.exit_code == 2


def test_read_range_is_bounded(tmp_path: Path) -> None:
    p = tmp_path / "log"
    p.write_bytes(b"0123456789")
    assert logs.read_range(p, 10, 2, 3) == (b"234", 2)
    assert logs.read_range(p, 10, -4, 100) == (b"6789", 6)
    assert logs.read_range(p, 10, 20, 5) == (b"", 10)
    assert logs.read_range(p, 10, -50, 3) == (b"012", 0)
