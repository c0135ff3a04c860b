"""/p2pci/blob/2 between real libp2p nodes on loopback: pieces from several holders at once, a
download that resumes from another holder, a team of fetchers that shares what it got (the
holder uploads each piece about once), and holders that serve junk (dropped and counted)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import trio

from p2pci.core.messages import BlobRef
from p2pci.net.base import BlobUnavailable
from p2pci.net.libp2p_net import MAX_BAD_HOLDERS
from p2pci.net.pieces import PATIENCE_S, STRIPE
from p2pci.store.blobs import PIECE, BlobStore
from tests.integration.test_net_libp2p import CorruptStore, start_node, wait_until


def _blob(store: BlobStore, size: int) -> BlobRef:
    ref = store.put_bytes(os.urandom(size))
    return BlobRef(ref.sha256, ref.size)


def _digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def served(node: object) -> int:
    return int(node.net.stats().get("blob_served_bytes", 0))  # type: ignore[attr-defined]


async def test_pieces_come_from_several_holders_at_once(tmp_path: Path) -> None:
    a_store, b_store = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    ref = _blob(a_store, 64 * PIECE + 12345)
    b_store.put_file(a_store.path(ref.sha256))
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, blobs=a_store)
        b = await start_node(nursery, a.net.addrs(), blobs=b_store)
        me = await start_node(nursery, a.net.addrs() + b.net.addrs())
        await wait_until(lambda: {p.peer_id for p in me.net.peers()} >= {a.net.peer_id, b.net.peer_id}, 10)
        mine = BlobStore(tmp_path / "mine")
        with trio.fail_after(60):
            path = await me.net.fetch_blob(ref, mine, peers=[a.net.peer_id, b.net.peer_id])
        assert _digest(path) == ref.sha256
        # both holders served a share, and no piece twice
        assert served(a) > 0 and served(b) > 0, (served(a), served(b))
        assert served(a) + served(b) == ref.size
        assert me.net.stats()["blob_received_bytes"] == ref.size
        assert not list((mine.dir / "tmp").iterdir())  # the partial and its bitmap are gone
        nursery.cancel_scope.cancel()


async def test_a_download_resumes_from_another_holder(tmp_path: Path) -> None:
    """A holder with only the first pieces (a partial copy that stops growing) gives what it has;
    the download stops there, keeps those pieces on disk, and the next fetch asks a second holder
    for exactly the rest."""
    full = BlobStore(tmp_path / "full")
    size = 12 * PIECE + 777
    ref = _blob(full, size)
    data = full.path(ref.sha256).read_bytes()
    early = BlobStore(tmp_path / "early")
    part = early.partial(ref)  # `early` got pieces 0..4 from a holder and is still downloading
    part.write(0, data[: 5 * PIECE])
    part.mark(list(range(5)), direct=True)
    async with trio.open_nursery() as nursery:
        h1 = await start_node(nursery, blobs=early)
        h1.net._partials[ref.sha256] = part  # what its own fetch_blob does while it downloads
        h2 = await start_node(nursery, h1.net.addrs(), blobs=full)
        me = await start_node(nursery, h1.net.addrs() + h2.net.addrs())
        await wait_until(lambda: {p.peer_id for p in me.net.peers()} >= {h1.net.peer_id, h2.net.peer_id}, 10)
        mine = BlobStore(tmp_path / "mine")
        with trio.fail_after(20 + PATIENCE_S):
            try:
                await me.net.fetch_blob(ref, mine, peers=[h1.net.peer_id])
            except BlobUnavailable as exc:
                assert "no progress" in str(exc)
            else:
                raise AssertionError("a partial holder cannot complete the blob")
        assert served(h1) == 5 * PIECE and not mine.has(ref.sha256)
        assert mine.partial(ref).count() == 5  # kept on disk, marked
        with trio.fail_after(30):
            path = await me.net.fetch_blob(ref, mine, peers=[h2.net.peer_id])
        assert _digest(path) == ref.sha256
        assert served(h2) == size - 5 * PIECE  # only what was missing
        nursery.cancel_scope.cancel()
        part.close()


async def test_a_team_shares_so_the_holder_uploads_about_once(tmp_path: Path) -> None:
    origin = BlobStore(tmp_path / "origin")
    size = 24 * PIECE + 99
    ref = _blob(origin, size)
    async with trio.open_nursery() as nursery:
        pub = await start_node(nursery, blobs=origin)
        team = []
        for i in range(3):
            team.append(await start_node(nursery, pub.net.addrs() + [a for t in team for a in t.net.addrs()],
                                         blobs=BlobStore(tmp_path / f"w{i}")))
        ids = [t.net.peer_id for t in team]
        await wait_until(lambda: all(set(ids) - {t.net.peer_id} <= {p.peer_id for p in t.net.peers()}
                                     for t in team), 10)
        got: list[Path] = []

        async def fetch(t: object) -> None:
            got.append(await t.net.fetch_blob(ref, t.net._blobs, peers=[pub.net.peer_id], sharers=ids))  # type: ignore[attr-defined]

        with trio.fail_after(60):
            async with trio.open_nursery() as fetches:
                for t in team:
                    fetches.start_soon(fetch, t)
        assert len(got) == 3 and all(_digest(p) == ref.sha256 for p in got)
        by_team = sum(served(t) for t in team)
        print(f"holder served {served(pub) / size:.2f} x the blob; the team {by_team / size:.2f} x",
              [served(t) / PIECE for t in team], [t.net.stats().get("blob_received_bytes", 0) / PIECE for t in team])
        # without sharing the holder serves 3 x; each member owns a third of the stripes
        assert served(pub) < 1.5 * size, served(pub)
        assert by_team >= size, by_team  # the rest came from the team, piece by piece
        nursery.cancel_scope.cancel()


async def test_a_team_member_serving_junk_is_found_and_dropped(tmp_path: Path) -> None:
    """`liar` owns half the stripes and serves junk for them: the assembled blob fails its hash,
    the blob comes whole from the holder, and the pieces that differ name the liar."""
    origin = BlobStore(tmp_path / "origin")
    size = 4 * STRIPE * PIECE
    ref = _blob(origin, size)
    async with trio.open_nursery() as nursery:
        pub = await start_node(nursery, blobs=origin)
        liar = await start_node(nursery, pub.net.addrs(), blobs=CorruptStore(tmp_path / "junk", size))
        me = await start_node(nursery, pub.net.addrs() + liar.net.addrs())
        await wait_until(lambda: {p.peer_id for p in me.net.peers()} >= {pub.net.peer_id, liar.net.peer_id}, 10)
        mine = BlobStore(tmp_path / "mine")
        with trio.fail_after(60):
            path = await me.net.fetch_blob(ref, mine, peers=[pub.net.peer_id],
                                           sharers=[me.net.peer_id, liar.net.peer_id])
        assert _digest(path) == ref.sha256
        stats = me.net.stats()
        assert stats["blob_bad_holders"] == 1 and stats["blob_rejected"] >= 1
        assert me.net._bad_holder(liar.net.peer_id) and not me.net._bad_holder(pub.net.peer_id)
        # a full table (keys are free) forgets the expired entries, else the oldest: never the
        # liar among them (it used to be cleared whole)
        now = time.monotonic()
        fill = {f"k{i}": now + 600 for i in range(MAX_BAD_HOLDERS - 1)}
        me.net._bad_holders = {**fill, **me.net._bad_holders}
        me.net._drop_holder("new", "junk")
        assert len(me.net._bad_holders) == MAX_BAD_HOLDERS and "k0" not in me.net._bad_holders
        me.net._bad_holders["k5"] = now - 1  # expired: goes, and the oldest (k1) stays
        me.net._drop_holder("newer", "junk")
        assert "k5" not in me.net._bad_holders and "k1" in me.net._bad_holders
        assert all(me.net._bad_holder(p) for p in (liar.net.peer_id, "new", "newer"))
        other = BlobStore(tmp_path / "other")  # dropped: not asked again, even when named
        before = served(liar)
        with trio.fail_after(30):
            await me.net.fetch_blob(ref, other, peers=[liar.net.peer_id, pub.net.peer_id])
        assert served(liar) == before
        nursery.cancel_scope.cancel()
