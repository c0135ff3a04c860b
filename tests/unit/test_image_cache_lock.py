"""DockerImages runs one image step at a time: a second publish waits, and says so."""

from __future__ import annotations

import threading
from typing import Any

from p2pci.core.messages import ImageRef
from p2pci.daemon.image_cache import DockerImages


class Held(DockerImages):
    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.go = threading.Event()
        self.calls = 0

    def _publish(self, name: str, blobs: Any, store: Any, progress: Any) -> ImageRef:
        self.calls += 1
        if self.calls == 1:
            self.inside.set()
            assert self.go.wait(30)
        return ImageRef("sha256:" + "0" * 64, None)


def test_a_second_publish_waits_for_the_first_image_step_and_says_so() -> None:
    images = Held()
    first: list[tuple[str, str, str]] = []
    second: list[tuple[str, str, str]] = []
    waiting = threading.Event()

    def sink(into: list[tuple[str, str, str]]) -> Any:
        def add(step: str, state: str, text: str, size: int | None = None) -> None:
            into.append((step, state, text))
            if text.startswith("waiting for another publish"):
                waiting.set()

        return add

    t1 = threading.Thread(target=lambda: images.publish("busybox", None, None, sink(first)))  # type: ignore[arg-type]
    t1.start()
    assert images.inside.wait(30)
    t2 = threading.Thread(target=lambda: images.publish("busybox", None, None, sink(second)))  # type: ignore[arg-type]
    t2.start()
    assert waiting.wait(30)  # blocked behind the first, and it said so
    assert images.calls == 1
    images.go.set()
    t1.join(30)
    t2.join(30)
    assert images.calls == 2 and not t1.is_alive() and not t2.is_alive()
    assert second[:2] == [("image", "start", "resolving the image busybox"),
                          ("image", "info", "waiting for another publish of this node to finish its image step")]
    assert not any(t.startswith("waiting") for _, _, t in first)
