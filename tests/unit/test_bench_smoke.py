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
