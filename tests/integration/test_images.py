"""Deterministic images, export and import with --expect (real Docker engine)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pci.cli.build_cmds import image_group
from p2pci.core.errors import LocalError
from p2pci.runner import images
from p2pci.runner.dockerutil import LABEL_RECIPE, client

pytestmark = pytest.mark.docker


@pytest.fixture
def variant() -> Iterator[tuple[dict[str, str], str]]:
    """Labels and tag of a busybox variant private to this test (removed at the end)."""
    t = uuid.uuid4().hex[:12]
    labels = {LABEL_RECIPE: f"busybox-test-{t}", "org.p2pci.test": t}
    yield labels, f"p2pci-test/busybox:{t}"
    for img in client().images.list(filters={"label": f"org.p2pci.test={t}"}):
        images.remove_image(img.id)


def test_busybox_image_is_deterministic(tmp_path: Path, variant: tuple[dict[str, str], str]) -> None:
    labels, tag = variant
    first = images.build_busybox(extra_labels=labels, tag=tag, archive_out=tmp_path / "a.tar")
    assert images.image_exists(first)
    images.remove_image(first)  # fresh docker state
    assert not images.image_exists(first)
    second = images.build_busybox(extra_labels=labels, tag=tag, archive_out=tmp_path / "b.tar")
    assert second == first and images.image_exists(second)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert images.archive_image_id(tmp_path / "a.tar") == first
    # the layer is normalised: sorted, one mtime, numeric owners only
    with tarfile.open(tmp_path / "a.tar") as outer:
        layer_name = next(n for n in outer.getnames() if n.endswith("layer.tar"))
        fh = outer.extractfile(layer_name)
        assert fh is not None
        with tarfile.open(fileobj=io.BytesIO(fh.read())) as layer:
            ms = layer.getmembers()
    names = [m.name for m in ms]
    assert names == sorted(names, key=str.encode)
    assert {m.mtime for m in ms} == {images.IMAGE_EPOCH}
    assert {(m.uname, m.gname) for m in ms} == {("", "")}
    assert "bin/busybox" in names and "etc/passwd" in names


def test_export_remove_import(tmp_path: Path, variant: tuple[dict[str, str], str]) -> None:
    labels, tag = variant
    image_id = images.build_busybox(extra_labels=labels, tag=tag)
    sha, size = images.export_image(image_id, tmp_path / "img.tar")
    assert size == (tmp_path / "img.tar").stat().st_size and len(sha) == 32
    images.remove_image(image_id)
    assert images.import_image(tmp_path / "img.tar", expect=image_id) == image_id
    assert images.image_exists(image_id)
    images.ensure_image(image_id)  # present: nothing to do


def test_import_wrong_expect_fails_and_leaves_no_image(
    tmp_path: Path, variant: tuple[dict[str, str], str]
) -> None:
    labels, tag = variant
    archive = tmp_path / "img.tar"
    image_id = images.build_busybox(extra_labels=labels, tag=tag, archive_out=archive)
    images.remove_image(image_id)
    wrong = "sha256:" + "ab" * 32
    with pytest.raises(LocalError, match="expected sha256:abab"):
        images.import_image(archive, expect=wrong)
    assert not images.image_exists(image_id) and not images.image_exists(wrong)
    assert client().images.list(filters={"label": f"org.p2pci.test={labels['org.p2pci.test']}"}) == []
    # via the CLI: exit 2, one line, still no image
    r = CliRunner().invoke(image_group, ["import", str(archive), "--expect", wrong])
    assert r.exit_code == 2 and "expected sha256:abab" in r.output
    assert not images.image_exists(image_id)


def test_import_strips_tags(tmp_path: Path, variant: tuple[dict[str, str], str]) -> None:
    """An archive's tags are not applied: a hostile one must not retag our images."""
    labels, tag = variant
    archive = tmp_path / "img.tar"
    image_id = images.build_busybox(extra_labels=labels, tag=tag, archive_out=archive)
    with tarfile.open(archive) as t:
        fh = t.extractfile("manifest.json")
        assert fh is not None and json.loads(fh.read())[0]["RepoTags"] == [tag]
    images.remove_image(image_id)
    images.ensure_image(image_id, archive)
    assert client().images.get(image_id).tags == []


def test_ensure_image_without_archive_is_a_build_error() -> None:
    from p2pci.core.errors import BuildError

    with pytest.raises(BuildError):
        images.ensure_image("sha256:" + "cd" * 32)


def test_garbage_archive_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(LocalError, match="bad image archive"):
        images.import_image(tmp_path / "x.tar", expect="sha256:" + "ef" * 32)


def test_cli_build_busybox_twice_same_id_and_list(tmp_path: Path) -> None:
    cli = CliRunner()
    a = cli.invoke(image_group, ["build", "busybox", "--output", str(tmp_path / "bb.tar")])
    b = cli.invoke(image_group, ["build", "busybox"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    id_a, id_b = a.stdout.strip().splitlines()[-1], b.stdout.strip().splitlines()[-1]
    assert id_a == id_b and id_a.startswith("sha256:") and len(id_a) == 71
    assert images.archive_image_id(tmp_path / "bb.tar") == id_a
    assert images.resolve_image("busybox") == id_a
    listed = cli.invoke(image_group, ["list", "--json"])
    assert listed.exit_code == 0
    assert any(i["id"] == id_a and i["recipe"] == "busybox" for i in json.loads(listed.stdout))
    table = cli.invoke(image_group, ["list"]).stdout.splitlines()
    assert table[0].split() == ["IMAGE", "ID", "RECIPE", "SIZE", "TAGS"]
    (row,) = [line for line in table[1:] if line.startswith(id_a)]
    assert row.split()[1] == "busybox" and row.index(" MB") + 3 == table[0].index("SIZE") + 4  # right-aligned
    exported = cli.invoke(image_group, ["export", id_a, str(tmp_path / "e.tar")])
    assert exported.exit_code == 0 and "sha256" in exported.stdout
    assert images.archive_image_id(tmp_path / "e.tar") == id_a
    imported = cli.invoke(image_group, ["import", str(tmp_path / "e.tar"), "--expect", id_a])
    assert imported.exit_code == 0 and imported.stdout.strip() == id_a
    # --json: one document on stdout each (progress stays on stderr)
    built = cli.invoke(image_group, ["build", "busybox", "--json"])
    doc = json.loads(built.stdout)
    assert (doc["image_id"], doc["recipe"]) == (id_a, "busybox") and doc["seconds"] >= 0
    exported = cli.invoke(image_group, ["export", id_a, str(tmp_path / "j.tar"), "--json"])
    data = (tmp_path / "j.tar").read_bytes()
    assert json.loads(exported.stdout) == {
        "file": str(tmp_path / "j.tar"), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()
    }
    imported = cli.invoke(image_group, ["import", str(tmp_path / "j.tar"), "--expect", id_a, "--json"])
    assert json.loads(imported.stdout) == {"image_id": id_a}
