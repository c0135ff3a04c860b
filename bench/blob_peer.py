"""Part 4 helper: fetch one large blob over ``/p2pci/blob/1`` from another process.

``python -m bench.blob_peer DIR`` runs a `LibP2PNetwork` (the daemon's
network, same code path as `p2pci daemon`) serving the BlobStore at DIR on
127.0.0.1, prints ``blob peer ready: <peer_id> <addr>`` and serves until
killed. `fetch_once(size)` puts ``size`` random bytes into such a store,
starts the server process, starts a second `LibP2PNetwork` in this process
bootstrapping from it and times ``fetch_blob`` (stream, hash while writing
a temp file, fsync, rename): from the request to the verified blob in the
store. The two processes are separate, like two daemons.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import trio

from bench.procs import PY, ProcGroup
from p2pci.core.messages import BlobRef

WORK = Path(__file__).resolve().parent / ".work" / "blob"
READY = r"^blob peer ready: (\S+) (\S+)"


async def serve(dir: Path) -> None:
    from p2pci.net.libp2p_net import LibP2PNetwork
    from p2pci.store.blobs import BlobStore

    net = LibP2PNetwork(os.urandom(32), ["/ip4/127.0.0.1/tcp/0"], blobs=BlobStore(dir))
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        addr = net.addrs()[0]
        if "/p2p/" not in addr:
            addr = f"{addr}/p2p/{net.peer_id}"
        print(f"blob peer ready: {net.peer_id} {addr}", flush=True)


def _make_blob(size: int, src_dir: Path) -> BlobRef:
    """`size` random bytes as a blob in the store at `src_dir`."""
    from p2pci.store.blobs import BlobStore

    src = BlobStore(src_dir)
    raw = WORK / "payload"
    with open(raw, "wb") as fh:
        left = size
        while left:
            n = min(left, 1 << 20)
            fh.write(os.urandom(n))
            left -= n
    ref = src.put_file(raw)
    raw.unlink()
    return BlobRef(ref.sha256, ref.size)


async def _fetch(ref: BlobRef, src_dir: Path, dst_dir: Path) -> float:
    from p2pci.net.libp2p_net import LibP2PNetwork
    from p2pci.store.blobs import BlobStore

    async with ProcGroup(WORK / "logs") as group:
        with trio.fail_after(60):
            server = await group.start(
                "blob-server", [PY, "-m", "bench.blob_peer", str(src_dir)], ready=READY
            )
        assert server.ready_match is not None
        server_id, server_addr = server.ready_match.group(1), server.ready_match.group(2)
        net = LibP2PNetwork(os.urandom(32), ["/ip4/127.0.0.1/tcp/0"], [server_addr], read_timeout=60)
        dest = BlobStore(dst_dir)
        events = net.events()
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            with trio.fail_after(30):
                while server_id not in {p.peer_id for p in net.peers()}:
                    await events.receive()
            t0 = time.perf_counter()
            c0, s0 = time.process_time(), _cpu_s(server.pid)
            with trio.fail_after(600):
                path = await net.fetch_blob(ref, dest, [server_id])
            dt = time.perf_counter() - t0
            CPU["client_s"], CPU["server_s"] = time.process_time() - c0, _cpu_s(server.pid) - s0
            if path.stat().st_size != ref.size:
                raise RuntimeError("fetched blob has the wrong size")
            nursery.cancel_scope.cancel()
    return dt


# CPU seconds of each end during the last fetch_once: on a shared machine the wall time
# says how busy the neighbours were; CPU seconds per MB say what the transfer costs.
CPU: dict[str, float] = {}


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch_once(size: int) -> float:
    """Seconds to fetch a `size`-byte blob from another process (hash-verified)."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    src_dir, dst_dir = WORK / "src", WORK / "dst"
    try:
        ref = _make_blob(size, src_dir)
        return trio.run(_fetch, ref, src_dir, dst_dir)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    trio.run(serve, Path(sys.argv[1]))
