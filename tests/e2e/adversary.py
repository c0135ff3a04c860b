"""A test-only hostile peer: joins the mesh like any node and misbehaves.

Run as ``python tests/e2e/adversary.py --mode MODE --home DIR --peer MA…``.
It is a bare py-libp2p host with gossipsub on the board topic (same
protocols as a daemon), signs its own facts with `p2pci.core.signing`, and
publishes straight into the router, bypassing any local validation, so it
can send what no honest node would. There is no "evil mode" in the product:
all misbehaviour lives here.

Modes (acting on every offer it sees):

* ``liar``: commits at once to a wrong digest W(job) (the same W for every
  adversary), reveals it after the first reveal by someone else.
* ``equivocator``: commits to W(job) and to W2(job), reveals both.
* ``copier``: waits until every ``--wait-for`` peer has revealed, then
  commits and reveals a copy of the first one's result (too late to be in
  anybody's ``seen`` list).
* ``garbage``: sends forged, oversize and malformed messages (see
  `garbage`) and prints how many.

Protocol v2 modes (trust, docs/security.md):

* ``sybil``: ``--keys`` (>= 2) fresh keys that never claim commit W(job) and
  reveal it, each reveal listing the others' commits in ``seen``; once
  during the claim window (at the offer) and once more, with new keys, when
  the first honest commit arrives (while the honest builds run).
* ``grinder``: at the offer, makes ``--tries`` keys, keeps the ``--keys``
  that rank lowest by everything it can compute (sha256(select_commit ||
  job || key), the seed being secret), claims with them (a valid identity
  proof, the longest lease allowed) and never builds.
* ``squatter``: ``--keys`` fresh keys claim with ``lease_until = 2**62`` and
  a valid identity proof, and never build.
* ``early``: claims with its own key (valid identity proof); once a
  ``select`` names it, commits W(job) and reveals it at once, before any
  other selected worker has committed.
* ``noisy``: ``--keys`` fresh keys claim; once a ``select`` names them,
  each commits and reveals its own wrong digest W(job, i).

Prints ``adversary ready: <peer_id>`` once connected and subscribed, and one
line per action (``liar: revealed …``) so tests can wait on them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libp2p.pubsub.pubsub as ps_mod
import msgpack
import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.io.utils import read_exactly
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX, Pubsub  # type: ignore[attr-defined]
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from p2pci.core.codec import canonical
from p2pci.core.errors import P2pciError
from p2pci.core.identity import mint
from p2pci.core.messages import BlobRef, Claim, Commit, Offer, Reveal, Select
from p2pci.core.results import ManifestEntry, result_digest
from p2pci.core.signing import Fact, NodeKey, commit_hash, open_envelope, public_of, seal, signed_bytes
from p2pci.net import patches, wire
from p2pci.net.libp2p_net import GOSSIPSUB_PARAMS, _pubsub_classes

TOPIC = "/p2pci/board/1"
MODES = ["liar", "equivocator", "copier", "garbage", "sybil", "grinder", "squatter", "early", "noisy"]
LOG_REF = BlobRef(sha256=hashlib.sha256(b"no log").digest(), size=6)


def say(msg: str) -> None:
    print(msg, flush=True)


def wrong_result(job: bytes, tag: bytes = b"") -> tuple[int, tuple[ManifestEntry, ...], bytes]:
    """A made-up result that depends only on the job (and `tag`)."""
    manifest = (ManifestEntry("evil.bin", 32, 0o644, hashlib.sha256(b"evil" + tag + job).digest()),)
    return 0, manifest, result_digest(0, manifest)


@dataclass
class JobState:
    offer: Fact | None = None
    commits: list[bytes] = field(default_factory=list)  # commit ids received, in order
    seen: tuple[bytes, ...] | None = None  # commit ids held when the first foreign reveal arrived
    reveals: dict[bytes, Fact] = field(default_factory=dict)  # signer -> first reveal
    acted: set[str] = field(default_factory=set)
    salts: dict[bytes, bytes] = field(default_factory=dict)  # digest -> salt of our commits
    keys: list[NodeKey] = field(default_factory=list)  # fresh keys made for this job


class Adversary:
    def __init__(
        self,
        key: NodeKey,
        pubsub: Pubsub,
        mode: str,
        wait_for: list[bytes],
        victim: bytes | None,
        n_keys: int = 2,
        tries: int = 1000,
        project: str | None = None,
    ):
        self.project = project
        self.key = key
        self.n_keys = n_keys
        self.tries = tries
        self.pubsub = pubsub
        self.mode = mode
        self.wait_for = wait_for
        self.victim = victim
        self.jobs: dict[bytes, JobState] = {}
        self.sent = 0

    # ---------------------------------------------------------------- sending

    async def send_raw(self, data: bytes) -> None:
        """Sign a pubsub message around `data` and hand it to the router: no validator runs."""
        ps = self.pubsub
        msg = rpc_pb2.Message(
            data=data, topicIDs=[TOPIC], from_id=ps.my_id.to_bytes(), seqno=ps._next_seqno()
        )
        priv = ps.sign_key
        if priv is not None:
            msg.signature = priv.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
            msg.key = ps.host.get_public_key().serialize()
        await ps.router.publish(ps.my_id, msg)
        # and to every other peer subscribed to the topic: the router sends our own messages to
        # its mesh only, and this peer serves no sync, so a fact its (churning) mesh missed was
        # lost and the attack never happened (test_trust's sybil and early scenarios, once each)
        rpc = rpc_pb2.RPC(publish=[msg])
        for peer in list(ps.peer_topics.get(TOPIC, ())):
            if peer in ps.peers and peer not in ps.router.mesh.get(TOPIC, ()):
                ps.router.send_rpc(peer, rpc)
        self.sent += 1

    async def send(self, body: Any, key: NodeKey | None = None) -> Fact:
        fact = seal(key or self.key, body)
        await self.send_raw(fact.raw)
        if isinstance(body, Commit):
            self.state(body.job).commits.append(fact.id)
        return fact

    async def claim(self, job: bytes, st: JobState, key: NodeKey, lease_until: int) -> None:
        """A v2 claim with a valid identity proof for the offer's `identity_bits`."""
        offer = st.offer.body if st.offer is not None else None
        bits = offer.identity_bits if isinstance(offer, Offer) else 0
        await self.send(Claim(job, lease_until, mint(key.public, bits)), key)
        say(f"{self.mode}: claimed {job.hex()[:12]} as {key.peer_id} lease {lease_until}")

    async def commit_reveal_pair(self, job: bytes, st: JobState, phase: str) -> None:
        """`--keys` fresh keys (at least 2) commit W(job) and reveal it, each reveal listing the
        others' commits (and its own)."""
        code, manifest, w = wrong_result(job)
        keys = [NodeKey.generate() for _ in range(max(self.n_keys, 2))]
        st.keys += keys
        salts = [secrets.token_bytes(16) for _ in keys]
        commits = [
            await self.send(Commit(job, commit_hash(s, w, k.public)), k)
            for k, s in zip(keys, salts, strict=True)
        ]
        seen = tuple(sorted(c.id for c in commits))
        for i, k in enumerate(keys):
            await self.send(Reveal.of(job, w, salts[i], code, manifest, LOG_REF, seen), k)
        say(
            f"sybil: {phase} pair revealed {w.hex()[:12]} for {job.hex()[:12]} as "
            + " ".join(k.peer_id for k in keys)
        )

    async def on_select(self, job: bytes, st: JobState, sel: Select) -> None:
        mine = [k for k in ([self.key] if self.mode == "early" else st.keys) if k.public in sel.workers]
        say(f"{self.mode}: round {sel.round} of {job.hex()[:12]} selects {len(mine)} of my keys")
        if self.mode == "early" and mine and "reveal" not in st.acted:
            st.acted.add("reveal")
            code, manifest, w = wrong_result(job)
            salt = secrets.token_bytes(16)
            await self.send(Commit(job, commit_hash(salt, w, self.key.public)))
            others = tuple(sorted(set(st.commits)))
            await self.send(Reveal.of(job, w, salt, code, manifest, LOG_REF, others))
            say(
                f"early: revealed {w.hex()[:12]} for {job.hex()[:12]} with {len(others) - 1} other commits held"
            )
        elif self.mode == "noisy":
            for k in mine:
                tag = k.public
                if tag in st.salts:
                    continue
                code, manifest, w = wrong_result(job, tag)
                st.salts[tag] = salt = secrets.token_bytes(16)
                c = await self.send(Commit(job, commit_hash(salt, w, k.public)), k)
                await self.send(Reveal.of(job, w, salt, code, manifest, LOG_REF, (c.id,)), k)
                say(f"noisy: {k.peer_id} revealed {w.hex()[:12]} for {job.hex()[:12]}")

    def state(self, job: bytes) -> JobState:
        return self.jobs.setdefault(job, JobState())

    def own_keys(self) -> set[bytes]:
        return {self.key.public} | {k.public for st in self.jobs.values() for k in st.keys}

    # ---------------------------------------------------------------- receiving

    async def on_fact(self, fact: Fact) -> None:
        if self.project is not None:  # act only on the offers of projects named so (and their jobs)
            if isinstance(fact.body, Offer):
                if not fact.body.project.startswith(self.project):
                    return
            elif fact.job not in self.jobs:
                return
        st = self.state(fact.job)
        if isinstance(fact.body, Offer):
            st.offer = fact
            await self.on_offer(fact.job, st)
        elif isinstance(fact.body, Commit):
            st.commits.append(fact.id)
            mine = {k.public for k in st.keys} | {self.key.public}
            if self.mode == "sybil" and fact.signer not in mine and "build" not in st.acted:
                st.acted.add("build")  # the first honest commit: the honest builds are running
                await self.commit_reveal_pair(fact.job, st, "build")
        elif isinstance(fact.body, Select):
            if st.offer is not None and fact.signer == st.offer.signer:
                await self.on_select(fact.job, st, fact.body)
        elif isinstance(fact.body, Reveal) and fact.signer != self.key.public:
            if st.seen is None:
                st.seen = tuple(st.commits)
            st.reveals.setdefault(fact.signer, fact)
            await self.on_reveal(fact.job, st)

    async def on_offer(self, job: bytes, st: JobState) -> None:
        offer = st.offer.body if st.offer is not None else None
        assert isinstance(offer, Offer)
        if self.mode == "sybil" and "window" not in st.acted:
            st.acted.add("window")
            await self.commit_reveal_pair(job, st, "window")
        elif self.mode == "grinder" and "claim" not in st.acted:
            st.acted.add("claim")
            # grind: the best rank an attacker can compute without the seed
            cands = [NodeKey.generate() for _ in range(self.tries)]
            cands.sort(key=lambda k: hashlib.sha256(offer.select_commit + job + k.public).digest())
            st.keys = cands[: self.n_keys]
            for k in st.keys:
                await self.claim(job, st, k, offer.deadline)
            say(f"grinder: claimed with {len(st.keys)} keys ground from {self.tries}")
        elif self.mode in ("squatter", "noisy") and "claim" not in st.acted:
            st.acted.add("claim")
            st.keys = [NodeKey.generate() for _ in range(self.n_keys)]
            for k in st.keys:
                await self.claim(job, st, k, 2**62 if self.mode == "squatter" else offer.deadline)
        elif self.mode == "early" and "claim" not in st.acted:
            st.acted.add("claim")
            await self.claim(job, st, self.key, offer.deadline)
        elif self.mode == "liar" and "commit" not in st.acted:
            st.acted.add("commit")
            _, _, w = wrong_result(job)
            st.salts[w] = secrets.token_bytes(16)
            await self.send(Commit(job, commit_hash(st.salts[w], w, self.key.public)))
            say(f"liar: committed {w.hex()[:12]} for {job.hex()[:12]}")
        elif self.mode == "equivocator" and "commit" not in st.acted:
            st.acted.add("commit")
            for tag in (b"", b"2"):
                _, _, w = wrong_result(job, tag)
                st.salts[w] = secrets.token_bytes(16)
                await self.send(Commit(job, commit_hash(st.salts[w], w, self.key.public)))
            say(f"equivocator: committed twice for {job.hex()[:12]}")
        elif self.mode == "garbage" and "garbage" not in st.acted:
            st.acted.add("garbage")
            n = await self.garbage(job, st)
            say(f"garbage: sent {n} bad messages for {job.hex()[:12]}")

    async def on_reveal(self, job: bytes, st: JobState) -> None:
        seen = st.seen or ()
        if self.mode == "liar" and "commit" in st.acted and "reveal" not in st.acted:
            st.acted.add("reveal")
            code, manifest, w = wrong_result(job)
            salt = st.salts[w]
            await self.send(Reveal.of(job, w, salt, code, manifest, LOG_REF, seen))
            say(f"liar: revealed {w.hex()[:12]} for {job.hex()[:12]}")
        elif self.mode == "equivocator" and "commit" in st.acted and "reveal" not in st.acted:
            st.acted.add("reveal")
            for tag in (b"", b"2"):
                code, manifest, w = wrong_result(job, tag)
                salt = st.salts[w]
                await self.send(Reveal.of(job, w, salt, code, manifest, LOG_REF, seen))
            say(f"equivocator: revealed twice for {job.hex()[:12]}")
        elif self.mode == "copier" and "reveal" not in st.acted:
            if not all(w in st.reveals for w in self.wait_for):
                return
            st.acted.add("reveal")
            model = st.reveals[self.wait_for[0]].body
            assert isinstance(model, Reveal)
            salt = secrets.token_bytes(16)
            await self.send(Commit(job, commit_hash(salt, model.digest, self.key.public)))
            # Claim every commit it knows as "seen": lying about its own list does not help it.
            others = tuple(c for c in st.commits)
            await self.send(
                Reveal(job, model.digest, salt, model.exit_code, model.manifest, model.files, model.log, others)
            )
            say(f"copier: copied {model.digest.hex()[:12]} for {job.hex()[:12]}")

    # ---------------------------------------------------------------- garbage

    async def garbage(self, job: bytes, st: JobState) -> int:
        """Forged, oversize and malformed messages; returns how many were sent."""
        before = self.sent
        me = self.key.public
        victim = self.victim or hashlib.sha256(b"nobody").digest()
        code, manifest, w = wrong_result(job)
        forged_body = Reveal.of(job, w, os.urandom(16), code, manifest, LOG_REF, ()).to_obj()

        def envelope(kind: str, body: Any, signer: bytes, sig: bytes) -> bytes:
            return canonical({"v": 2, "kind": kind, "body": body, "signer": signer, "sig": sig})

        # 1. forged signature: a reveal "by the victim", signed with our key.
        sig = self.key.sign(signed_bytes("reveal", canonical(forged_body)))
        await self.send_raw(envelope("reveal", forged_body, victim, sig))
        # 2. a forged claim "by the victim" with an all-zero signature.
        await self.send_raw(envelope("claim", Claim(job, 2**40).to_obj(), victim, bytes(64)))
        # 3. a real fact (the offer) with one signature bit flipped.
        if st.offer is not None:
            env = msgpack.unpackb(st.offer.raw, raw=False)
            env["sig"] = bytes([env["sig"][0] ^ 1]) + env["sig"][1:]
            await self.send_raw(canonical(env))
        # 4. oversize: a correctly signed 100 KB envelope.
        big = {"job": job, "pad": b"A" * 100_000}
        await self.send_raw(
            envelope("cancel", big, me, self.key.sign(signed_bytes("cancel", canonical(big))))
        )
        # 5. random bytes, and an empty message.
        await self.send_raw(os.urandom(700))
        await self.send_raw(b"")
        # 6. not canonical: our own valid commit re-encoded with a wide integer / unsorted keys.
        good = seal(self.key, Commit(job, hashlib.sha256(b"x").digest()))
        env = msgpack.unpackb(good.raw, raw=False)
        await self.send_raw(msgpack.packb(dict(reversed(list(env.items()))), use_bin_type=True))
        # 7. an unknown kind, correctly signed.
        body = {"job": job}
        await self.send_raw(envelope("vote", body, me, self.key.sign(signed_bytes("vote", canonical(body)))))
        # 8. a correctly signed reveal whose manifest blob cannot hold its file count.
        bad = dict(forged_body, files=10, manifest={"sha256": hashlib.sha256(b"m").digest(), "size": 1})
        await self.send_raw(
            envelope("reveal", bad, me, self.key.sign(signed_bytes("reveal", canonical(bad))))
        )
        # 9. missing and extra fields.
        body = {"job": job, "hash": bytes(32), "extra": b"1"}
        await self.send_raw(
            envelope("commit", body, me, self.key.sign(signed_bytes("commit", canonical(body))))
        )
        body = {"job": job}
        await self.send_raw(
            envelope("commit", body, me, self.key.sign(signed_bytes("commit", canonical(body))))
        )
        # 10. deeply nested msgpack.
        nested: Any = 0
        for _ in range(200):
            nested = [nested]
        await self.send_raw(msgpack.packb(nested))
        return self.sent - before


