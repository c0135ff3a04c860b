"""p2pci.toml parsing: values, defaults, and errors that name the key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pci.core.errors import LocalError
from p2pci.recipe import DEFAULT_LIMITS, load_recipe, parse_duration, parse_recipe, parse_size_mb


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "p2pci.toml").write_text(text)
    return tmp_path


def test_full_recipe(tmp_path: Path) -> None:
    r = load_recipe(
        write(
            tmp_path,
            """
[project]
name = "hello"

[build]
image = "debian:bookworm+build-essential,python3"
command = ["make", "all"]
env = { CFLAGS = "-O2", A = "1" }
timeout = "90s"
outputs-dir = "/out"
source_date_epoch = 1700000000
memory = "512m"
cpus = 1
pids = 256
out = "2g"

[trust]
replicas = 5
quorum = 3
workers = "open"
""",
        )
    )
    assert r.project == "hello"
    assert r.image == "debian:bookworm+build-essential,python3"
    assert r.command == ("make", "all")
    assert r.env == (("A", "1"), ("CFLAGS", "-O2"))
    assert r.source_date_epoch == 1700000000
    assert (r.limits.timeout_s, r.limits.memory_mb, r.limits.cpus, r.limits.pids, r.limits.out_mb) == (
        90,
        512,
        1,
        256,
        2048,
    )
    assert (r.trust.replicas, r.trust.quorum, r.trust.workers, r.trust.require) == (5, 3, "open", None)
    assert r.trust.worker_keys() == "open"


def test_defaults_and_string_command(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, '[build]\nimage = "busybox"\ncommand = "echo hi > /out/x"\n'))
    assert r.command == ("sh", "-c", "echo hi > /out/x")
    assert r.limits == DEFAULT_LIMITS
    assert r.source_date_epoch is None
    assert r.project == tmp_path.name
    assert (r.trust.replicas, r.trust.quorum) == (3, 2)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[build]\nimage = "busybox"\ncommand = "true"\n\n\n\nimagee = "x"\n',
            "line 7: unknown key 'imagee' in [build]",
        ),
        ('[build]\nimage = "busybox"\ncommand = 3\n', "line 3: bad value for 'command'"),
        ('[build]\nimage = "ubuntu"\ncommand = "true"\n', "line 2: bad value for 'image'"),
        (
            '[build]\nimage = "busybox"\ncommand = "true"\noutputs-dir = "/output"\n',
            "line 4: bad value for 'outputs-dir'",
        ),
        (
            '[build]\nimage = "busybox"\ncommand = "true"\ntimeout = "ten"\n',
            "line 4: bad value for 'timeout'",
        ),
        ('[build]\nimage = "busybox"\ncommand = "true"\ncpus = true\n', "line 4: bad value for 'cpus'"),
        (
            '[build]\nimage = "busybox"\ncommand = "true"\nenv = {HOME = "/x"}\n',
            "line 4: bad value for 'env'",
        ),
        (
            '[build]\nimage = "busybox"\ncommand = "true"\n[trust]\nreplicas = 2\nquorum = 3\n',
            "line 6: quorum (3)",
        ),
        (
            '[build]\nimage = "busybox"\ncommand = "true"\n[trust]\nworkers = ["nope"]\n',
            "line 5: bad value for 'workers'",
        ),
        (
            '[build]\nimage = "busybox"\ncommand = "true"\n[trust]\nfoo = 1\n',
            "line 5: unknown key 'foo' in [trust]",
        ),
        ('[build]\nimage = "busybox"\n', "missing key 'command'"),
        ('[biuld]\nimage = "busybox"\n', "unknown table or key 'biuld'"),
        ("[build\n", "p2pci.toml"),
    ],
)
def test_errors_name_key_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(LocalError) as e:
        parse_recipe(text, tmp_path)
    assert fragment in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="no p2pci.toml"):
        load_recipe(tmp_path)


def test_units() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration(45) == 45
    assert parse_duration("2h") == 7200
    assert parse_duration("7d") == 604800
    assert parse_size_mb("1g") == 1024
    assert parse_size_mb("512MiB") == 512
    assert parse_size_mb(64) == 64
    for bad in ("0s", "-1", "1.5m", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_peer_ids_become_keys(tmp_path: Path) -> None:
    from p2pci.core.signing import NodeKey

    a, b = NodeKey.generate(), NodeKey.generate()
    r = parse_recipe(
        f'[build]\nimage = "busybox"\ncommand = "true"\n[trust]\nreplicas = 1\nquorum = 1\n'
        f'workers = ["{a.peer_id}"]\nrequire = {{keys = ["{a.peer_id}", "{b.peer_id}"], min = 1}}\n',
        tmp_path,
    )
    assert r.trust.worker_keys() == (a.public,)
    assert r.trust.require is not None and r.trust.require.key_bytes() == (a.public, b.public)
    with pytest.raises(LocalError, match="line 7: require.min is larger"):
        parse_recipe(
            '[build]\nimage = "busybox"\ncommand = "true"\n[trust]\nreplicas = 1\nquorum = 1\n'
            f'require = {{keys = ["{a.peer_id}"], min = 2}}\n',
            tmp_path,
        )


def test_examples_parse() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    for d in sorted(p.parent for p in examples.glob("*/p2pci.toml")):
        r = load_recipe(d)
        assert r.command and r.image


FETCH = """[build]
image = "debian:bookworm+python3"
command = "true"

