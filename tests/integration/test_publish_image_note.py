"""`publish` says when the daemon will build the base image first (issue 16: a first publish was
silent for a minute while it built). Real Docker: a recipe no image was built for, and busybox."""

from __future__ import annotations

import pytest

from p2pci.cli.checks import base_image_note

pytestmark = pytest.mark.docker


def test_a_missing_base_image_is_announced_and_a_built_one_is_not() -> None:
    from p2pci.runner.images import resolve_image

    note = base_image_note("debian:p2pci-never-built+nothing")
    assert note.startswith("the base image debian:p2pci-never-built+nothing is not built yet: the daemon builds it first")
    assert "mmdebstrap" in note
    resolve_image("busybox")  # built once, reused when present (seconds)
    assert base_image_note("busybox") == ""
    assert base_image_note("sha256:" + "0" * 64) == ""  # an ID: nothing to build, the daemon checks it
