"""Issue 18: an independent js-libp2p client, written from docs/protocol.md alone, joins a real mesh.

The client (tests/interop/client.js) decodes and verifies every fact it gets
over GossipSub and over /p2pci/sync/1, tallies by the document, and must
agree with `p2pci show --json` of every daemon, field for field, for a
REPRODUCED, a DISPUTED and an equivocation case (the client itself is the
equivocator: it claims, is selected, commits twice, and reveals). A claim it
signs must be held by every daemon, also from a client that does not sign its
pubsub messages (StrictNoSign). A late client pulls everything over sync and
agrees too. It also checks every file of tests/vectors.

Needs `node` (>= 20, the machine's nodejs package) and `npm ci` in tests/interop: a
missing one is a failure, not a skip (CI installs both, see .ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.testing.mesh import MESH_IDENTITY_BITS
from tests.e2e.mesh import Mesh, Node, publish_job, write_project

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "vectors"
CLIENT = HERE / "client.js"

# The documented fields of the verdict object (§6) are compared: the verdict's own, and the
# informative ones ("The reference verdict object also has these keys": cause, workers, created,
# deadlines), which the client derives from the same facts as §6 describes them.
VERDICT_KEYS = (
    "job", "project", "verdict", "digest", "replicas", "quorum", "groups", "dissenters", "equivocators",
    "ignored", "reason", "rounds", "ignored_selects", "missing", "declines",
    "cause", "workers", "created", "deadlines",
)  # fmt: skip
# Keys of `show --json` the client does not derive: what the offer states (§6, `provenance`).
NOT_COMPARED = frozenset({"provenance"})

SAME = "cp /build/src/hello.txt /out/hello.txt && echo built"
DIFFERENT = "cat /proc/sys/kernel/random/uuid > /out/hello.txt && echo built"


def node_bin() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `apt-get install nodejs` (CI: .ci/run installs it)")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major, minor = (int(x) for x in out.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 0):
        pytest.fail(f"node {out} is too old for the interop client (needs >= 20)")
    if not (HERE / "node_modules" / "libp2p" / "package.json").exists():
        pytest.fail(
            "the interop client's packages are missing: run `npm ci` in tests/interop (CI: .ci/run does)"
        )
    return node


def test_js_client_checks_every_vector() -> None:
    """The JS client agrees with every envelope, codec value, manifest blob and job verdict in tests/vectors."""
    res = subprocess.run(
        [node_bin(), str(CLIENT), "vectors", str(VECTORS)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    index = json.loads((VECTORS / "index.json").read_text())
    n = sum(len(index[k]) for k in ("envelopes", "codec", "manifests", "jobs"))
    assert res.stdout.strip().splitlines()[-1] == f"{n} passed, 0 failed"


class JsClient:
    """`node client.js session`: one JSON line per answer or event on stdout."""

    def __init__(self, proc: trio.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.buf = b""
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, peers: list[str], log: Path, *args: str) -> JsClient:
        argv = [node_bin(), str(CLIENT), "session", *[x for p in peers for x in ("--peer", p)], *args]
        err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = await trio.lowlevel.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        finally:
            os.close(err)
        client = cls(proc, log)
        with trio.fail_after(60):
            ready = await client.expect("ready")
        client.peer_id = str(ready["ready"])
        client.join_ms = int(ready["join_ms"])
        return client

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")

    async def expect(self, key: str, event: str | None = None) -> dict[str, Any]:
        """The next answer that has `key` (or the next `event`); lines with "error" fail the test."""
        assert self.proc.stdout is not None
        while True:
            for i, obj in enumerate(self.lines):
                if "error" in obj:
                    raise AssertionError(
                        f"js client: {obj['error']}\n{self.log.read_text(errors='replace')[-3000:]}"
                    )
                if (event is None and key in obj and "event" not in obj) or (
                    event is not None and obj.get("event") == event
                ):
                    return self.lines.pop(i)
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"js client exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            self.lines += [json.loads(x) for x in done if x.strip()]

    async def ask(self, line: str, key: str) -> dict[str, Any]:
        await self.send(line)
        return await self.expect(key)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send("quit")
                with trio.move_on_after(10):
                    await self.proc.wait()
            except trio.BrokenResourceError:
                pass
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


def step(what: str) -> None:
    print(f"[interop] {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def documented(view: dict[str, Any]) -> dict[str, Any]:
    """The compared fields; a daemon object with a key that is neither compared nor named in
    NOT_COMPARED fails here (a new key of the job object must be specified and compared)."""
    assert set(view) <= set(VERDICT_KEYS) | NOT_COMPARED, set(view) - set(VERDICT_KEYS) - NOT_COMPARED
    return {k: view.get(k) for k in VERDICT_KEYS}


async def agree(mesh: Mesh, nodes: list[Node], client: JsClient, jobs: list[str]) -> dict[str, Any]:
    """Poll until the client's verdict objects equal every daemon's `show --json`; return the report."""
    last: dict[str, Any] = {}
    try:
        while True:
            report = await client.ask("report " + " ".join(jobs), "jobs")
            ok = True
            for node in nodes:
                for job in jobs:
                    shown = await mesh.show(node, job)
                    mine = documented(report["jobs"][job])
                    last[f"{node.name} {job[:8]}"] = (shown and documented(shown), mine)
                    ok = ok and shown is not None and documented(shown) == mine
            if ok:
                return report
            await trio.sleep(0.5)
    except trio.Cancelled:
        for k, (theirs, mine) in last.items():
            if theirs != mine:
                print(f"DISAGREE {k}\n daemon: {json.dumps(theirs)}\n js:     {json.dumps(mine)}")
        raise


def declined_jobs(tmp: Path) -> Path:
    """Job fact sets the vectors lack, in the vectors' layout: EXPIRED with declines and no claim
    (more than 8 reason codes: "other"), a timed-out selected worker with its log, a worker that
    declined after a claim, and a publisher gone after claims."""
    from p2pci.core.messages import BlobRef, Decline
    from p2pci.core.signing import seal
    from tests.unit.jobgen import JobSim, key, make_offer

    late = 3_000_000  # after make_offer's deadline
    sims: dict[str, tuple[JobSim, int]] = {}
    sim = JobSim(make_offer(key("publisher")))
    for i in range(11):
        sim.decline(key(f"d{i}"), "policy" if i < 2 else f"code{i}", f"detail {i}")
    sims["no_claim_many_codes"] = (sim, late)
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    a, b, c = key("a"), key("b"), key("c")
    for k in (a, b, c):
        sim.claim(k)
    sim.select()
    built = sim.built(a)
    sim.commit(a, built)
    sim.reveal(a, built)
    log = BlobRef(bytes(range(32)), 1234)
    sim._add(seal(b, Decline(sim.job, "timeout", "timed out after 60s; log tail:\nstill compiling", log)))
    sim.decline(c, "slots", "no free slot")
    sims["expired_timeout"] = (sim, late)
    sims["pending_timeout"] = (sim, 1_500_000)
    sim = JobSim(make_offer(key("publisher")))
    sim.claim(a)
    sims["publisher_gone"] = (sim, late)
    jobs = []
    for name, (sim, now) in sims.items():
        files = []
        for i, f in enumerate(sim.facts):
            (tmp / f"{name}-{i}.bin").write_bytes(f.raw)
            files.append(f"{name}-{i}.bin")
        jobs.append({"name": name, "job": sim.job.hex(), "now": now, "facts": files})
    (tmp / "index.json").write_text(json.dumps({"jobs": jobs}))
    return tmp


def test_js_client_derives_the_informative_keys_of_every_job_vector(tmp_path: Path) -> None:
    """cause, workers, created and deadlines, written from §6 alone, agree with p2pci's for every job
    vector and for declined, timed-out and publisher-gone jobs (the vectors hold no EXPIRED job with
    declines); the live mesh below compares them too, but ends no job EXPIRED."""
    from p2pci.core.board import Board
    from p2pci.core.tally import tally, verdict_json

    causes, phases = set(), set()
    for directory in (VECTORS, declined_jobs(tmp_path)):
        res = subprocess.run(
            [node_bin(), str(CLIENT), "informative", str(directory)], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stdout + res.stderr
        theirs = json.loads(res.stdout)
        for vec in json.loads((directory / "index.json").read_text())["jobs"]:
            board = Board()
            for name in vec["facts"]:
                assert board.add((directory / name).read_bytes(), 0)
            view = board.job(bytes.fromhex(vec["job"]))
            assert view is not None
            mine = verdict_json(view, tally(view, vec["now"]))
            want = {k: mine[k] for k in ("cause", "workers", "created", "deadlines")}
            assert theirs[vec["name"]] == want, vec["name"]
            causes.add(mine["cause"])
            phases |= {w["phase"] for w in mine["workers"]}
    # what the cases exercise (fewer would make this test vacuous)
    assert {"revealed", "declined", "timed_out", "claimed", "selected", "dropped"} <= phases, phases
    assert any(c and c.endswith(", 2 other") for c in causes) and any(c and "timed out" in c for c in causes), causes


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.e2e
async def test_js_client_joins_verifies_tallies_and_claims(
    mesh: Mesh, busybox_image: str, short_tmp: Path
) -> None:
    node_bin()
    t_start = time.monotonic()
    mesh.timing["claim_window_ms"] = 3000  # room for every claimant (the JS client too) in round 0
    with trio.fail_after(90):
        a = await mesh.add("a", build=False)  # publisher and observer
        b = await mesh.add("b", bootstrap=[a])
        c = await mesh.add("c", bootstrap=[a])
        await mesh.wait_connected(minimum=2)
    nodes = [a, b, c]
    peers = [n.dial_addr() for n in nodes]
    js = await JsClient.start(peers, short_tmp / "js1.log")
    try:
        # the client is selected for "equivocate" (3 replicas, 3 claimants) and commits twice
        await js.ask("equivocate equivocate", "equivocating")
        same = write_project(
            short_tmp / "p", "reproduced", image=busybox_image, script=SAME, replicas=2, quorum=2
        )
        diff = write_project(
            short_tmp / "p", "disputed", image=busybox_image, script=DIFFERENT, replicas=2, quorum=2
        )
        equi = write_project(
            short_tmp / "p", "equivocate", image=busybox_image, script=SAME, replicas=3, quorum=2
        )
        jobs = {}
        views = {}
        # one job at a time: idle workers claim within the window, so every round 0 names all claimants
        for name, project in (("reproduced", same), ("disputed", diff), ("equivocate", equi)):
            with trio.fail_after(120):
                jobs[name] = await publish_job(mesh, a, project)
                views[name] = await mesh.wait_verdict(jobs[name])
        assert views["reproduced"]["verdict"] == "REPRODUCED"
        assert views["disputed"]["verdict"] == "DISPUTED"
        assert views["equivocate"]["verdict"] == "REPRODUCED"
        assert views["equivocate"]["equivocators"] == [js.peer_id]
        with trio.fail_after(60):
            for name in ("claimed", "committed", "revealed"):
                ev = await js.expect("event", name)
                assert ev["job"] == jobs["equivocate"], ev
        step("verdicts REPRODUCED, DISPUTED, equivocation reached on the daemons")

        with trio.fail_after(60):
            report = await agree(mesh, nodes, js, list(jobs.values()))
        # facts reached the client over gossip: every offer, select, commit and reveal of the three jobs
        print(json.dumps({k: report[k] for k in ("counts", "kinds", "rejected")}), file=sys.stderr)
        # every fact of the three jobs reached the client over gossip, and none was refused
        gossiped = {kind: n["gossip"] for kind, n in report["kinds"].items()}
        assert gossiped["offer"] == 3 and gossiped["select"] >= 3, gossiped
        assert gossiped["commit"] >= 2 + 2 + 4 and gossiped["reveal"] >= 2 + 2 + 3, gossiped
        assert report["rejected"] == {}

        # a claim it signs (identity proof of work at the offer's strength) is held by every daemon
        step("js client agrees with show --json of every daemon")
        claim = await js.ask(f"claim {jobs['reproduced']}", "claimed")
        with trio.fail_after(60):
            held = await js.ask(f"held {claim['claimed']}", "held")
        assert held["held"] == {n.peer_id: True for n in nodes}

        step("its claim is held by every daemon")
        # a late joiner gets every fact over /p2pci/sync/1 only, and agrees too
        late = await JsClient.start(peers, short_tmp / "js2.log")
        try:
            with trio.fail_after(60):
                rep2 = await agree(mesh, nodes, late, list(jobs.values()))
            # facts still in the gossip history may come by IHAVE/IWANT too (the message cache
            # answers with our fact ids); the older ones can only come over sync
            assert rep2["counts"]["sync"] >= 1 and rep2["total"] >= 3 * 5 and rep2["rejected"] == {}
        finally:
            await late.stop()

        step("a late js client (sync only) agrees too")
        # an unsigned (StrictNoSign) publisher's claim reaches every daemon over gossip (§8.1):
        # with --no-serve the client never offers it over sync
        nosign = await JsClient.start(peers, short_tmp / "js3.log", "--no-sign", "--no-serve")
        try:
            # at the offer's strength, named: this client learns the offer over sync only and may
            # not hold it yet, and a claim weaker than the offer's identity_bits is refused
            # (docs/protocol.md §4.8)
            c3 = await nosign.ask(f"claim {jobs['disputed']} {MESH_IDENTITY_BITS}", "claimed")
            with trio.fail_after(60):
                held3 = await nosign.ask(f"held {c3['claimed']}", "held")
            assert held3["held"] == {n.peer_id: True for n in nodes}
            # ... while it drops every signed p2pci message (it learns facts over sync only)
            rep3 = await nosign.ask("report " + jobs["disputed"], "jobs")
            assert rep3["counts"]["gossip"] == 1 and rep3["counts"]["sync"] >= 5, rep3["counts"]
            # p2pci forwards the unsigned message as it is: a StrictSign node drops it, and gets the
            # fact over sync only
            await js.ask("report " + jobs["disputed"], "jobs")
            assert (await js.ask(f"via {c3['claimed']}", "via"))["via"] == ["sync"]
        finally:
            await nosign.stop()
    finally:
        await js.stop()
    print(f"\n[interop] js client joined in {js.join_ms} ms; whole test {time.monotonic() - t_start:.1f} s")
