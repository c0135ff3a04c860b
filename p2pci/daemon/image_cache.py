"""How a node gets build images: the publisher resolves and exports, a worker imports.

`DockerImages` uses `p2pci.runner.images` (real Docker); `p2pci.testing.images.FakeImages`
is for in-process tests (image ids are made up, nothing loads).
All methods block: call them through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Protocol

from p2pci.core.messages import BlobRef, ImageRef
from p2pci.store.blobs import BlobStore
from p2pci.store.facts import FactStore

_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


class Images(Protocol):
    def publish(self, name: str, blobs: BlobStore, store: FactStore) -> ImageRef:
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
    """Real images: `resolve_image` + `export_image` (cached per id) / `import_image`."""

    def publish(self, name: str, blobs: BlobStore, store: FactStore) -> ImageRef:
        from p2pci.runner.images import export_image, resolve_image

        image_id = resolve_image(name)
        cached = store.kv_get(f"image/{image_id}")
        if isinstance(cached, dict):
            ref = BlobRef(sha256=bytes(cached["sha256"]), size=int(cached["size"]))
            if blobs.size(ref.sha256) == ref.size:
                return ImageRef(image_id, ref)
        with tempfile.TemporaryDirectory(dir=blobs.dir / "tmp") as tmp:
            dest = Path(tmp) / "image.tar"
            export_image(image_id, dest)
            ref = blobs.put_file(dest)
        store.kv_put(f"image/{image_id}", {"sha256": ref.sha256, "size": ref.size})
        return ImageRef(image_id, ref)

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
