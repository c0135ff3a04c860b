"""The fetch phase against a real Docker engine, offline: a PyPI-style index on 127.0.0.1.

`pip download --require-hashes` runs in the fetch container (debian:bookworm+python3-pip, host
network), the result is packed, cached, and installed by a build that has no network.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pci.core.errors import LocalError
from p2pci.recipe import load_recipe
from p2pci.runner.base import BuildSpec, Limits
from p2pci.runner.docker_runner import DockerRunner
from p2pci.runner.fetch import prepare_inputs
from p2pci.runner.images import resolve_image
from p2pci.runner.source import pack_source
from tests.integration.pypi_fixture import Index, serve_index

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PIP_IMAGE = "debian:bookworm+python3-pip"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    idx = serve_index(tmp_path / "index")
    yield idx
    idx.close()


def project(tmp_path: Path, index: Index, data_sha: str | None = None) -> Path:
    d = tmp_path / "proj"
    d.mkdir(exist_ok=True)
    (d / "requirements.txt").write_text(index.requirements())
    (d / "p2pci.toml").write_text(
        f"""[build]
image = "{PIP_IMAGE}"
command = ["sh", "-c", "umask 022 && pip install --no-index --find-links /build/inputs --target /tmp/t -r requirements.txt && PYTHONPATH=/tmp/t python3 -c 'import alpha; print(alpha.hello())' > /out/hello.txt && cp /build/inputs/data.txt /out/"]

[fetch]
command = "pip download --no-cache-dir --require-hashes -r requirements.txt -d /inputs"
env = {{ PIP_INDEX_URL = "{index.url}/simple/" }}
timeout = "5m"

