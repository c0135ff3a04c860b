"""The benchmark simulator drives the real core: at 100 nodes every job converges."""

import pytest

from bench.sim import SimParams, simulate


def test_simulated_jobs_reach_the_same_verdict_everywhere() -> None:
    r = simulate(SimParams(nodes=100, jobs=2, seed=3))
    assert r["converged"] == 1.0
    assert r["all_hold_fraction"] == 1.0
    # every fact is forwarded once per link, minus the link it came in on
    assert r["msgs_per_job_per_node"] <= r["facts_per_job"] * r["mean_degree"]
    assert r["builds_per_job"] >= 3


def test_total_loss_gives_no_verdict() -> None:
    r = simulate(SimParams(nodes=30, jobs=1, loss=1.0, sync_s=1e6, horizon_ms=20_000, seed=4))
    assert r["converged"] < 1.0


def test_sybil_simulation_matches_the_hypergeometric_expectation() -> None:
    import random

    from bench.sybil import hypergeom_tail, simulate

    r = simulate(3, 2, 0.5, 400, False, random.Random(5))
    exp = hypergeom_tail(20, 10, 3, 2)
    assert abs(r["REPRODUCED_false"] - exp) < 0.08 and r["expected_false_reproduced"] == exp
    assert r["REPRODUCED_false"] + r["REPRODUCED_true"] == 1.0
    req = simulate(3, 2, 0.5, 200, True, random.Random(5))
    assert req["REPRODUCED_false"] == 0.0 and req["EXPIRED"] > 0.0


def test_the_machine_simulation_decides_the_same_with_shared_tallies() -> None:
    # bench.sybil_machine shares one tally / selection per board content between the machines of
    # a job (SharedTally): every job must end as it does when each machine tallies its own board,
    # including jobs that expire (the memo key holds `now >= deadline`) and false REPRODUCED ones
    from bench.sybil_machine import check_shared

    states = {(state, false) for state, false, _ in check_shared(7, 4, 0.6, True, 10, seed=3)}
    assert ("EXPIRED", False) in states and ("REPRODUCED", False) in states
    states = {(state, false) for state, false, _ in check_shared(3, 2, 0.5, False, 8, seed=3)}
    assert ("REPRODUCED", True) in states and ("REPRODUCED", False) in states


def test_the_machine_table_resumes_and_extends_by_chunk(tmp_path: object, monkeypatch: object) -> None:
    import json
    from pathlib import Path

    import bench.sybil_machine as sm

    assert isinstance(tmp_path, Path)
    mp = monkeypatch
    mp.setattr(sm, "CHUNK", 2)  # type: ignore[attr-defined]
    mp.setattr(sm, "cells", lambda: [(3, 2, 0.5, False), (3, 2, 0.5, True)])  # type: ignore[attr-defined]
    out = str(tmp_path / "t.jsonl")
    sm.run_table(4, out)
    lines = Path(out).read_text().splitlines()
    assert len(lines) == 4  # 2 cells x 2 chunks
    sm.run_table(4, out)  # nothing left to do
    assert Path(out).read_text().splitlines() == lines
    with open(out, "a") as f:
        f.write(lines[-1][:20])  # a line cut by a kill
    sm.run_table(5, out)  # one more (short) chunk per cell
    assert len(Path(out).read_text().splitlines()) == 6
    rows = sm.summarize(out)
    assert [r["jobs"] for r in rows] == [5, 5]
    assert [r["jobs"] for r in sm.summarize(out, jobs=4)] == [4, 4]
    # a chunk is its own random stream: run again, the same counts
    first = json.loads(lines[0])
    again = sm.run_chunk(3, 2, 0.5, False, first["chunk"], first["jobs"])
    assert again["counts"] == first["counts"]
    table = sm.markdown(rows)
    assert "| 3/2 | 0.5 | 5 |" in table and "0.5000" in table  # the expectation at s = 0.5, M/N = 3/2


def test_the_tally_bench_tallies_each_reveal_once_per_burst_or_never(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench.tally's three reveal chunks: `add_only_ratio` is only a ceiling if its chunk does not
    # tally, and the headline ratio only means "tally after each reveal" if that chunk does
    import bench.tally as bt
    from p2pci.core.board import Board
    from p2pci.core.signing import NodeKey
    from p2pci.core.tally import tally

    pub = NodeKey.from_seed(bt._h(b"p"))
    workers = [NodeKey.from_seed(bt._h(b"w%d" % i)) for i in range(4)]
    setup, reveals = bt._job(0, pub, workers)
    calls: list[bytes] = []
    monkeypatch.setattr(bt, "tally", lambda v, now: calls.append(v.job) or tally(v, now))
    counted = {}
    for mode in ("each", "once", "never"):
        board = Board()
        for raw in setup:
            board.add(raw, bt.NOW)
        view = board.job(bt._h(setup[0]))
        assert view is not None
        calls.clear()
        bt._reveals_chunk(board, [view], [reveals], batched=mode == "once", tallied=mode != "never")
        counted[mode] = len(calls)
        assert len(view.reveals) == 4
    assert counted == {"each": 4, "once": 1, "never": 0}
