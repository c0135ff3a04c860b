"""`publish` shows the daemon's long steps (issue 16: a first publish that built its base image
printed nothing for a minute). Real Docker and the daemon's real publish path (`DockerImages`,
the control server, the CLI): the publisher builds a busybox image that is missing (a variant
with its own label, so the shared image of other tests is never touched) and exports it; the
workers are scripted in-process nodes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pci.control.client import acontrol_call
from p2pci.control.schema import STEP_EVENT_KEYS, STEP_NAMES, STEP_STATES
from p2pci.daemon.image_cache import DockerImages
from p2pci.testing.cluster import ScriptedRunner, open_cluster

from .test_daemon_cli import project, run_cli

pytestmark = pytest.mark.docker


class MissingBusybox(DockerImages):
    """The real DockerImages, but `busybox` resolves to a variant no one has built yet (then
    removed by the test). `hold`: the build waits there until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.token = uuid.uuid4().hex[:12]
        self.building = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.built: list[str] = []

    def resolve(self, name: str, say: Callable[[str], None]) -> str:
        from p2pci.runner.dockerutil import client
        from p2pci.runner.images import build_busybox

        assert name == "busybox"
        assert client().images.list(filters={"label": f"org.p2pci.test-variant={self.token}"}) == []  # missing
        say("p2pci: building the busybox image")
        self.building.set()
        assert self.go.wait(60)
        image_id = build_busybox(
            extra_labels={"org.p2pci.test-variant": self.token}, tag=f"p2pci-test/busybox:{self.token}", progress=say
        )
        self.built.append(image_id)
        return image_id


def _remove(image_ids: list[str]) -> None:
    from p2pci.runner.images import remove_image

    for i in image_ids:
        try:
            remove_image(i)
        except Exception:
            pass  # a worker container may still hold it for a moment: harmless, it is a variant


async def test_publish_events_show_the_image_build_before_the_offer_and_the_socket_stays_free(tmp_path: Path) -> None:
    images = MissingBusybox()
    images.go.clear()  # hold the build until a status call has been answered meanwhile
    try:
        async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
            c.nodes[0].images = images
            home = c.nodes[0].paths.home
            result: list[Any] = []

            async def publish() -> None:
                result.append(await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--events"))

            with trio.fail_after(90):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish)
                    await trio.to_thread.run_sync(images.building.wait)
                    with trio.fail_after(5):  # the build runs in a thread: the control socket answers
                        status = await acontrol_call(home, "status")
                    assert status["node"]["peer_id"] == c.nodes[0].peer_id
                    images.go.set()
            r = result[0]
            assert r.exit_code == 0, r.output
            lines = [json.loads(line) for line in r.stdout.splitlines()]
            steps = [(e["step"], e.get("state")) for e in lines if e["event"] == "step"]
            published = steps.index(("published", None))
            daemon = [s for s in steps[:published] if s[1] is not None]
            for e in lines:
                if e["event"] == "step" and "state" in e:  # the daemon's: exactly the schema's keys
                    assert set(e) == STEP_EVENT_KEYS and e["step"] in STEP_NAMES and e["state"] in STEP_STATES
            assert daemon[0] == ("image", "start") and ("image", "done") in daemon
            assert daemon.index(("image", "done")) < daemon.index(("export", "start")) < daemon.index(("export", "done"))
            assert daemon[-2:] == [("offer", "start"), ("offer", "done")]
            texts = [e["text"] for e in lines if e["event"] == "step" and e["step"] == "image"]
            assert "building the busybox image" in texts and any("busybox layer written" in t for t in texts)
            assert any(images.built[0] in t for t in texts)
            done = next(e for e in lines if e["event"] == "step" and (e["step"], e.get("state")) == ("export", "done"))
            assert done["bytes"] > 100_000 and done["elapsed_ms"] >= 0  # the busybox archive
            assert ("pack", None) in steps[:published]
            assert lines[-1]["event"] == "job" and lines[-1]["job"]["verdict"] == "REPRODUCED"
            view = c.nodes[0].board.job(bytes.fromhex(lines[-1]["job"]["job"]))
            offer = view.offer_msg if view is not None else None
            assert offer is not None and offer.image.id == images.built[0] and offer.image.archive is not None
    finally:
        _remove(images.built)


async def test_publish_json_is_one_document_with_the_image_steps_on_stderr(tmp_path: Path) -> None:
    images = MissingBusybox()
    try:
        async with open_cluster(tmp_path, 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
            c.nodes[0].images = images
            home = c.nodes[0].paths.home
            with trio.fail_after(90):
                r = await run_cli(home, "publish", str(project(tmp_path)), "--wait", "--json")
            assert r.exit_code == 0, r.output
            final = json.loads(r.stdout)  # the whole of stdout: exactly one document
            assert final["verdict"] == "REPRODUCED"
            err = r.stderr.splitlines()
            image = [i for i, line in enumerate(err) if line.startswith("image: ")]
            offer = next(i for i, line in enumerate(err) if line.startswith("offer: offered job "))
            assert image and max(image) < offer < err.index(f"published {final['job']}")
            assert any(line.startswith("export: image archive sha256 ") for line in err)
            assert "image: building the busybox image" in err
    finally:
        _remove(images.built)