[[input]]
url = "{index.url}/files/data.txt"
sha256 = "{data_sha or index.hashes["data.txt"]}"
"""
    )
    return d


def test_pinned_pypi_inputs_are_fetched_cached_and_reach_an_offline_build(
    tmp_path: Path, index: Index
) -> None:
    image = resolve_image(PIP_IMAGE)
    d = project(tmp_path, index)
    recipe = load_recipe(d)
    src = tmp_path / "src.tar"
    pack_source(d, src)
    lines: list[str] = []
    cache = tmp_path / "cache"
    first = prepare_inputs(recipe, src, cache_dir=cache, progress=lines.append)
    assert first is not None and not first.cached
    assert any(ln.startswith("  fetch| ") and "Saved" in ln for ln in lines), (
        lines
    )  # pip ran in the container
    assert "/simple/alpha/" in index.requests and "/simple/beta/" in index.requests
    with tarfile.open(first.path) as t:
        names = sorted(m.name for m in t)
    assert names == ["alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "data.txt"]

    # Same recipe and lockfile: the cache, and nothing is asked of the index.
    asked = len(index.requests)
    lines.clear()
    again = prepare_inputs(recipe, src, cache_dir=cache, progress=lines.append)
    assert again is not None and again.cached and again.sha256 == first.sha256
    assert any("from the cache" in ln for ln in lines) and not any("fetch|" in ln for ln in lines)
    assert len(index.requests) == asked

    # The build: no network, pip installs from /build/inputs only.
    runner = DockerRunner(work_dir=tmp_path / "work")
    spec = BuildSpec(
        image_id=image,
        command=recipe.command,
        limits=Limits(timeout_s=120, memory_mb=512, cpus=1, pids=256, out_mb=16),
        inputs_sha256=first.sha256,
    )
    r = runner.run(spec, src, cancel=threading.Event(), inputs_tar=first.path)
    try:
        assert r.status == "ok" and r.exit_code == 0, r.log_path.read_text()
        assert r.out_dir is not None
        assert (r.out_dir / "hello.txt").read_text() == "alpha+beta\n"
        assert (r.out_dir / "data.txt").read_text() == "pinned data\n"
    finally:
        r.cleanup()

    # A changed lockfile (here: one pin less) is a new key: the fetch runs again.
    (d / "requirements.txt").write_text(index.requirements().splitlines()[1] + "\n")
    pack_source(d, src)
    lines.clear()
    third = prepare_inputs(load_recipe(d), src, cache_dir=cache, progress=lines.append)
    assert third is not None and not third.cached and third.sha256 != first.sha256
    with tarfile.open(third.path) as t:
        assert sorted(m.name for m in t) == ["beta-1.0-py3-none-any.whl", "data.txt"]


def test_a_wrong_input_sha256_stops_before_the_fetch(tmp_path: Path, index: Index) -> None:
    wrong = "00" * 32
    d = project(tmp_path, index, data_sha=wrong)
    src = tmp_path / "src.tar"
    pack_source(d, src)
    lines: list[str] = []
    with pytest.raises(LocalError) as e:
        prepare_inputs(load_recipe(d), src, cache_dir=tmp_path / "cache", progress=lines.append)
    msg = str(e.value)
    assert f"{index.url}/files/data.txt" in msg and wrong in msg and index.hashes["data.txt"] in msg
    assert not any("fetch|" in ln for ln in lines)  # the fetch never ran
    assert not [p for p in (tmp_path / "cache" / "inputs").glob("*.tar")]


def test_a_failing_fetch_is_an_error_with_its_output(tmp_path: Path, index: Index) -> None:
    d = project(tmp_path, index)
    (d / "requirements.txt").write_text(
        index.requirements().replace(index.hashes["beta-1.0-py3-none-any.whl"], "1" * 64)
    )
    src = tmp_path / "src.tar"
    pack_source(d, src)
    with pytest.raises(LocalError, match=r"(?s)\[fetch\] command exited 1.*HASHES"):
        prepare_inputs(load_recipe(d), src, cache_dir=tmp_path / "cache", progress=lambda _: None)


def test_try_uses_the_pinned_inputs_and_the_cache(tmp_path: Path, index: Index) -> None:
    from click.testing import CliRunner

    from p2pci.cli.main import cli

    resolve_image(PIP_IMAGE)
    d = project(tmp_path, index)
    env = {"P2PCI_CACHE_DIR": str(tmp_path / "cache")}
    r = CliRunner().invoke(cli, ["try", str(d)], env=env)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("reproducible: digest ") and "(2 files, 2 runs)" in r.stdout
    assert "inputs: fetched in" in r.stderr and "shuffled" in r.stderr
    r2 = CliRunner().invoke(cli, ["try", str(d)], env=env)
    assert r2.exit_code == 0 and r2.stdout == r.stdout
    assert "inputs: from the cache" in r2.stderr and "fetch|" not in r2.stderr
    r3 = CliRunner().invoke(cli, ["try", str(d), "--refetch"], env=env)
    assert r3.exit_code == 0 and "inputs: fetched in" in r3.stderr


async def test_pip_fetched_inputs_reach_the_workers_of_a_mesh_and_the_job_reproduces(
    tmp_path: Path, index: Index
) -> None:
    """The whole path: `publish` runs `pip download --require-hashes` against the offline index in
    the fetch container, pins the packed result in the offer; two workers (in-process nodes, the
    real Docker runner, no network) fetch it by hash from the publisher and `pip install` from
    /build/inputs; they agree, and the fetched artifact is what alpha and beta print."""
    import json
    import uuid

    import trio
    from click.testing import CliRunner

    from p2pci.cli.main import cli
    from p2pci.config import WorkerSettings
    from p2pci.runner.dockerutil import client
    from p2pci.runner.inputs import file_sha256
    from p2pci.testing.cluster import open_cluster, with_timing

    image = resolve_image(PIP_IMAGE)  # FakeImages in the cluster: the recipe names the image by ID
    busybox = resolve_image("busybox")
    d = project(tmp_path, index)
    toml = d / "p2pci.toml"
    toml.write_text(toml.read_text().replace(f'image = "{PIP_IMAGE}"', f'image = "{image}"'))
    tag = uuid.uuid4().hex
    runners = [
        DockerRunner(work_dir=tmp_path / f"work{i}", holder_image=busybox, labels={"p2pci.test": tag})
        for i in range(2)
    ]
    env = {"P2PCI_CACHE_DIR": str(tmp_path / "cache")}
    timing = with_timing(lease_ms=30_000, commit_slack_ms=30_000, blob_timeout_ms=10_000)
    try:
        async with open_cluster(
            tmp_path / "mesh", 3, runners=[None, *runners], timing=timing, worker=WorkerSettings(slots=1)  # type: ignore[list-item]
        ) as c:
            home = c.nodes[0].paths.home

            def run(*args: str) -> Any:
                return CliRunner().invoke(cli, ["--home", str(home), *args], env=env)

            with trio.fail_after(120):  # about 15 s here
                r = await trio.to_thread.run_sync(  # abandoned on timeout: the cluster's end stops it
                    lambda: run("publish", str(d), "--replicas", "2", "--quorum", "2", "--wait", "--json"),
                    abandon_on_cancel=True,
                )
            assert r.exit_code == 0, r.output
            assert any(ln.startswith("  fetch| ") and "Saved" in ln for ln in r.stderr.splitlines()), r.stderr
            assert "/simple/alpha/" in index.requests and "/simple/beta/" in index.requests
            final = json.loads(r.stdout.strip().splitlines()[-1])
            assert final["verdict"] == "REPRODUCED", final
            (group,) = final["groups"]
            assert sorted(group["workers"]) == sorted(w.peer_id for w in c.nodes[1:])
            p = final["provenance"]
            sha = bytes.fromhex(p["inputs_sha256"])
            with tarfile.open(c.nodes[0].blobs.path(sha)) as t:
                assert sorted(m.name for m in t) == [
                    "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "data.txt"
                ]  # fmt: skip
            for w in c.nodes[1:]:  # every worker fetched the pinned tarball by hash and checked it
                assert file_sha256(w.blobs.path(sha)) == (sha, p["inputs_size"])
            out = tmp_path / "fetched"
            with trio.fail_after(60):
                f = await trio.to_thread.run_sync(
                    lambda: run("fetch", final["job"], "--out", str(out)), abandon_on_cancel=True
                )
            assert f.exit_code == 0, f.output
            assert (out / "hello.txt").read_text() == "alpha+beta\n"  # installed from /build/inputs
            assert (out / "data.txt").read_text() == "pinned data\n"
    finally:
        for runner in runners:
            runner.close()
    assert client().containers.list(all=True, filters={"label": f"p2pci.test={tag}"}) == []
