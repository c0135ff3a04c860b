"""The benchmark simulator drives the real core: at 100 nodes every job converges."""

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
