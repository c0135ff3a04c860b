"""How a node gets build images: the publisher resolves and exports, a worker imports.

`DockerImages` uses `p2pci.runner.images` (real Docker); `p2pci.testing.images.FakeImages`
is for in-process tests (image ids are made up, nothing loads).
All methods block: call them through `trio.to_thread.run_sync`.

`publish` reports what it does through a `StepSink` (`step`, `state`, `text`, `size`): the
daemon turns each call into a `step` event on the publishing client's connection
(docs/cli.md, "Progress"): steps `image` (resolve, or build a missing base image) and `export`
(`docker save` of the image and storing the archive as a blob); states `start`, `info`, `done`.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from p2pci.core.messages import BlobRef, ImageRef
from p2pci.store.blobs import BlobStore
from p2pci.store.facts import FactStore

_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


class StepSink(Protocol):
    def __call__(self, step: str, state: str, text: str, size: int | None = None) -> None: ...


def no_steps(step: str, state: str, text: str, size: int | None = None) -> None:
    return None


class Images(Protocol):
    def publish(self, name: str, blobs: BlobStore, store: FactStore, progress: StepSink = no_steps) -> ImageRef:
        """Resolve a recipe's image name to an ImageRef whose archive (if any) is in `blobs`."""
        ...

    def present(self, image_id: str) -> bool:
        """Whether the image is loaded here (a worker then needs no archive)."""
        ...

    def load(self, image_id: str, archive: Path) -> None:
        """Load an archive, checking it yields exactly `image_id` (LocalError otherwise)."""
        ...

    def recipe(self, image_id: str) -> str | None:
        """The deterministic recipe ("busybox", "debian:…") this image was built from here, if any."""
        ...

    def remove(self, image_id: str) -> bool:
        """Remove an image p2pci loaded (never forced: one a container still uses stays); True if gone."""
        ...


class DockerImages:
    """Real images: `resolve_image` + `export_image` (cached per id) / `import_image`.

    One publish resolves and exports at a time: two first publishes of one recipe build its
    image once (the second finds it), never twice side by side."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def publish(self, name: str, blobs: BlobStore, store: FactStore, progress: StepSink = no_steps) -> ImageRef:
        progress("image", "start", f"resolving the image {name}")
        if not self._lock.acquire(blocking=False):
            progress("image", "info", "waiting for another publish of this node to finish its image step")
            self._lock.acquire()
        try:
            return self._publish(name, blobs, store, progress)
        finally:
            self._lock.release()

    def _publish(self, name: str, blobs: BlobStore, store: FactStore, progress: StepSink) -> ImageRef:
        image_id = self.resolve(name, lambda text: progress("image", "info", text.removeprefix("p2pci: ")))
        progress("image", "done", f"image {name}: {image_id}")
        cached = store.kv_get(f"image/{image_id}")
        if isinstance(cached, dict):
            ref = BlobRef(sha256=bytes(cached["sha256"]), size=int(cached["size"]))
            if blobs.size(ref.sha256) == ref.size:
                return ImageRef(image_id, ref)
        from p2pci.runner.images import export_image

        progress("export", "start", f"exporting {image_id[:19]}… (docker save) for the workers")
        with tempfile.TemporaryDirectory(dir=blobs.dir / "tmp") as tmp:
            dest = Path(tmp) / "image.tar"
            _, size = export_image(
                image_id, dest, progress=lambda n: progress("export", "info", f"exported {n} bytes", n)
            )
            progress("export", "info", f"storing the image archive ({size} bytes) in the blob store", size)
            ref = blobs.put_file(dest)
        store.kv_put(f"image/{image_id}", {"sha256": ref.sha256, "size": ref.size})
        progress("export", "done", f"image archive sha256 {ref.sha256.hex()} ({ref.size} bytes)", ref.size)
        return ImageRef(image_id, ref)

    def resolve(self, name: str, say: Callable[[str], None]) -> str:
        """The image ID for a recipe's name, building a missing busybox or Debian image."""
        from p2pci.runner.images import resolve_image

        return resolve_image(name, progress=say)

    def present(self, image_id: str) -> bool:
        from p2pci.runner.images import image_exists

        return image_exists(image_id)

    def load(self, image_id: str, archive: Path) -> None:
        from p2pci.runner.images import import_image

        import_image(archive, expect=image_id)

    def recipe(self, image_id: str) -> str | None:
        from p2pci.runner.images import image_recipe

        return image_recipe(image_id) if _ID.match(image_id) else None

    def remove(self, image_id: str) -> bool:
        import docker

        from p2pci.runner.dockerutil import client

        try:
            client().images.remove(image_id, force=False)
        except docker.errors.ImageNotFound:
            return True
        except docker.errors.APIError:  # in use by a container, or tagged by the donor since
            return False
        return True