def hostile_handlers(host: Any, key: NodeKey) -> None:
    """Garbage mode also answers the p2pci stream protocols with lies.

    A sync reply carries random bytes and a forged fact (another signer's key,
    our signature); a peer-exchange reply is not even msgpack.
    """

    def frame(obj: Any) -> bytes:
        data: bytes = msgpack.packb(obj, use_bin_type=True)
        return struct.pack(">I", len(data)) + data

    async def sync(stream: Any) -> None:
        try:
            with trio.move_on_after(5):
                await stream.read(65536)
            job = os.urandom(32)
            body = Claim(job, 2**40).to_obj()
            forged = canonical(
                {
                    "v": 2,
                    "kind": "claim",
                    "body": body,
                    "signer": hashlib.sha256(b"someone else").digest(),
                    "sig": key.sign(signed_bytes("claim", canonical(body))),
                }
            )
            await stream.write(frame({"facts": [os.urandom(300), forged], "want": [], "more": False}))
            say("garbage: answered a sync request with 2 bad facts")
        except Exception as exc:  # the daemon may hang up first
            say(f"garbage: sync reply failed: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def peers(stream: Any) -> None:
        try:
            with trio.move_on_after(5):
                await stream.read(65536)
            await stream.write(struct.pack(">I", 40) + os.urandom(40))
            say("garbage: answered a peer exchange with junk")
        except Exception as exc:
            say(f"garbage: peers reply failed: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    host.set_stream_handler(TProtocol("/p2pci/sync/1"), sync)
    host.set_stream_handler(TProtocol("/p2pci/peers/1"), peers)


def load_key(home: Path) -> NodeKey:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "node.key"
    if path.exists():
        return NodeKey.from_seed(path.read_bytes())
    key = NodeKey.generate()
    path.write_bytes(key.seed)
    path.chmod(0o600)
    return key


async def main(ns: argparse.Namespace) -> None:
    key = load_key(Path(ns.home))
    key_pair = create_new_key_pair(key.seed)
    # The same stack as p2pci.net.LibP2PNetwork: Noise, Yamux, GossipSub 1.2/1.1,
    # message id = sha256(data), the daemon's GossipSub parameters.
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)},
        muxer_preference="YAMUX",
    )
    if host.get_id().to_base58() != key.peer_id:
        raise SystemExit(f"libp2p peer ID {host.get_id()} != p2pci peer ID {key.peer_id}")
    # and the daemon's patches and GossipSub subclass: upstream's alone PRUNEd every daemon's
    # GRAFT as a flood (its whole-second backoffs), so this peer's mesh kept emptying and a fact
    # it published could reach no one (it serves no sync): the attack then never happened
    patches.apply()
    router = _pubsub_classes(ps_mod)[1](protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11], **GOSSIPSUB_PARAMS)
    pubsub = Pubsub(host, router, msg_id_constructor=lambda m: hashlib.sha256(m.data).digest())
    if ns.mode == "garbage":
        hostile_handlers(host, key)
    adv = Adversary(
        key,
        pubsub,
        ns.mode,
        [public_of(p) for p in ns.wait_for],
        public_of(ns.victim) if ns.victim else None,
        ns.keys,
        ns.tries,
        ns.project,
    )
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(TOPIC)
            for addr in ns.peer:
                with trio.fail_after(15):
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
            say(f"adversary ready: {key.peer_id}")
            seen: set[bytes] = set()  # fact ids taken, by gossip or by sync

            async def take(raw: bytes, synced: bool) -> None:
                fid = hashlib.sha256(raw).digest()
                if fid in seen:
                    return
                try:
                    fact = open_envelope(raw)
                except P2pciError:
                    return
                seen.add(fid)
                if synced and fact.signer in adv.own_keys():
                    return  # gossip never brings our own facts back: neither does sync here
                if synced:
                    say(f"{ns.mode}: took a {fact.kind} of {fact.job.hex()[:12]} by sync (not by gossip yet)")
                try:
                    await adv.on_fact(fact)
                except P2pciError as exc:
                    say(f"{ns.mode}: could not act on {fact}: {exc}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pull, host, [info_from_p2p_addr(multiaddr.Multiaddr(a)).peer_id for a in ns.peer], seen, take)
                while True:
                    msg = await sub.get()
                    await take(bytes(msg.data), False)


PULL_EVERY_S = 1.5  # under the daemons' sync serving rate (1 round/s per peer after a burst)


async def pull(host: Any, peers: list[Any], seen: set[bytes], take: Any) -> None:
    """Ask each daemon for the facts this peer lacks over `/p2pci/sync/1`, every PULL_EVERY_S.

    Gossip sends a message to the mesh, and this peer's mesh churns (its GRAFTs and PRUNEs with
    the daemons), so an offer its mesh missed was lost and the attack never happened; a daemon
    gets such a fact by sync. One round per stream: our ids, their reply, our (empty) facts."""

    async def read_frame(stream: Any) -> bytes:
        n = wire.parse_length(await read_exactly(stream, wire.LEN.size), wire.MAX_SYNC_FRAME)
        return await read_exactly(stream, n)

    while True:
        for peer in peers:
            try:
                with trio.fail_after(10):
                    stream = await host.new_stream(peer, [TProtocol(wire.PROTO_SYNC)])
                    try:
                        await stream.write(wire.sync_hello(sorted(seen)))
                        facts, _want, _more = wire.parse_sync_reply(await read_frame(stream), wire.MAX_SYNC_FRAME)
                        await stream.write(wire.sync_facts([]))
                    finally:
                        with contextlib.suppress(Exception):
                            await stream.close()
            except Exception:  # a daemon busy or gone: ask again next time
                continue
            for raw in facts:
                await take(raw, True)
        await trio.sleep(PULL_EVERY_S)


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--home", required=True)
    ap.add_argument("--peer", action="append", default=[], help="multiaddr with /p2p/ to dial (repeatable)")
    ap.add_argument(
        "--wait-for", action="append", default=[], help="copier: peer IDs whose reveals to wait for"
    )
    ap.add_argument("--victim", default=None, help="garbage: peer ID to forge facts for")
    ap.add_argument("--project", default=None, help="act only on offers whose project starts so")
    ap.add_argument("--keys", type=int, default=2, help="grinder, squatter, noisy: fresh keys per job")
    ap.add_argument("--tries", type=int, default=1000, help="grinder: keys made to keep the best --keys")
    ns = ap.parse_args()
    try:
        trio.run(main, ns)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    cli()
