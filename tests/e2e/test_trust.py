"""Protocol v2 trust, proven by attack: hostile libp2p peers against real daemons and Docker builds.

One mesh (a publisher `boot` and three honest workers `w1..w3`, real `p2pci
daemon` processes, busybox builds) serves every scenario; each scenario has its
own job and its own hostile peer (tests/e2e/adversary.py, acting only on its
project's offers), and all run at once. Every job must end REPRODUCED on every
node with the honest digest, voted by honest workers only (docs/security.md
points at each scenario):

1. `sybil`: three keys that never claimed commit and reveal W, each reveal
   listing the others' commits, once during the claim window and once more
   while the honest builds run: refused by every node (`unclaimed`,
   docs/protocol.md §4.8; before that, ignored as "not selected"), no honest vote is
   lost (issue 13: this used to give REPRODUCED(W); then, with v2's tally,
   it still made every honest worker stand down: no build at all).
2. `grinder`: keys ground against the offer (by the best rank an attacker
   can compute) claim during the window: the `select` names exactly the
   claimants the revealed seed ranks lowest, recomputed here from the bundle.
3. `squatter`: a key claims with `lease_until = 2**62` and never builds:
   selected in round 0 by construction (below), it is dropped in a later
   round, no earlier than the lease cap, and quorum = replicas = 3 needs the
   replacement's vote.
4. `early`: a real selected worker (selected in round 0 by construction)
   commits and reveals W before anybody else committed: the other selected
   workers' votes still count.
5. `noisy`, with `require`: three throwaway keys, selected, reveal three
   digests: the job stays PENDING, then ends REPRODUCED by the trusted keys.

Then the evidence bundle of job 1 at the CLI: `p2pci export`, then `p2pci
verify` of the bundle cut of a selected worker's reveal says INCOMPLETE
(exit 1), and bundles of the real offer plus fresh keys never give REPRODUCED.

Nothing here depends on luck or on timing. The squatter's and the early
revealer's jobs are published while the honest workers are paused (`p2pci
worker pause`: they see the offer and wait), so round 0 can only name the
hostile keys; the test waits for both rounds 0, then resumes the workers, and
the publisher's next round fills the free places with them. The grinder's job
is published while they are still paused too, and they are resumed once its
ground keys have claimed, well within the publisher's 5 s window: its round 0
lists the ground keys and at least one honest worker. The other two scenarios
start only then, so no other job meets a paused worker. The workers
reveal once every selected worker has committed (with at least quorum of them
still able to agree unless no round can add a worker any more, and no round that adds a worker pending); their reveal deadline, a backstop only, is set far beyond
the lease cap plus a build (commit slack 90 s), so a slow Docker on a loaded
machine cannot make a replacement's commit come after the others' reveals.
Every wait polls a condition (a log line, a round, a verdict) under
`trio.fail_after`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from p2pci.core.codec import canonical
from p2pci.core.evidence import load_bundle
from p2pci.core.messages import Claim, Commit, Reveal, Select
from p2pci.core.signing import NodeKey, commit_hash, peer_id_of, public_of, seal
from p2pci.core.tally import R_NOT_SELECTED
from tests.e2e.adversary import wrong_result
from tests.e2e.mesh import (
    Adversary,
    Mesh,
    Node,
    publish_job,
    start_adversary,
    wait_for,
    write_project,
)

BUILD = "cp /build/src/hello.txt /out/hello.txt"
FILES = {"hello.txt": "the honest bytes\n"}  # the same sources in every job: the same honest digest
TIMEOUT_S = 15  # the build timeout: with the 1 s publisher window, the lease cap is 17 s
SLACK_MS = 90_000  # commit slack: the reveal deadline (timeout + slack) is a backstop far behind
# the publisher's claim_window_ms: its offers' window is twice that (5 s), time for the paused
# workers to be resumed after the ground keys claimed (round 0 closes early once 3 claims are in)
PUBLISHER_WINDOW_MS = 2500


def claimed_keys(adv: Adversary, job: str) -> set[str]:
    """Peer IDs the adversary claimed `job` with (from its log)."""
    pat = re.compile(rf": claimed {job[:12]} as (\S+) ")
    return {m.group(1) for m in pat.finditer(adv.log_text())}


async def wait_log(adv: Adversary, pattern: str) -> re.Match[str]:
    async def logged() -> re.Match[str] | None:
        return re.search(pattern, adv.log_text())

    return await wait_for(logged, f"{adv.name} to log {pattern!r}")


async def first_round(mesh: Mesh, node: Node, job: str) -> dict[str, Any]:
    async def r0() -> dict[str, Any] | None:
        view = await mesh.show(node, job)
        return view["rounds"][0] if view and view["rounds"] else None

    return await wait_for(r0, f"round 0 of {job[:12]}")


async def honest_verdict(
    mesh: Mesh, job: str, honest: set[str], quorum: int, hostile: set[str]
) -> dict[str, Any]:
    """Wait for a final verdict on every node (all agreeing), and check it is the honest one."""

    def settled(view: dict[str, Any]) -> bool:
        return not view["missing"]  # every selected worker that owes a reveal has revealed

    view = await mesh.wait_verdict(job, check=settled)
    assert view["verdict"] == "REPRODUCED", view
    winner = view["groups"][0]
    assert winner["digest"] == view["digest"]
    assert set(winner["workers"]) <= honest and len(winner["workers"]) >= quorum, view
    for g in view["groups"]:
        assert not set(g["workers"]) & hostile or g is not winner, view
    job_b = bytes.fromhex(job)
    wrong = {wrong_result(job_b)[2].hex()}
    assert view["digest"] not in wrong, view
    # no honest vote was thrown away
    assert not {i["worker"] for i in view["ignored"]} & honest, view
    return view


async def publish_paused(c: Ctx, name: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    """Publish while the honest workers are paused; return the job and its round 0 (which can
    only name keys of the adversaries: no honest worker claimed)."""
    project = write_project(c.root, name, files=FILES, **kw)
    job = await publish_job(c.mesh, c.boot, project)
    return job, await first_round(c.mesh, c.boot, job)


# ------------------------------------------------------------------ the scenarios


@dataclass
class Ctx:
    mesh: Mesh
    boot: Node
    root: Path
    image: str
    honest: set[str]


async def sybil_pair(c: Ctx, adv: Adversary) -> dict[str, Any]:
    project = write_project(
        c.root, "sybil", image=c.image, script=BUILD, replicas=3, quorum=2, files=FILES, timeout_s=TIMEOUT_S
    )
    job = await publish_job(c.mesh, c.boot, project)
    window = await wait_log(adv, rf"sybil: window pair revealed \S+ for {job[:12]} as (.+)\n")
    during = await wait_log(adv, rf"sybil: build pair revealed \S+ for {job[:12]} as (.+)\n")
    sybils = set(window.group(1).split()) | set(during.group(1).split())
    assert len(sybils) == 6  # three keys each time: as many commits as the job has replicas

    view = await honest_verdict(c.mesh, job, c.honest, 2, sybils)
    # no node stores a Sybil vote: none of the keys claimed (admission, docs/protocol.md §4.8)
    assert not {i["worker"] for i in view["ignored"]} & sybils, view

    async def refused() -> bool:  # 6 keys, a commit and a reveal each, refused and counted
        status = await c.boot.call("status")
        return int(status["quotas"]["refused"]["unclaimed"]) >= 12

    await wait_for(refused, "boot to refuse the 12 Sybil commits and reveals")
    assert len(view["groups"][0]["workers"]) == 3, view  # the three honest votes all count
    voters = {w for g in view["groups"] for w in g["workers"]}
    assert not voters & sybils
    return view


async def grinder(c: Ctx, adv: Adversary, job: str) -> dict[str, Any]:
    ground = claimed_keys(adv, job)
    assert len(ground) == 2
    view = await honest_verdict(c.mesh, job, c.honest, 2, ground)

    # recompute every round from the publisher's signed facts, without p2pci.core.selection
    data = await export(c.mesh, c.boot, job, c.root / "grind.bundle")
    bview = load_bundle(data)
    offer = bview.offer_msg
    assert offer is not None and bview.offer is not None
    jb = bytes.fromhex(job)
    rounds = [
        f.body for r in sorted(bview.selects) for f in bview.selects[r] if f.signer == bview.offer.signer
    ]
    assert rounds and all(isinstance(s, Select) for s in rounds)
    s0 = rounds[0]
    assert isinstance(s0, Select)
    assert hashlib.sha256(s0.seed).digest() == offer.select_commit
    listed = {bview.claim_ids[c].signer for c in s0.claims}
    assert {public_of(k) for k in ground} <= listed  # the ground keys competed in round 0
    assert len(listed) > len(ground), s0  # and so did at least one honest worker
    ranked = sorted(listed, key=lambda k: hashlib.sha256(s0.seed + jb + k).digest())[: offer.replicas]
    assert set(s0.workers) == set(ranked), (s0, ranked)
    assert set(view["rounds"][0]["workers"]) == {peer_id_of(w) for w in s0.workers}, view
    return view


async def squatter(c: Ctx, adv: Adversary, job: str, r0: dict[str, Any]) -> dict[str, Any]:
    keys = claimed_keys(adv, job)
    assert set(r0["workers"]) == keys, r0  # by construction: only the squatter claimed in time
    view = await honest_verdict(c.mesh, job, c.honest, 3, keys)
    rounds = view["rounds"]
    # the round that drops the squatter comes no earlier than the lease cap after round 0
    drop = next(r for r in rounds if not set(r["workers"]) & keys)
    cap = 2 * 2 * PUBLISHER_WINDOW_MS + TIMEOUT_S * 1000  # lease_cap: 2 x the offer's window + timeout
    assert drop["created"] >= r0["created"] + cap, rounds
    assert set(view["groups"][0]["workers"]) == c.honest, view  # quorum 3: every honest worker counted
    return view


async def early(c: Ctx, adv: Adversary, job: str, r0: dict[str, Any]) -> dict[str, Any]:
    assert r0["workers"] == [adv.peer_id], r0  # by construction: only the early revealer claimed in time
    m = await wait_log(adv, rf"early: revealed \S+ for {job[:12]} with (\d+) other commits held")
    assert m.group(1) == "0", adv.log_text()  # it revealed before any other commit existed
    view = await honest_verdict(c.mesh, job, c.honest, 2, {adv.peer_id})
    # both selected honest workers counted; the early revealer is a dissenter, not a reason to drop them
    assert len(view["groups"][0]["workers"]) == 2, view
    assert view["dissenters"] == [adv.peer_id], view
    assert view["ignored"] == [], view
    return view


async def require_noisy(c: Ctx, adv: Adversary) -> dict[str, Any]:
    project = write_project(
        c.root, "noisy", image=c.image, script=BUILD, replicas=3, quorum=2, files=FILES,
        timeout_s=TIMEOUT_S, require=(sorted(c.honest), 2),
    )  # fmt: skip
    job = await publish_job(c.mesh, c.boot, project)
    noisy = await wait_for(lambda: _three(adv, job), "three noisy reveals")
    # the three throwaway keys were selected (the ranked slots) and their votes count, and yet:
    view = await c.mesh.show(c.boot, job)
    assert view is not None and view["verdict"] in ("PENDING", "REPRODUCED"), view
    view = await honest_verdict(c.mesh, job, c.honest, 2, noisy)
    assert set(view["dissenters"]) == noisy, view
    selected = {w for r in view["rounds"] for w in r["workers"]}
    assert noisy <= selected and c.honest <= selected, view
    return view


async def _two_claims(adv: Adversary, job: str) -> set[str] | None:
    keys = claimed_keys(adv, job)
    return keys if len(keys) == 2 else None


async def _three(adv: Adversary, job: str) -> set[str] | None:
    found = set(re.findall(rf"noisy: (\S+) revealed \S+ for {job[:12]}", adv.log_text()))
    return found if len(found) == 3 else None


async def export(mesh: Mesh, node: Node, job: str, path: Path) -> bytes:
    await mesh.cli(node, "export", job, "-o", str(path))
    return await trio.Path(path).read_bytes()


async def bundles(mesh: Mesh, boot: Node, root: Path, view: dict[str, Any]) -> None:
    """`p2pci verify` of the real bundle, of the bundle cut of one reveal, of real offer + fresh keys."""
    job = view["job"]
    full = root / "full.bundle"
    data = await export(mesh, boot, job, full)
    res = await mesh.cli(boot, "verify", str(full), "--json", check=False)
    assert res.returncode == 0, res
    obj = res.json()
    assert obj["verdict"] == "REPRODUCED" and obj["bundle"]["complete"] is True, obj

    doc = msgpack.unpackb(data, raw=False)
    bview = load_bundle(data)
    victim = public_of(view["groups"][0]["workers"][0])
    cut_raw = {f.raw for f in bview.reveals[victim]}
    cut = dict(doc, facts=[f for f in doc["facts"] if f not in cut_raw])
    (root / "cut.bundle").write_bytes(canonical(cut))
    res = await mesh.cli(boot, "verify", str(root / "cut.bundle"), check=False)
    assert res.returncode == 1, res
    assert "INCOMPLETE" in res.stdout and peer_id_of(victim) in res.stdout, res.stdout
    res = await mesh.cli(boot, "verify", str(root / "cut.bundle"), "--json", check=False)
    obj = res.json()
    assert res.returncode == 1 and obj["bundle"]["complete"] is False, obj
    assert obj["bundle"]["missing"] == [peer_id_of(victim)], obj

    # the real offer (and the real selects, the seed being public by now) plus two fresh keys that
    # claim, commit and reveal the honest result itself, each reveal listing the other's commit
    assert bview.offer is not None
    jb = bview.job
    model = bview.reveals[victim][0].body
    assert isinstance(model, Reveal)
    fresh = [NodeKey.generate(), NodeKey.generate()]
    salts = [hashlib.sha256(k.public).digest()[:16] for k in fresh]
    commits = [
        seal(k, Commit(jb, commit_hash(s, model.digest, k.public))) for k, s in zip(fresh, salts, strict=True)
    ]
    seen = tuple(sorted(c.id for c in commits))
    facts = [seal(k, Claim(jb, 2**40)) for k in fresh] + commits
    facts += [
        seal(k, Reveal(jb, model.digest, s, 0, model.manifest, model.files, model.log, seen))
        for k, s in zip(fresh, salts, strict=True)
    ]
    selects = [f.raw for fs in bview.selects.values() for f in fs]
    for name, extra in (("fresh", []), ("fresh+selects", selects)):
        forged = {"v": doc["v"], "job": jb, "facts": [bview.offer.raw, *extra, *(f.raw for f in facts)]}
        path = root / f"{name}.bundle"
        path.write_bytes(canonical(forged))
        res = await mesh.cli(boot, "verify", str(path), "--json", check=False)
        obj = res.json()
        assert res.returncode == 1 and obj["verdict"] != "REPRODUCED", (name, obj)
        reasons = {i["worker"]: i["reason"] for i in obj["ignored"]}
        assert reasons == {peer_id_of(k.public): R_NOT_SELECTED for k in fresh}, (name, obj)


# ------------------------------------------------------------------ the test


@pytest.mark.attacks
async def test_trust_attacks(mesh: Mesh, busybox_image: str, short_tmp: Path) -> None:
    root = short_tmp
    # generous bounds, never waits: five adversaries and four daemons start slowly on a loaded machine
    with trio.fail_after(240):
        # the publisher's deadline has room for two replacement rounds and the long slack
        boot = await mesh.add(
            "boot",
            build=False,
            config={"timing": {"commit_slack_ms": SLACK_MS, "claim_window_ms": PUBLISHER_WINDOW_MS}},
        )
        wcfg = {"worker": {"slots": 8}, "timing": {"commit_slack_ms": SLACK_MS}}
        workers = [await mesh.add(f"w{i}", config=wcfg) for i in (1, 2, 3)]
        await mesh.wait_connected()
        advs = {
            "sybil": await start_adversary(mesh, "sybil", "sybil", "--project", "sybil", "--keys", "3"),
            "grinder": await start_adversary(mesh, "grinder", "grinder", "--project", "grind", "--keys", "2"),
            "squatter": await start_adversary(
                mesh, "squatter", "squatter", "--project", "squat", "--keys", "1"
            ),
            "early": await start_adversary(mesh, "early", "early", "--project", "early"),
            "noisy": await start_adversary(mesh, "noisy", "noisy", "--project", "noisy", "--keys", "3"),
        }
    c = Ctx(mesh, boot, root, busybox_image, {w.peer_id for w in workers})
    kw: dict[str, Any] = {"image": busybox_image, "script": BUILD, "timeout_s": TIMEOUT_S}
    with trio.fail_after(150):
        # the hostile keys are selected by construction: the honest workers wait, paused, while
        # round 0 of these two jobs is made with the adversaries' claims alone
        for w in workers:
            await w.call("worker_control", action="pause")
        squat_job, squat_r0 = await publish_paused(c, "squat", replicas=3, quorum=3, **kw)
        early_job, early_r0 = await publish_paused(c, "early", replicas=3, quorum=2, **kw)
        # the ground keys claim first (still paused), then the honest workers, well within the
        # publisher's window: round 0 of the grinder's job lists both
        grind_job = await publish_job(
            mesh, boot, write_project(root, "grind", replicas=3, quorum=2, files=FILES, **kw)
        )
        await wait_for(lambda: _two_claims(advs["grinder"], grind_job), "the two ground claims")
        for w in workers:
            await w.call("worker_control", action="resume")
    results: dict[str, dict[str, Any]] = {}

    async def run(name: str, scenario: Any, *args: Any) -> None:
        results[name] = await scenario(c, advs[name], *args)

    with trio.fail_after(300):
        async with trio.open_nursery() as n:
            n.start_soon(run, "squatter", squatter, squat_job, squat_r0)
            n.start_soon(run, "early", early, early_job, early_r0)
            n.start_soon(run, "grinder", grinder, grind_job)
            n.start_soon(run, "sybil", sybil_pair)
            n.start_soon(run, "noisy", require_noisy)
    # one honest digest everywhere (same sources, same build), never an attacker's
    assert len({v["digest"] for v in results.values()}) == 1, results
    with trio.fail_after(60):
        await bundles(mesh, boot, root, results["sybil"])
    assert all(n.alive for n in mesh.nodes.values()), "a daemon died"
    assert all(a.alive for a in advs.values()), "an adversary died"
