"""bench/realworld.py without the network: its cases parse, its table renders, reasons are found."""

from __future__ import annotations

from pathlib import Path

from bench.realworld import BEGIN, CASES, END, Row, _reason, render
from p2pci.recipe import parse_recipe


def test_every_case_is_a_valid_project_with_pinned_inputs(tmp_path: Path) -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 4
    for c in CASES:
        r = parse_recipe(c.files["p2pci.toml"], tmp_path)
        assert r.has_inputs, c.name
        assert "build.sh" in c.files


def test_table_and_reason() -> None:
    out = (
        "not reproducible: 2 different digests in 2 runs\n"
        "differs: pkg.whl\n"
        "│ │ │ -  GNU  0x14 NT_GNU_BUILD_ID Build ID: 4fd7\n"
        "│ │ │ -  0\t(line_strp)\t(offset: 0): /tmp/pip-req-build-qovpvsfc\n"
        "│ │ │ +  0\t(line_strp)\t(offset: 0): /tmp/pip-req-build-8yn_psk1\n"
    )
    reason = _reason(out)
    assert (
        reason == "differs: `pkg.whl`; diffoscope: `0 (line_strp) (offset: 0): /tmp/pip-req-build-qovpvsfc`"
    )
    ok = Row(CASES[0], verdict="reproducible", seconds=12.4, out_bytes=65_000, out_files=2)
    bad = Row(CASES[1], verdict="NOT reproducible", seconds=30, out_bytes=26_600, out_files=1, reason=reason)
    bad.fixed_verdict = "reproducible"
    table = render([ok, bad])
    lines = table.splitlines()
    assert lines[0] == BEGIN and lines[-1] == END
    assert lines[3].count("|") == lines[5].count("|") == lines[6].count("|") == 9
    assert "| reproducible | 12 s | 65.0 kB, 2 files | – | – | not run |" in lines[5]
    assert "→ reproducible" in lines[6] and "pip-req-build" in lines[6]