[fetch]
command = "pip download -r requirements.txt -d /inputs"
image = "debian:bookworm+python3-pip"
env = { PIP_INDEX_URL = "http://127.0.0.1:1/simple" }
timeout = "2m"
lockfiles = ["requirements.txt", "sub/extra.txt"]

[[input]]
url = "https://example.org/a/data%20set.tar.gz"
sha256 = "{a}"

[[input]]
url = "http://example.org/b"
sha256 = "sha256:{b}"
name = "b.bin"
"""


def test_fetch_and_pinned_inputs(tmp_path: Path) -> None:
    r = parse_recipe(FETCH.replace("{a}", "ab" * 32).replace("{b}", "CD" * 32), tmp_path)
    assert r.fetch is not None and r.has_inputs
    assert r.fetch.command == ("sh", "-c", "pip download -r requirements.txt -d /inputs")
    assert r.fetch.image == "debian:bookworm+python3-pip"
    assert r.fetch.env == (("PIP_INDEX_URL", "http://127.0.0.1:1/simple"),)
    assert r.fetch.timeout_s == 120
    assert r.fetch.lockfiles == ("requirements.txt", "sub/extra.txt")
    assert [(i.url, i.sha256, i.name) for i in r.inputs] == [
        ("https://example.org/a/data%20set.tar.gz", b"\xab" * 32, "data set.tar.gz"),
        ("http://example.org/b", b"\xcd" * 32, "b.bin"),
    ]
    plain = parse_recipe('[build]\nimage = "busybox"\ncommand = "true"\n', tmp_path)
    assert plain.fetch is None and plain.inputs == () and not plain.has_inputs
    only_fetch = parse_recipe(
        '[build]\nimage = "busybox"\ncommand = "true"\n[fetch]\ncommand = ["true"]\n', tmp_path
    )
    assert (
        only_fetch.fetch is not None and only_fetch.fetch.image is None and only_fetch.fetch.lockfiles is None
    )


BUILD = '[build]\nimage = "busybox"\ncommand = "true"\n'
GOOD = "ab" * 32


@pytest.mark.parametrize(
    "extra,fragment",
    [
        ('[fetch]\nimage = "busybox"\n', "line 4: missing key 'command' in [fetch]"),
        ('[fetch]\ncommand = "x"\nnetwork = true\n', "line 6: unknown key 'network' in [fetch]"),
        ('[fetch]\ncommand = "x"\nimage = "ubuntu"\n', "line 6: bad value for 'image' in [fetch]"),
        ('[fetch]\ncommand = "x"\nlockfiles = ["../etc/passwd"]\n', "line 6: bad value for 'lockfiles'"),
        ('[fetch]\ncommand = "x"\nenv = { HOME = "/" }\n', "line 6: bad value for 'env' in [fetch]"),
        (
            f'[[input]]\nurl = "https://e.org/a"\nsha256 = "{GOOD}"\n[[input]]\nurl = "https://e.org/b"\nsha256 = "abc"\n',
            "line 9: bad value for 'sha256' in [[input]] #2: expected 64 hex digits",
        ),
        (
            f'[[input]]\nurl = "ftp://e.org/a"\nsha256 = "{GOOD}"\n',
            "line 5: bad value for 'url' in [[input]] #1",
        ),
        ('[[input]]\nurl = "https://e.org/a"\n', "line 4: missing key 'sha256' in [[input]] #1"),
        (
            f'[[input]]\nurl = "https://e.org/a"\nsha256 = "{GOOD}"\nmirror = "x"\n',
            "line 7: unknown key 'mirror' in [[input]] #1",
        ),
        (
            f'[[input]]\nurl = "https://e.org/"\nsha256 = "{GOOD}"\n',
            "line 5: [[input]] #1: cannot name the file",
        ),
        (
            f'[[input]]\nurl = "https://e.org/a"\nsha256 = "{GOOD}"\nname = "../x"\n',
            "line 7: bad value for 'name' in [[input]] #1",
        ),
        (
            f'[[input]]\nurl = "https://e.org/x/a"\nsha256 = "{GOOD}"\n[[input]]\nurl = "https://e.org/y/a"\nsha256 = "{GOOD}"\n',
            "line 8: [[input]] #2: a second input named 'a'",
        ),
    ],
)
def test_fetch_and_input_errors_name_key_and_line(tmp_path: Path, extra: str, fragment: str) -> None:
    with pytest.raises(LocalError) as e:
        parse_recipe(BUILD + extra, tmp_path)
    assert fragment in str(e.value)
    with pytest.raises(LocalError, match="line 1: 'input' must be an array of tables"):
        parse_recipe("input = 3\n" + BUILD, tmp_path)
