"""What the docs tell a new user, checked against the code (issue 16, "The docs fixed"): the tour's
commands parse, its PATH sentence and its clean-up step are right, every config sample is what
config.toml accepts, the observer quorum can be set where the docs say, and limits are refused,
not capped."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from p2pci.cli.main import cli
from p2pci.config import load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def tour() -> str:
    return README[README.index("## A 5-minute tour") : README.index("## Documentation")]


def tour_commands() -> list[list[str]]:
    """Every `p2pci …` command of the tour's code blocks, comments dropped, `&&` split."""
    out = []
    for block in shell_blocks(tour()):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part.replace("<job prefix>", "abcd1234").replace("<job>", "abcd1234"))
                if words and words[0] == "p2pci":
                    out.append(words[1:])
    return out


def parse(args: list[str]) -> None:
    """Parse `p2pci ARGS` down to the subcommand's options, running nothing."""
    ctx = cli.make_context("p2pci", list(args), resilient_parsing=False)
    cmd: click.Command = cli
    rest = ctx.protected_args + ctx.args
    while isinstance(cmd, click.Group) and rest:
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None, args
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd, rest = sub, ctx.protected_args + ctx.args if isinstance(sub, click.Group) else []


def test_every_tour_command_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the tour runs from the checkout
    (tmp_path / "job.p2pci").write_bytes(b"")  # written by the tour's `export`
    monkeypatch.chdir(tmp_path)
    cmds = tour_commands()
    assert len(cmds) >= 14
    for args in cmds:
        parse(args)
    with pytest.raises(click.UsageError):  # the parser used here does refuse a bad option
        parse(["--home", "/tmp/x", "jobs", "--no-such-option"])


def test_readme_path_sentence_puts_the_venv_first() -> None:
    """The tour's `p2pci` is `.venv/bin/p2pci` (the console script of pyproject.toml, in the venv
    `make venv` makes), and the PATH line prepends that directory."""
    assert 'p2pci = "p2pci.cli.main:main"' in (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^VENV\s*\?*=\s*\.venv$", (ROOT / "Makefile").read_text(), re.M)
    text = " ".join(tour().split())
    assert "after `make venv` it is `.venv/bin/p2pci`" in text
    assert "(`export PATH=$PWD/.venv/bin:$PATH`)" in text


def test_tour_says_how_to_stop_and_removes_every_home_it_made() -> None:
    text = tour()
    homes = set(re.findall(r"--home (/tmp/\w+)", text))
    assert homes >= {"/tmp/boot", "/tmp/w1", "/tmp/w2"}
    step = " ".join(text[text.index("Stop and clean up") :].split())
    rm = re.search(r"`rm -rf ([^`]+)`", step)
    assert rm is not None and set(rm.group(1).split()) == homes
    # Ctrl-C stops at once; SIGTERM drains first (p2pci.daemon.run), as the tour says
    assert "Ctrl-C" in step and "SIGTERM" in step and "drain" in step


def test_every_config_and_recipe_sample_in_the_docs_is_accepted(tmp_path: Path) -> None:
    """Each ```toml block of docs/ is a config.toml (loaded: an unknown key, one config.toml cannot
    set, is an error) or a p2pci.toml (parsed, placeholders filled in)."""
    from p2pci.recipe import parse_recipe

    samples = [b for text in DOCS.values() for b in re.findall(r"```toml\n(.*?)```", text, re.S)]
    configs = [b for b in samples if "[project]" not in b and "[build]" not in b]
    recipes = [b for b in samples if b not in configs]
    assert len(configs) >= 2 and recipes
    for i, sample in enumerate(configs):
        path = tmp_path / f"config{i}.toml"
        path.write_text(sample)
        load_config(path)  # raises (naming the file and the line) on any key config.toml cannot set
    for sample in recipes:
        parse_recipe(re.sub(r'"([0-9a-f]{4})…"', lambda m: '"' + m.group(1).ljust(64, "0") + '"', sample), tmp_path)


def test_the_observer_quorum_is_set_where_the_docs_say(tmp_path: Path) -> None:
    """protocol.md's observer quorum ("only raises N"): config.toml has no key for it (the sample
    test above would refuse one), `p2pci verify --quorum N` sets it, and it only raises N."""
    from p2pci.core.evidence import export_bundle

    from .jobgen import JobSim, key, make_offer

    assert "`p2pci verify --quorum N`" in " ".join(DOCS["protocol.md"].split())
    sim = JobSim(make_offer(key("publisher"), replicas=2, quorum=2))
    sim.honest_round([(key("a"), b"good", 0), (key("b"), b"good", 0)])
    bundle = tmp_path / "job.p2pci"
    bundle.write_bytes(export_bundle(sim.view()))

    def verify(*extra: str) -> int:
        return CliRunner().invoke(cli, ["verify", str(bundle), "--now", "1500000", *extra]).exit_code

    assert verify() == 0 and verify("--quorum", "1") == 0 and verify("--quorum", "2") == 0
    assert verify("--quorum", "3") == 1  # two agreeing votes are not enough for this observer
    assert verify("--quorum", "0") == 2  # a usage error


def test_limits_are_said_to_be_refused_not_capped() -> None:
    """A worker refuses (declines, reason `policy`) an offer over its caps; no doc says the offer's
    limits are capped by the worker's policy (tests/integration/test_declines.py shows the refusal)."""
    for name, text in DOCS.items():
        flat = " ".join(text.split())
        assert "capped by the worker" not in flat and "capped by the worker's own" not in flat, name
    assert "refused, not capped" in " ".join(DOCS["operator.md"].split())


def test_a_no_build_node_is_said_to_need_docker_to_publish() -> None:
    flat = " ".join(DOCS["operator.md"].split())
    assert "Running it needs no Docker; *publishing* from it does" in flat
    assert "`mmdebstrap` and a Debian mirror" in flat
