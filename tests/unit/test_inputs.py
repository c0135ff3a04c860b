"""Pinned inputs, runner side without Docker: packing, reordering, the hash check."""

from __future__ import annotations

import os
import tarfile
import threading
from pathlib import Path

import pytest
import trio

from p2pci.core.errors import BuildError
from p2pci.runner.base import BuildResult, BuildSpec, run_build
from p2pci.runner.inputs import file_sha256, pack_dir, reorder, unpack_inputs
from p2pci.testing.runners import FakeRunner

SPEC = BuildSpec(image_id="sha256:" + "0" * 64, command=("true",))


def tree(root: Path, names: list[str]) -> Path:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(n)
    (root / "link").symlink_to("a")
    return root


def test_pack_dir_is_a_function_of_the_tree(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", ["a", "b/c", "b/d", "e"])
    b = tree(tmp_path / "b", ["e", "b/d", "a", "b/c"])  # created in another order
    os.utime(b / "a", (1, 1))
    sa, size, files = pack_dir(a, tmp_path / "a.tar")
    sb, _, _ = pack_dir(b, tmp_path / "b.tar")
    assert sa == sb and files == 4 and size == (tmp_path / "a.tar").stat().st_size
    assert file_sha256(tmp_path / "a.tar") == (sa, size)
    (b / "b" / "d").write_text("other")
    assert pack_dir(b, tmp_path / "b.tar")[0] != sa
    with tarfile.open(tmp_path / "a.tar") as t:
        assert [m.name for m in t] == ["a", "b", "b/c", "b/d", "e", "link"]
        assert {m.mtime for m in t} == {0} and {m.uid for m in t} == {0}


def test_reorder_keeps_the_content(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", [f"d/f{i}" for i in range(20)])
    sha, _, _ = pack_dir(a, tmp_path / "a.tar")
    rsha, _ = reorder(tmp_path / "a.tar", tmp_path / "r.tar", 3)
    assert rsha != sha
    with tarfile.open(tmp_path / "a.tar") as x, tarfile.open(tmp_path / "r.tar") as y:
        names_x, names_y = [m.name for m in x], [m.name for m in y]
    assert sorted(names_x) == sorted(names_y) and names_x != names_y
    spec = BuildSpec(image_id=SPEC.image_id, command=SPEC.command, inputs_sha256=rsha)
    out = unpack_inputs(spec, tmp_path / "r.tar", tmp_path / "u")
    assert out is not None and (out / "d" / "f7").read_text() == "d/f7"


def test_unpack_refuses_another_hash_before_unpacking(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", ["x"])
    sha, _, _ = pack_dir(a, tmp_path / "a.tar")
    wrong = bytes(32)
    spec = BuildSpec(image_id=SPEC.image_id, command=SPEC.command, inputs_sha256=wrong)
    with pytest.raises(BuildError) as e:
        unpack_inputs(spec, tmp_path / "a.tar", tmp_path / "u")
    assert sha.hex() in str(e.value) and wrong.hex() in str(e.value)
    assert not (tmp_path / "u").exists()
    assert unpack_inputs(SPEC, None, tmp_path / "u") is None


def test_fake_runner_and_run_build_pass_inputs_on(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", ["x"])
    sha, _, _ = pack_dir(a, tmp_path / "a.tar")
    src = tmp_path / "src.tar"
    src.write_bytes(b"")
    spec = BuildSpec(image_id=SPEC.image_id, command=SPEC.command, inputs_sha256=sha)
    fake = FakeRunner(work_dir=tmp_path / "w")

    async def main() -> BuildResult:
        return await run_build(fake, spec, src, inputs_tar=tmp_path / "a.tar")

    r = trio.run(main)
    assert r.status == "ok"
    r.cleanup()
    with pytest.raises(BuildError, match="none were given"):
        fake.run(spec, src, cancel=threading.Event())

    class OldRunner:  # a runner written before inputs existed
        def run(self, spec: BuildSpec, source_tar: Path, *, cancel: threading.Event) -> BuildResult:
            raise AssertionError("must not be called")

    async def old() -> BuildResult:
        return await run_build(OldRunner(), spec, src, inputs_tar=tmp_path / "a.tar")  # type: ignore[arg-type]

    with pytest.raises(BuildError, match="cannot mount pinned inputs"):
        trio.run(old)


def test_the_cache_key_follows_recipe_image_and_lockfiles(tmp_path: Path) -> None:
    from p2pci.recipe import parse_recipe
    from p2pci.runner.fetch import inputs_key, lockfile_hashes
    from p2pci.runner.source import pack_source

    base = '[build]\nimage = "busybox"\ncommand = "true"\n[fetch]\ncommand = "pip download -r requirements.txt -d /inputs"\n'
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "requirements.txt").write_text("a==1\n")
    (proj / "main.py").write_text("print(1)\n")

    def key(text: str = base, image: str = "sha256:" + "1" * 64) -> bytes:
        (proj / "p2pci.toml").write_text(text)
        pack_source(proj, tmp_path / "s.tar")
        r = parse_recipe(text, proj)
        return inputs_key(r, image, lockfile_hashes(r, tmp_path / "s.tar"))

    k = key()
    (proj / "main.py").write_text("print(2)\n")  # not a lockfile: same key
    assert key() == k
    assert key(base.replace("/inputs", "/inputs --no-deps")) != k
    assert key(base + 'env = { A = "1" }\n') != k
    assert key(image="sha256:" + "2" * 64) != k
    assert key(base + '[[input]]\nurl = "https://e.org/x"\nsha256 = "' + "ab" * 32 + '"\n') != k
    (proj / "requirements.txt").write_text("a==2\n")
    k2 = key()
    assert k2 != k
    (proj / "package-lock.json").write_text("{}")  # another well-known lockfile appears
    assert key() != k2
    explicit = base + 'lockfiles = ["requirements.txt"]\n'
    e1 = key(explicit)
    (proj / "package-lock.json").write_text('{"x": 1}')  # not named: ignored
    assert key(explicit) == e1
    from p2pci.core.errors import LocalError

    with pytest.raises(LocalError, match="lockfiles: missing.txt not in the source"):
        key(base + 'lockfiles = ["missing.txt"]\n')


def test_fetch_env_has_the_ca_bundle_the_proxies_and_the_recipe_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from p2pci.recipe import FetchStep
    from p2pci.runner import fetch

    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    env = fetch.fetch_env(FetchStep(command=("true",), env=(("PIP_INDEX_URL", "http://x/simple"),)))
    assert env["https_proxy"] == "http://proxy:3128" and "HTTP_PROXY" not in env
    assert env["PIP_INDEX_URL"] == "http://x/simple" and env["HOME"] == "/tmp"
    if Path(fetch.CA_BUNDLE).is_file():
        assert all(env[k] == fetch.CA_BUNDLE for k in ("SSL_CERT_FILE", "PIP_CERT", "NODE_EXTRA_CA_CERTS"))


def test_the_fetch_runs_in_its_own_image_else_in_the_build_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from p2pci.recipe import parse_recipe
    from p2pci.runner import fetch
    from p2pci.runner.source import pack_source

    ids = {"busybox": "sha256:" + "1" * 64, "debian:bookworm+python3-pip": "sha256:" + "2" * 64}
    ran: list[str] = []

    def run_fetch(step: object, image_id: str, src: Path, out: Path, *, progress: object) -> None:
        ran.append(image_id)
        (out / "dep.txt").write_text("pinned\n")

    monkeypatch.setattr(fetch, "run_fetch", run_fetch)
    proj = tmp_path / "p"
    proj.mkdir()
    base = '[build]\nimage = "busybox"\ncommand = "true"\n[fetch]\ncommand = "true"\n'
    for text in (base, base + 'image = "debian:bookworm+python3-pip"\n'):
        (proj / "p2pci.toml").write_text(text)
        pack_source(proj, tmp_path / "s.tar")
        got = fetch.prepare_inputs(
            parse_recipe(text, proj), tmp_path / "s.tar", cache_dir=tmp_path / "cache",
            resolve=lambda name, progress: ids[name], progress=lambda _: None,
        )  # fmt: skip
        assert got is not None and not got.cached and got.files == 1  # another image: another key
    assert ran == [ids["busybox"], ids["debian:bookworm+python3-pip"]]
