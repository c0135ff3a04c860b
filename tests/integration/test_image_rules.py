"""`Builds.check_image`: which images a worker runs for which publisher (docs/security.md, "Which
images a worker runs"), with a real blob store and SQLite, and an image engine stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pci.core.messages import BlobRef
from p2pci.daemon.builds import IMAGE_BY, IMAGE_LOADED, Builds, ImageRefused
from p2pci.store.blobs import BlobStore
from p2pci.store.facts import FactStore
from p2pci.testing.cluster import ScriptedRunner

IMG = "sha256:" + "c" * 64
A, B, ME = b"a" * 32, b"b" * 32, b"m" * 32


class Engine:
    def __init__(self, present: set[str], recipes: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.here, self.recipes = set(present), set(recipes)

    def present(self, image_id: str) -> bool:
        return image_id in self.here

    def recipe(self, image_id: str) -> str | None:
        return "busybox" if image_id in self.recipes else None


def builds(tmp_path: Path, engine: Engine) -> Builds:
    async def fetch(ref: BlobRef, peers: list[bytes]) -> Path:
        raise AssertionError("not fetched here")

    b = Builds(ScriptedRunner(), engine, BlobStore(tmp_path / "blobs"), fetch, tmp_path / "work", lambda j, t: None)  # type: ignore[arg-type]
    b.store = FactStore(tmp_path / "state.sqlite")
    b.me = ME
    return b


def test_which_local_images_run_for_whom(tmp_path: Path) -> None:
    b = builds(tmp_path, Engine({IMG}))
    arch = b.blobs.put_bytes(b"an image archive")
    # the donor's own image, no archive: refused for a stranger, fine for our own offers
    with pytest.raises(ImageRefused, match="local image this worker does not run"):
        b.check_image(IMG, A, None)
    assert b.check_image(IMG, ME, None) is False
    # listed by the donor: runs as it is
    b.listed_images = frozenset({IMG})
    assert b.check_image(IMG, A, None) is False
    b.listed_images = frozenset()
    # A's archive brought it: runs for A without a new load; B naming A's archive hash is refused
    b._record_image(IMG, A, b"j" * 32, was_here=False)
    assert b.store is not None and b.store.kv_get(IMAGE_BY + IMG) == [A.hex()]
    assert b.store.kv_get(IMAGE_LOADED + IMG) == [(b"j" * 32).hex()]
    assert b.check_image(IMG, A, None) is False
    with pytest.raises(ImageRefused, match="archive is here for another publisher"):
        b.check_image(IMG, B, arch)
    # an archive not here yet: B must send it (True: fetch from B and load, checked against the ID)
    other = BlobRef(b"\x01" * 32, 10)
    assert b.check_image(IMG, B, other) is True


def test_recipe_images_run_and_missing_images_need_an_archive(tmp_path: Path) -> None:
    b = builds(tmp_path, Engine({IMG}, {IMG}))
    assert b.check_image(IMG, A, None) is False  # built here from a recipe: public
    b2 = builds(tmp_path / "2", Engine(set()))
    with pytest.raises(ImageRefused, match="not here, and the offer has no archive"):
        b2.check_image(IMG, A, None)
    # the donor's image was here before p2pci "loaded" it: never recorded as p2pci's to remove
    b2._record_image(IMG, A, b"j" * 32, was_here=True)
    assert b2.store is not None and b2.store.kv_get(IMAGE_LOADED + IMG) is None
