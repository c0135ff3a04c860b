"""Blob holders that attack the fetcher over the real wire (raw py-libp2p hosts on 127.0.0.1).

* A slow-loris holder answers a range request `ok`, then trickles one-byte chunk frames, each in
  time for the per-read timeout: it must not hold the pieces it was asked for (and the whole
  download) for ever.
* A holder refuses with terminal escapes as its reason: the worker's build fails at `source`, and
  the daemon's log shows the reason escaped.
* Holders that serve a piece and then slow down until the caller gives up: the partial files
  left behind stay bounded (KEEP_PARTIALS).
* A team member, or the holders first in line, answer "busy" to everything, or "not held" to
  every range while their `have` shows every piece: given up after PATIENCE_S, the others serve (counted from the first "busy" in a row: a wait for our own fetch
  slot to a slow honest holder does not count).
* A team member whose `have` grows only with pieces the fetcher already holds: no progress.
* A team member that serves its stripe just above wire.BLOB_MIN_RATE: given up PATIENCE_S after
  the holders ran out of work.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.core.messages import BlobRef
from p2pci.net import wire
from p2pci.net.base import BlobUnavailable
from p2pci.net.pieces import full_bitmap
from p2pci.store.blobs import BlobStore
from tests.integration.test_net_blob import read_framed
from tests.integration.test_net_libp2p import _info, raw_peer, start_node, wait_until
from tests.integration.test_net_pieces import served


async def _linked(host: Any, me: Any, *others: str) -> None:
    """The raw hostile `host` dials node `me`; returns once `me` lists it (and `others`) as peers."""
    with trio.fail_after(10):
        await host.connect(_info(me.net.addrs()[0]))
    want = {str(host.get_id().to_base58()), *others}
    await wait_until(lambda: want <= {p.peer_id for p in me.net.peers()}, 10)

TRICKLE_S = 0.3  # the attack's pace: well inside the fetcher's 1 s read timeout


async def _request(stream: Any) -> tuple[bytes, int, int, int]:
    return wire.parse_range_request(await read_framed(stream))


async def _trickler(stream: Any) -> None:
    """/p2pci/blob/2 as a slow loris: 'ok, I have it all', then a one-byte frame every TRICKLE_S."""
    try:
        _sha, size, _off, length = await _request(stream)
        await stream.write(wire.range_response(True, "", full_bitmap((size + wire.PIECE - 1) // wire.PIECE)))
        for _ in range(length):
            await stream.write(wire.frame(b"\x00"))
            await trio.sleep(TRICKLE_S)  # the attack's pace (not a wait for a condition)
    except Exception:
        pass  # the fetcher hung up: the attack is over


async def test_a_holder_trickling_a_range_is_cut_off_and_the_pieces_come_from_another(tmp_path: Path) -> None:
    src = BlobStore(tmp_path / "src")
    ref = src.put_bytes(os.urandom(256 * 1024))  # one piece: the trickler takes it all
    ref = BlobRef(ref.sha256, ref.size)
    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, _trickler)
        loris = str(host.get_id().to_base58())
        honest = await start_node(nursery, blobs=src)
        me = await start_node(nursery, honest.net.addrs(), read_timeout=1.0)
        await _linked(host, me, honest.net.peer_id)
        mine = BlobStore(tmp_path / "mine")

        t0 = time.monotonic()
        with trio.fail_after(30), pytest.raises(BlobUnavailable, match="timed out"):  # was: never returned
            await me.net.fetch_blob(ref, mine, peers=[loris])
        took = time.monotonic() - t0
        # at most the read timeout plus one piece at BLOB_MIN_RATE (here 1 s + 2 s), plus slack
        assert took < 1.0 + ref.size / wire.BLOB_MIN_RATE + 2.0, took
        assert me.net.stats()["blob_timeouts"] == 1

        t0 = time.monotonic()
        with trio.fail_after(30):  # the loris first in line: it holds the piece, then loses it
            path = await me.net.fetch_blob(ref, mine, peers=[loris, honest.net.peer_id])
        assert path.read_bytes() == src.path(ref.sha256).read_bytes()
        assert time.monotonic() - t0 < 1.0 + ref.size / wire.BLOB_MIN_RATE + 2.0
        nursery.cancel_scope.cancel()


SPOOF = "\x1b[2J\x1b[32mREPRODUCED\x1b[0m\u202efake"  # clear the screen, print a verdict, flip text


async def _refuser(stream: Any) -> None:
    """/p2pci/blob/2 refusing with terminal escapes as its reason (a peer's text, ≤ 200 chars)."""
    try:
        await _request(stream)
        await stream.write(wire.range_response(False, SPOOF))
        await stream.close()
    except Exception:
        pass


async def test_a_holders_refusal_text_reaches_the_daemon_log_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's build fetches the source from a holder that refuses with a screen-clearing,
    verdict-printing, bidi-flipping reason: the build fails at `source`, and its warning in the
    daemon's log shows the reason escaped (the daemon's stderr is a terminal too)."""
    import dataclasses
    import logging

    from p2pci.core.signing import NodeKey
    from p2pci.daemon.builds import Builds
    from p2pci.store.facts import FactStore
    from p2pci.testing.cluster import ScriptedRunner
    from tests.unit.jobgen import make_offer

    caplog.set_level(logging.WARNING, logger="p2pci.builds")
    source = BlobRef(os.urandom(32), 4096)
    offer = dataclasses.replace(make_offer(NodeKey.generate()), source=source)
    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, _refuser)
        liar = str(host.get_id().to_base58())
        me = await start_node(nursery, read_timeout=1.0)
        await _linked(host, me)
        blobs = BlobStore(tmp_path / "blobs")

        async def fetch(ref: BlobRef, peers: list[bytes], sharers: list[bytes] | None = None) -> Path:
            return await me.net.fetch_blob(ref, blobs, peers=[liar])  # the holder the board named

        b = Builds(ScriptedRunner(), None, blobs, fetch, tmp_path / "work", lambda j, t: None)  # type: ignore[arg-type]
        b.store = FactStore(tmp_path / "state.sqlite")
        await nursery.start(b.run)
        b.start(b"j" * 32, offer, offer.select_commit, 0)
        with trio.fail_after(20):
            _job, ev = await b.results.receive()
        assert ev.code == "source" and "\x1b[2J" in ev.reason  # the fact keeps the exact text
        lines = [r.getMessage() for r in caplog.records if r.name == "p2pci.builds"]
        assert any("\\x1b[2J\\x1b[32mREPRODUCED" in line and "\\u202efake" in line for line in lines), lines
        assert not any("\x1b" in line or "\u202e" in line for line in lines), lines
        nursery.cancel_scope.cancel()


async def _first_piece_then_trickle(stream: Any) -> None:
    """/p2pci/blob/2: the first piece of the range at once (junk: it is never verified), then a
    one-byte frame every TRICKLE_S: the download lasts until its caller gives up."""
    try:
        _sha, size, _off, length = await _request(stream)
        await stream.write(wire.range_response(True, "", full_bitmap((size + wire.PIECE - 1) // wire.PIECE)))
        junk = os.urandom(wire.CHUNK)
        for _ in range(wire.PIECE // wire.CHUNK):
            await stream.write(wire.frame(junk))
        for _ in range(length):
            await stream.write(wire.frame(b"\x00"))
            await trio.sleep(TRICKLE_S)  # the attack's pace (not a wait for a condition)
    except Exception:
        pass


async def test_downloads_given_up_by_their_caller_leave_at_most_the_kept_partials(tmp_path: Path) -> None:
    """Six blobs named by (say) six offers, each served a piece at once and then slowly, each fetch
    given up by its caller (the daemon's blob timeout, a cancelled build): the partial files they
    leave in tmp/ are pruned to KEEP_PARTIALS, as after a download that failed by itself."""
    from p2pci.store.blobs import KEEP_PARTIALS

    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, _first_piece_then_trickle)
        slow = str(host.get_id().to_base58())
        me = await start_node(nursery, read_timeout=1.0)
        await _linked(host, me)
        mine = BlobStore(tmp_path / "mine")
        for _ in range(6):
            ref = BlobRef(os.urandom(32), 3 * wire.PIECE)
            with trio.move_on_after(2.0) as scope:  # as BlobFetcher's fail_after would
                await me.net.fetch_blob(ref, mine, peers=[slow])
            assert scope.cancelled_caught
        parts = [f for f in (mine.dir / "tmp").glob("part-*") if f.suffix != ".have"]
        used = sum(f.stat().st_blocks * 512 for f in parts)
        assert len(parts) <= KEEP_PARTIALS, len(parts)
        assert used <= KEEP_PARTIALS * (wire.PIECE + (1 << 16)), used
        nursery.cancel_scope.cancel()


async def _always_busy(stream: Any) -> None:
    """/p2pci/blob/2 answering every request "busy" (the one refusal a fetcher waits out)."""
    try:
        await _request(stream)
        await stream.write(wire.range_response(False, "busy"))
        await stream.close()
    except Exception:
        pass


async def test_a_team_member_that_is_always_busy_is_given_up_and_its_stripes_come_from_the_holder(
    tmp_path: Path,
) -> None:
    """A selected worker (a team member: it owns every other stripe) answers "busy" to everything:
    it is given up after PATIENCE_S like a member that shows no progress, and the holder serves
    its stripes. Before, the fetcher waited on it for as long as the caller let it."""
    from p2pci.net.pieces import PATIENCE_S, STRIPE, TEAM_MIN

    origin = BlobStore(tmp_path / "origin")
    ref = origin.put_bytes(os.urandom(TEAM_MIN + 2 * STRIPE * wire.PIECE))
    ref = BlobRef(ref.sha256, ref.size)
    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, _always_busy)
        busy = str(host.get_id().to_base58())
        pub = await start_node(nursery, blobs=origin)
        me = await start_node(nursery, pub.net.addrs())
        await _linked(host, me, pub.net.peer_id)
        mine = BlobStore(tmp_path / "mine")
        t0 = time.monotonic()
        with trio.fail_after(30):
            path = await me.net.fetch_blob(ref, mine, peers=[pub.net.peer_id], sharers=[busy, me.net.peer_id])
        assert path.read_bytes() == origin.path(ref.sha256).read_bytes()
        assert time.monotonic() - t0 < PATIENCE_S + 10
        nursery.cancel_scope.cancel()


async def _four_refusers_then_an_honest_holder(tmp_path: Path, handler: Any) -> Any:
    """MAX_HOLDERS raw holders first in line answer with `handler`, the publisher (fifth) holds the
    blob: the download must come from it within PATIENCE_S + 10 s. Returns the downloader's net."""
    from contextlib import AsyncExitStack

    from p2pci.net.pieces import MAX_HOLDERS, PATIENCE_S

    origin = BlobStore(tmp_path / "origin")
    ref = origin.put_bytes(os.urandom(2 * wire.PIECE + 5))
    ref = BlobRef(ref.sha256, ref.size)
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        pub = await start_node(nursery, blobs=origin)
        me = await start_node(nursery, pub.net.addrs())
        liars = []
        for _ in range(MAX_HOLDERS):
            host, _ps = await stack.enter_async_context(raw_peer())
            host.set_stream_handler(wire.PROTO_BLOB2, handler)
            with trio.fail_after(10):
                await host.connect(_info(me.net.addrs()[0]))
            liars.append(str(host.get_id().to_base58()))
        await wait_until(lambda: {*liars, pub.net.peer_id} <= {p.peer_id for p in me.net.peers()}, 10)
        mine = BlobStore(tmp_path / "mine")
        t0 = time.monotonic()
        with trio.fail_after(30):
            path = await me.net.fetch_blob(ref, mine, peers=[*liars, pub.net.peer_id])
        assert path.read_bytes() == origin.path(ref.sha256).read_bytes()
        assert time.monotonic() - t0 < PATIENCE_S + 10
        nursery.cancel_scope.cancel()
    return me.net


async def test_holders_that_are_always_busy_let_the_next_holder_in_line_serve(tmp_path: Path) -> None:
    """Four holders first in line (MAX_HOLDERS are asked at once) answer "busy" to everything:
    each is given up after PATIENCE_S and the fifth, honest, serves the blob. Before, the four
    kept their places for as long as the caller let them, and the fifth was never asked."""
    net = await _four_refusers_then_an_honest_holder(tmp_path, _always_busy)
    assert not net._fetch_slots  # the peers asked leave no per-peer state behind


async def test_a_wait_for_our_own_fetch_slot_is_not_counted_as_the_holders_busy_time(tmp_path: Path) -> None:
    """Two downloads from one holder with one fetch slot per peer: the second waits for the first
    (6 s: a slow but honest holder), then the holder answers "busy" once (its slot is not free yet)
    and serves. The second download goes on: the busy time counts from the first "busy", not from
    the last other answer (which would give up a holder that was busy for a moment)."""
    src = BlobStore(tmp_path / "src")
    first = src.put_bytes(os.urandom(wire.PIECE))
    second = src.put_bytes(os.urandom(wire.PIECE))
    calls: list[bytes] = []

    async def slow_then_busy_once(stream: Any) -> None:
        try:
            sha, size, off, length = await _request(stream)
            calls.append(sha)
            if sha == second.sha256 and calls.count(sha) == 1:
                await stream.write(wire.range_response(False, "busy"))
                await stream.close()
                return
            await stream.write(wire.range_response(True, "", full_bitmap((size + wire.PIECE - 1) // wire.PIECE)))
            data = src.path(sha).read_bytes()[off : off + length]
            step = 64 * 1024
            for i in range(0, len(data), step):
                await stream.write(wire.frame(data[i : i + step]))
                if sha == first.sha256:
                    await trio.sleep(6.0 / (len(data) // step))  # 6 s for the piece: slow, above the floor
            await stream.close()
        except Exception:
            pass

    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, slow_then_busy_once)
        holder = str(host.get_id().to_base58())
        me = await start_node(nursery, read_timeout=2.0, blob_concurrency=1)
        await _linked(host, me)
        mine = BlobStore(tmp_path / "mine")
        got: list[Path] = []

        async def fetch(ref: BlobRef) -> None:
            got.append(await me.net.fetch_blob(BlobRef(ref.sha256, ref.size), mine, peers=[holder]))

        with trio.fail_after(30):
            async with trio.open_nursery() as fetches:
                fetches.start_soon(fetch, first)
                await wait_until(lambda: first.sha256 in calls, 10)  # the first holds the one slot
                fetches.start_soon(fetch, second)
        assert len(got) == 2 and calls.count(second.sha256) == 2
        nursery.cancel_scope.cancel()


async def _claims_all_serves_nothing(stream: Any) -> None:
    """/p2pci/blob/2 refusing every range "not held" while its `have` shows every piece."""
    try:
        _sha, size, _off, _length = await _request(stream)
        await stream.write(wire.range_response(False, "not held", full_bitmap((size + wire.PIECE - 1) // wire.PIECE)))
        await stream.close()
    except Exception:
        pass


async def test_holders_that_show_every_piece_and_refuse_each_let_the_next_holder_in_line_serve(
    tmp_path: Path,
) -> None:
    """Four holders first in line answer every range "not held" with a `have` of every piece: each
    is given up after PATIENCE_S of refusals and the fifth, honest, serves the blob. Before, they
    were asked again and again for as long as the caller let them."""
    await _four_refusers_then_an_honest_holder(tmp_path, _claims_all_serves_nothing)


async def test_a_team_member_whose_have_grows_only_with_pieces_we_hold_is_given_up(tmp_path: Path) -> None:
    """A team member shows, one more every 4 s, pieces the fetcher already holds (its own stripes
    from the holder): its `have` grows, never with a piece the fetcher could take. It is given up
    after PATIENCE_S like one whose `have` does not grow, and the holder serves its stripes.
    Before, each new bit counted as progress and held its stripes for 4 s more, 12 times here."""
    from p2pci.net.pieces import PATIENCE_S, STRIPE, TEAM_MIN

    origin = BlobStore(tmp_path / "origin")
    ref = origin.put_bytes(os.urandom(TEAM_MIN + 4 * STRIPE * wire.PIECE))  # 6 stripes: 3 each
    ref = BlobRef(ref.sha256, ref.size)
    n = (ref.size + wire.PIECE - 1) // wire.PIECE
    t0 = time.monotonic()
    me_box: list[Any] = []

    async def shows_what_we_hold(stream: Any) -> None:
        try:
            _sha, _size, _off, length = await _request(stream)
            part = me_box[0].net._partials.get(ref.sha256)
            held = [i for i in range(n) if part is not None and part.held(i)]
            shown = held[: 1 + int((time.monotonic() - t0) / 4.0)]
            have = bytearray(wire.have_len(ref.size))
            for i in shown:
                have[i >> 3] |= 0x80 >> (i & 7)
            await stream.write(wire.range_response(not length, "" if not length else "not held", bytes(have)))
            await stream.close()
        except Exception:
            pass

    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, shows_what_we_hold)
        member = str(host.get_id().to_base58())
        pub = await start_node(nursery, blobs=origin)
        me = await start_node(nursery, pub.net.addrs())
        me_box.append(me)
        await _linked(host, me, pub.net.peer_id)
        mine = BlobStore(tmp_path / "mine")
        t0 = time.monotonic()
        with trio.fail_after(40):
            path = await me.net.fetch_blob(ref, mine, peers=[pub.net.peer_id], sharers=[me.net.peer_id, member])
        assert path.read_bytes() == origin.path(ref.sha256).read_bytes()
        assert time.monotonic() - t0 < PATIENCE_S + 10
        nursery.cancel_scope.cancel()


async def test_a_team_member_serving_just_above_the_floor_costs_at_most_patience_s_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A team member owns every other stripe and serves it just above wire.BLOB_MIN_RATE (junk,
    a 16 KiB frame at a time): it always makes progress, so none of the older rules gives it
    up, and the holder serves only our stripes. Once the holder has had nothing left to serve
    for PATIENCE_S (1 s here) the member is given up, its run in flight goes to the holder, and
    none of its bytes stays in the blob (no hash failure, each piece received once). Before,
    the download took the member's pace for its stripe: 4 MiB at 141 KiB/s, 29 s (then a hash
    failure and the whole blob again from the holder)."""
    from p2pci.net import libp2p_net
    from p2pci.net.pieces import STRIPE, TEAM_MIN

    patience = 1.0
    monkeypatch.setattr(libp2p_net, "PATIENCE_S", patience)
    origin = BlobStore(tmp_path / "origin")
    ref = origin.put_bytes(os.urandom(TEAM_MIN + STRIPE * wire.PIECE))  # 3 stripes: the member owns 1
    ref = BlobRef(ref.sha256, ref.size)
    rate = 1.1 * wire.BLOB_MIN_RATE  # the attack's pace: fast enough never to be cut off
    step = 16 * 1024
    ours = bytearray(wire.have_len(ref.size))  # the member's stripe (pieces 4..7), "from a holder"
    for i in range(STRIPE, 2 * STRIPE):
        ours[i >> 3] |= 0x80 >> (i & 7)

    async def slow_member(stream: Any) -> None:
        try:
            _sha, _size, _off, length = await _request(stream)
            await stream.write(wire.range_response(True, "", bytes(ours)))
            for _ in range(0, length, step):
                await stream.write(wire.frame(os.urandom(step)))
                await trio.sleep(step / rate)  # the attack's pace (not a wait for a condition)
        except Exception:
            pass  # the fetcher hung up: the attack is over

    async with trio.open_nursery() as nursery, raw_peer() as (host, _):
        host.set_stream_handler(wire.PROTO_BLOB2, slow_member)
        member = str(host.get_id().to_base58())
        pub = await start_node(nursery, blobs=origin)
        me = await start_node(nursery, pub.net.addrs(), read_timeout=1.0)
        await _linked(host, me, pub.net.peer_id)
        mine = BlobStore(tmp_path / "mine")
        t0 = time.monotonic()
        with trio.fail_after(patience + 10):  # was: 29 s
            path = await me.net.fetch_blob(ref, mine, peers=[pub.net.peer_id], sharers=[me.net.peer_id, member])
        took = time.monotonic() - t0
        assert path.read_bytes() == origin.path(ref.sha256).read_bytes()
        assert took < patience + 3.0, took  # the member's pace: STRIPE MiB at `rate`, 29 s
        stats = me.net.stats()
        assert stats.get("blob_rejected", 0) == 0 and stats.get("blob_bad_holders", 0) == 0, stats  # no junk kept
        assert stats["blob_received_bytes"] == served(pub) == ref.size  # the holder served its stripe, once
        nursery.cancel_scope.cancel()
