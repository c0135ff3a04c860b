"""Images for in-process tests: no Docker, nothing is loaded."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from p2pci.core.messages import ImageRef
from p2pci.daemon.image_cache import StepSink, no_steps
from p2pci.store.blobs import BlobStore
from p2pci.store.facts import FactStore

_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


class FakeImages:
    """For in-process tests: any name maps to a stable made-up id, always present."""

    def publish(self, name: str, blobs: BlobStore, store: FactStore, progress: StepSink = no_steps) -> ImageRef:
        if _ID.match(name):
            return ImageRef(name, None)
        return ImageRef("sha256:" + hashlib.sha256(name.encode()).hexdigest(), None)

    def present(self, image_id: str) -> bool:
        return True

    def load(self, image_id: str, archive: Path) -> None:
        return None

    def recipe(self, image_id: str) -> str | None:
        return "fake"  # every made-up image counts as built from a recipe

    def remove(self, image_id: str) -> bool:
        return True
