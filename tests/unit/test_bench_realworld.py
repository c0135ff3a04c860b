"""bench/realworld.py without the network: its cases parse, its table renders, reasons are found."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.realworld import BEGIN, CASES, END, MESH_WORKERS, MeshResult, Row, _reason, render
from p2pci.recipe import parse_recipe


def test_every_case_is_a_valid_project_with_pinned_inputs(tmp_path: Path) -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 8
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


def test_mesh_column_and_hostile_text_stay_in_their_cells() -> None:
    case = next(c for c in CASES if c.mesh)
    ok = Row(case, verdict="reproducible", seconds=10, out_bytes=1000, out_files=1)
    ok.mesh = MeshResult("REPRODUCED", 61.4, agreeing=MESH_WORKERS, groups=1, out_bytes=1000, out_files=1)
    bad = Row(case, verdict="error (exit 2)", notes=["a | b `c`\nd"])
    bad.mesh = MeshResult("DISPUTED", 90, agreeing=2, groups=3)
    bad.fixed_mesh = MeshResult("error", 5, note="publish exited 2: x|y")
    docs = dataclasses.replace(CASES[-1], mesh=False, mesh_note="not run: too big")
    skipped = Row(docs, verdict="reproducible", seconds=1, out_bytes=5, out_files=1200)
    lines = render([ok, bad, skipped]).splitlines()
    assert all(ln.count("|") == 9 for ln in lines[3:-1])  # header, rule and 3 rows: 8 columns each
    assert lines[5].endswith(
        f"| REPRODUCED ({MESH_WORKERS}/{MESH_WORKERS} agree), 61 s, fetched 1.0 kB in 1 file |"
    )
    assert (
        f"DISPUTED (2/{MESH_WORKERS} agree, 3 groups), 90 s; after the fix: error (publish exited 2: x/y)"
        in lines[6]
    )
    assert "(a / b 'c' d)" in lines[6]
    assert lines[7].endswith(f"| {docs.mesh_note} |") and "1200 files" in lines[7]
