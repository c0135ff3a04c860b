"""How a node gets build images: the publisher resolves and exports, a worker imports.

`DockerImages` uses `p2pci.runner.images` (real Docker); `FakeImages` is for
in-process tests with a FakeRunner (image ids are made up, nothing loads).
All methods block: call them through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import hashlib
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


class FakeImages:
    """For FakeRunner tests: any name maps to a stable made-up id, always present."""

    def publish(self, name: str, blobs: BlobStore, store: FactStore) -> ImageRef:
        if _ID.match(name):
            return ImageRef(name, None)
        return ImageRef("sha256:" + hashlib.sha256(name.encode()).hexdigest(), None)

    def present(self, image_id: str) -> bool:
        return True

    def load(self, image_id: str, archive: Path) -> None:
        return None
