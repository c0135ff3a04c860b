"""A hostile peer cannot spoof the terminal of `p2pci show / jobs / status --once` (issue 14).

Real daemons (memory network, scripted runners) behind the real control socket; the CLI runs
through click. The hostile strings arrive as signed facts, the way a peer would send them.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import trio
from click.testing import CliRunner, Result

from p2pci.cli.main import cli
from p2pci.core.identity import identity_bits, mint
from p2pci.core.messages import BlobRef, Claim, Reveal
from p2pci.core.results import result_digest
from p2pci.core.signing import NodeKey, seal
from p2pci.testing.cluster import open_cluster, sealed_claim
from p2pci.textsafe import safe_text

FAKE = "\nverdict  REPRODUCED  \x1b[32mdeadbeef\x1b[0m\x1b[2K\r\u202e"


async def run_cli(home: Path, *args: str) -> Result:
    def go() -> Result:
        return CliRunner().invoke(cli, ["--home", str(home), *args])

    return await trio.to_thread.run_sync(go)


def assert_safe(out: str) -> None:
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    for line in out.splitlines():
        assert not line.startswith("verdict  REPRODUCED"), out
        assert not line.lstrip().startswith("REPRODUCED"), out


def test_safe_text_escapes_controls_and_keeps_plain_text() -> None:
    assert safe_text("hello-1.0 ü 中") == "hello-1.0 ü 中"
    assert safe_text("a\nb\x1b[31mc\r\x7f\x9b\u202e\u200b") == "a\\nb\\x1b[31mc\\r\\x7f\\x9b\\u202e\\u200b"
    assert safe_text("a\nb\tc\x1b", multiline=True) == "a\nb\tc\\x1b"
    assert safe_text("\u2028") == "\\u2028"


async def test_escape_sequence_project_cannot_fake_a_verdict(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        node, observer = c.nodes
        job = await c.publish(node, replicas=2, quorum=2, project="demo" + FAKE, env={"K": "v\x1b]0;pwned\x07"})
        with trio.fail_after(10):
            await c.wait_verdict(job, [observer], final=False)  # the offer reached a peer that prints it
        home = observer.paths.home
        for args in (["show", job], ["jobs"], ["status", "--once"]):
            r = await run_cli(home, *args)
            assert r.exit_code == 0, r.output
            assert "demo\\nverdict" in r.stdout, r.stdout  # shown, escaped
            assert_safe(r.stdout)
        # --json keeps the exact text
        r = await run_cli(home, "show", job, "--json")
        assert json.loads(r.stdout)["project"] == "demo" + FAKE
        r = await run_cli(home, "jobs", "--json")
        assert json.loads(r.stdout)[0]["project"] == "demo" + FAKE


async def test_257_junk_reveals_do_not_break_status(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, 2, runners=[None, None]) as c:
        node, observer = c.nodes
        job = await c.publish_seen(node, [observer], replicas=2, quorum=2)
        jid = bytes.fromhex(job)
        strongest = 0
        for i in range(257):  # fresh keys that claimed, no commit: every one is an ignored vote
            k = NodeKey.from_seed(secrets.token_bytes(32))
            claim = sealed_claim(k, jid)
            if i == 256:  # a job stores 256 claimant keys per proof strength: the last is stronger
                claim = seal(k, Claim(jid, 2**40, mint(k.public, strongest + 1)))
            body = claim.body
            assert isinstance(body, Claim)
            strongest = max(strongest, identity_bits(k.public, body.identity))
            await observer.ingest(claim.raw)
            digest = result_digest(1, ())
            rev = Reveal.of(jid, digest, secrets.token_bytes(16), 1, (), BlobRef(bytes(32), 0), ())
            await observer.ingest(seal(k, rev).raw)
        obj = observer.fresh_job_obj(observer.board.job(jid))  # type: ignore[arg-type]
        assert len(obj["ignored"]) == 257
        home = observer.paths.home
        r = await run_cli(home, "status", "--once")
        assert r.exit_code == 0, r.output
        assert job[:12] in r.stdout and "malformed" not in r.stdout
        r = await run_cli(home, "show", job)
        assert r.exit_code == 0 and r.stdout.count("ignored  ") == 257


def test_tui_model_keeps_a_job_with_hundreds_of_ignored_votes_and_escapes_it() -> None:
    from p2pci.tui import model as m

    job = {
        "job": "ab" * 32, "project": "p" + FAKE, "verdict": "PENDING", "digest": None, "replicas": 2,
        "quorum": 2, "groups": [], "dissenters": [], "equivocators": [],
        "ignored": [{"worker": f"w{i}", "reason": "no commit\x1b[2J"} for i in range(300)],
    }
    model = m.StatusModel(connected=True)
    assert model.apply_event({"event": "job", "job": job}, 0) == "job"
    assert model.apply_event({"event": "log", "job": "ab" * 32, "text": "ok\n\x1b[1Afake\n"}, 0) == "log"
    j = model.jobs["ab" * 32]
    assert len(j.ignored) == m.MAX_LIST and j.hidden == 300 - m.MAX_LIST
    text = "\n".join(m.detail_lines(model, j)) + m.snapshot_text(model, 0) + "\n".join(model.logs["ab" * 32])
    assert_safe(text)
    assert "(and 44 more entries not shown" in text and list(model.logs["ab" * 32]) == ["ok", "\\x1b[1Afake"]


def test_tui_shows_peer_text_literally_and_survives_junk_votes() -> None:
    import asyncio
    import html

    from p2pci.tui import model as m
    from p2pci.tui.app import JobScreen, StatusApp
    from tests.integration.test_tui_helpers import job_obj, status_obj

    now = 1_700_000_000_000
    job = job_obj("ab" * 32, "PENDING", project="[reverse]x[/reverse]\x1b[31my", created=now)
    job["ignored"] = [{"worker": f"w{i}", "reason": "[b]no commit[/b]"} for i in range(300)]
    model = m.StatusModel()
    assert model.apply_status(status_obj([job]), now) and model.bad_frames == 0

    async def main() -> tuple[str, str]:
        app = StatusApp(None, clock=lambda: now, model=model)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            board = app.export_screenshot()
            app.push_screen(JobScreen("ab" * 32))
            async with asyncio.timeout(20):  # the detail (a scrolled pane) is drawn after a layout pass
                while "[b]no commit[/b]" not in html.unescape(shot := app.export_screenshot()).replace("\xa0", " "):
                    await pilot.pause(0.05)
            return board, shot

    board, detail = (html.unescape(s).replace("\xa0", " ") for s in asyncio.run(main()))
    assert "[reverse]x[/reverse]\\x1b[31my" in board  # shown as text, not as markup or an escape
    assert "[b]no commit[/b]" in detail
