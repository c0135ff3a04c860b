"""`p2pci source-hash`, and what `publish` packs: the source tree, its recipe, its pinned inputs.

Registered on the root group by p2pci.cli.main (`source_hash_command` as
"source-hash"). Errors: one line on stderr, exit status 2.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from p2pci.core.errors import LocalError, P2pciError
from p2pci.recipe import Recipe
from p2pci.runner.tree import SourceTree
from p2pci.store.blobs import BlobStore

Progress = Callable[[str], None]


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


@click.command("source-hash")
@click.argument("dir", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--rev", default=None, metavar="REV", help="Hash this git commit (default: HEAD).")
@click.option("--dirty", is_flag=True, help="Hash the working tree as it is, like `publish --dirty`.")
@click.option("--json", "as_json", is_flag=True, help="Print {sha256, size, mode, git_commit, …} as JSON.")
def source_hash_command(dir: Path, rev: str | None, dirty: bool, as_json: bool) -> None:
    """The SHA-256 of DIR's source exactly as `publish` packs it.

    In a git work tree: `git archive` of HEAD (or --rev), normalised (sorted
    names, mtime 0, owner 0, modes 0644/0755): anyone with the same commit
    gets the same hash, whatever their checkout's timestamps or umask.
    Compare it with the source SHA-256 a verdict names. Exit 0, or 2 on error.
    """
    from p2pci.runner.tree import pack_tree, provenance, select_tree

    try:
        tree = select_tree(dir, rev=rev, dirty=dirty)
        with tempfile.TemporaryDirectory(prefix="p2pci-hash-") as tmp:
            sha, size = pack_tree(tree, Path(tmp) / "source.tar")
    except P2pciError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"sha256": sha.hex(), "size": size, **provenance(tree, sha, size)}))
        return
    click.echo(f"{sha.hex()}  {dir}")
    _progress(f"{size} bytes: {tree.describe()}")
    if tree.mode == "git" and tree.changes:
        _progress(f"note: {len(tree.changes)} uncommitted change(s) are not included (--dirty hashes them)")


@dataclass(frozen=True)
class PackedProject:
    """What `publish` offers: the recipe (from the built tree) and the blobs it put in the store."""

    recipe: Recipe
    source_sha256: bytes
    source_size: int
    inputs: Any  # p2pci.runner.fetch.PreparedInputs | None
    provenance: dict[str, Any]  # for people: source hash, mode, commit, tree, path, dirty, inputs hash
    offer_provenance: dict[str, str | None]  # for the offer: {"commit", "tree"} (None unless a clean commit)


def pack_project(
    tree: SourceTree, recipe: Recipe, store: BlobStore, *, progress: Progress = _progress
) -> PackedProject:
    """Pack the selected tree's source and the recipe's pinned inputs into the blob store.

    Raises LocalError (a wrong [[input]] sha256, a failing [fetch], …) before anything is offered.
    """
    from p2pci.runner.fetch import prepare_inputs
    from p2pci.runner.tree import offer_provenance, pack_tree, provenance

    with tempfile.TemporaryDirectory(dir=store.dir / "tmp") as tmp:
        tar = Path(tmp) / "source.tar"
        sha, size = pack_tree(tree, tar)
        progress(f"source sha256 {sha.hex()} ({size} bytes): {tree.describe()}")
        inputs = prepare_inputs(recipe, tar, progress=progress)
        store.put_file(tar)
    if inputs is not None:
        ref = store.put_file(inputs.path)  # a copy: the cache keeps its own
        if ref.sha256 != inputs.sha256:
            raise LocalError(f"the cached inputs changed while they were stored ({ref.sha256.hex()})")
    prov = provenance(tree, sha, size)
    prov["inputs_sha256"] = inputs.sha256.hex() if inputs is not None else None
    return PackedProject(recipe, sha, size, inputs, prov, offer_provenance(tree))
