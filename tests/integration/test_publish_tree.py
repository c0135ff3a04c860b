"""`publish` builds the tree it reads p2pci.toml from: HEAD, or the working tree with --dirty.

In-process nodes (memory network, scripted runner whose artifact names the SHA-256 of the
source tar it got) behind the real control socket: the artifact shows which bytes were built.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio
from click.testing import CliRunner

from p2pci.cli.main import cli
from p2pci.testing.cluster import ScriptedRunner, open_cluster
from tests.integration.test_daemon_cli import hello_recipe, run_cli
from tests.unit.test_source_tree import git

RECIPE = hello_recipe("tree").replace(
    "timeout = 5\n", 'timeout = 5\nenv = { LC_ALL = "C", LANGUAGE = "en" }\nsource_date_epoch = 1700000000\n'
)  # env and SOURCE_DATE_EPOCH are part of what a verdict is about: show and verify print them


def source_hash(proj: Path, *args: str) -> str:
    r = CliRunner().invoke(cli, ["source-hash", str(proj), *args])
    assert r.exit_code == 0, r.output
    return r.stdout.split()[0]


async def test_publish_builds_head_or_with_dirty_the_working_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    proj = repo / "proj"
    proj.mkdir(parents=True)
    git(repo, "init", "-q")
    (proj / "p2pci.toml").write_text(RECIPE)
    (proj / "hello.txt").write_text("committed\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    clean = source_hash(proj)

    async with open_cluster(tmp_path / "mesh", 3, runners=[None, ScriptedRunner(), ScriptedRunner()]) as c:
        home = c.nodes[0].paths.home

        async def publish_and_fetch(*extra: str) -> tuple[str, str]:
            with trio.fail_after(30):
                r = await run_cli(home, "publish", str(proj), "--wait", "--json", *extra)
            assert r.exit_code == 0, r.output
            job = json.loads(r.stdout.strip().splitlines()[-1])["job"]
            out = tmp_path / f"out-{job[:8]}"
            with trio.fail_after(30):
                f = await run_cli(home, "fetch", job, "--out", str(out))
            assert f.exit_code == 0, f.output
            return (out / "artifact.txt").read_text(), r.stderr

        artifact, err = await publish_and_fetch()
        assert f"built {clean} " in artifact
        assert f"source sha256 {clean}" in err and "git commit" in err

        (proj / "hello.txt").write_text("uncommitted\n")
        (proj / "p2pci.toml").write_text(RECIPE.replace('name = "tree"', 'name = "tree-dirty"'))
        r = await run_cli(home, "publish", str(proj), "--wait")
        assert r.exit_code == 2 and "uncommitted changes" in r.stderr and "--dirty" in r.stderr
        assert len(c.nodes[0].board.jobs()) == 1  # nothing offered

        dirty = source_hash(proj, "--dirty")
        assert dirty != clean
        artifact, err = await publish_and_fetch("--dirty")
        assert f"built {dirty} " in artifact and "working tree" in err
        r = await run_cli(home, "jobs", "--json")
        jobs = {j["project"]: j for j in json.loads(r.stdout)}
        assert sorted(jobs) == ["tree", "tree-dirty"]  # its recipe too
        # provenance: the signed offer names the commit and tree built, and the image's recipe
        head = git(repo, "rev-parse", "HEAD").strip()
        tree = git(repo, "rev-parse", "HEAD:proj").strip()
        p = jobs["tree"]["provenance"]
        assert (p["source_sha256"], p["commit"], p["image_recipe"]) == (clean, head, "busybox")
        assert p["tree"] == tree and p["inputs_sha256"] is None
        assert p["command"] == ["sh", "-c", "cp /build/src/hello.txt /out/"]
        assert (p["env"], p["source_date_epoch"]) == ({"LANGUAGE": "en", "LC_ALL": "C"}, 1700000000)
        d = jobs["tree-dirty"]["provenance"]
        assert (d["source_sha256"], d["commit"], d["tree"]) == (dirty, None, None)  # no false claim
        # show, and verify of the exported bundle (the signed offer carries it), say the same
        job = jobs["tree"]["job"]
        shown = await run_cli(home, "show", job)
        assert shown.exit_code == 0, shown.output
        shown_json = await run_cli(home, "show", job, "--json")
        assert json.loads(shown_json.stdout)["provenance"] == p
        bundle = tmp_path / "job.bundle"
        ex = await run_cli(home, "export", job, "-o", str(bundle))
        assert ex.exit_code == 0, ex.output
        verified = CliRunner().invoke(cli, ["verify", str(bundle)])
        vj = CliRunner().invoke(cli, ["verify", str(bundle), "--json"])
        assert json.loads(vj.stdout)["provenance"] == p
        for out in (shown.stdout, verified.stdout):
            assert f"source   sha256 {clean}" in out
            assert f"git      commit {head}  tree {tree}" in out
            assert "(recipe busybox)" in out and "command  sh -c 'cp /build/src/hello.txt /out/'" in out
            assert "env      LANGUAGE=en LC_ALL=C" in out and "SOURCE_DATE_EPOCH 1700000000" in out
            assert "inputs   none" in out


async def test_publish_stops_on_a_wrong_input_sha256_before_offering(tmp_path: Path) -> None:
    from tests.integration.pypi_fixture import serve_index

    index = serve_index(tmp_path / "index")
    try:
        proj = tmp_path / "proj"
        proj.mkdir()
        wrong = "ab" * 32
        (proj / "p2pci.toml").write_text(
            RECIPE + f'\n[[input]]\nurl = "{index.url}/files/data.txt"\nsha256 = "{wrong}"\n'
        )
        (proj / "hello.txt").write_text("hello\n")
        async with open_cluster(
            tmp_path / "mesh", 3, runners=[None, ScriptedRunner(), ScriptedRunner()]
        ) as c:
            home = c.nodes[0].paths.home
            env = {"P2PCI_CACHE_DIR": str(tmp_path / "cache")}

            def go() -> object:
                return CliRunner().invoke(cli, ["--home", str(home), "publish", str(proj), "--wait"], env=env)

            with trio.fail_after(30):
                r = await trio.to_thread.run_sync(go)
            assert r.exit_code == 2  # type: ignore[attr-defined]
            err = r.stderr  # type: ignore[attr-defined]
            assert f"{index.url}/files/data.txt" in err and wrong in err and index.hashes["data.txt"] in err
            assert "nothing was offered" in err
            assert c.nodes[0].board.jobs() == []
    finally:
        index.close()


async def test_publish_pins_the_inputs_in_the_offer_and_workers_get_them(tmp_path: Path) -> None:
    """The CLI sends the inputs it packed; the node pins them; every worker's build is handed the
    tarball of that hash (FakeRunner checks it as the Docker runner does)."""
    from p2pci.runner.inputs import file_sha256
    from p2pci.testing.runners import FakeRunner
    from tests.integration.pypi_fixture import serve_index

    index = serve_index(tmp_path / "index")
    try:
        proj = tmp_path / "proj"
        proj.mkdir()
        good = index.hashes["data.txt"]
        (proj / "p2pci.toml").write_text(RECIPE + f'\n[[input]]\nurl = "{index.url}/files/data.txt"\nsha256 = "{good}"\n')
        (proj / "hello.txt").write_text("hello\n")
        runners = [FakeRunner(work_dir=tmp_path / "w1"), FakeRunner(work_dir=tmp_path / "w2")]
        async with open_cluster(tmp_path / "mesh", 3, runners=[None, *runners]) as c:  # type: ignore[list-item]
            home = c.nodes[0].paths.home
            env = {"P2PCI_CACHE_DIR": str(tmp_path / "cache")}

            def go() -> object:
                return CliRunner().invoke(cli, ["--home", str(home), "publish", str(proj), "--wait", "--json"], env=env)

            with trio.fail_after(60):
                r = await trio.to_thread.run_sync(go)
            assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
            final = json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[attr-defined]
            p = final["provenance"]
            assert final["verdict"] == "REPRODUCED" and p["inputs_sha256"] is not None
            sha = bytes.fromhex(p["inputs_sha256"])
            assert file_sha256(c.nodes[0].blobs.path(sha)) == (sha, p["inputs_size"])
            for w, runner in zip(c.nodes[1:], runners, strict=True):
                assert [s.inputs_sha256 for s in runner.calls] == [sha]  # pinned in the spec it ran
                assert w.blobs.size(sha) == p["inputs_size"]  # fetched by hash
            err = r.stderr  # type: ignore[attr-defined]
            assert "inputs: downloading" in err and "from the cache" not in err

            # Again, unchanged: publish says the cache was used, downloads nothing, pins the same hash
            asked = len(index.requests)
            with trio.fail_after(60):
                r = await trio.to_thread.run_sync(go)
            assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
            err = r.stderr  # type: ignore[attr-defined]
            assert f"inputs: from the cache (the fetch recipe, its image and the lockfiles are unchanged): sha256 {sha.hex()}" in err
            assert "inputs: downloading" not in err and len(index.requests) == asked
            again = json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[attr-defined]
            assert again["job"] != final["job"] and again["provenance"]["inputs_sha256"] == sha.hex()
    finally:
        index.close()
