"""The status model: pure, so hypothesis can throw anything at it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pci.tui import model as m
from tests.integration.test_tui_helpers import PEER_A, job_obj, status_obj

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                    st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=20)
event_names = st.sampled_from(["job", "peers", "node", "log", "fact", "", None])


@st.composite
def frames(draw: st.DrawFn) -> Any:
    """Mostly near-valid event frames with one field replaced by junk."""
    kind = draw(event_names)
    base: dict[str, Any] = {
        "job": {"event": "job", "job": job_obj("ab" * 32, draw(st.sampled_from(m.VERDICTS)))},
        "peers": {"event": "peers", "peers": [{"peer_id": PEER_A, "addrs": [], "connected_since": 1}]},
        "node": {"event": "node", "node": status_obj()["node"]},
        "log": {"event": "log", "job": "ab" * 32, "worker": PEER_A, "text": "x"},
    }.get(kind or "", {"event": kind})
    if draw(st.booleans()):
        target = base
        inner = base.get(kind or "")
        if isinstance(inner, dict) and draw(st.booleans()):
            target = inner
        if target:
            key = draw(st.sampled_from(sorted(target)))
            target[key] = draw(values)
    return draw(st.one_of(st.just(base), values))


@settings(max_examples=200, deadline=None)
@given(st.lists(frames(), max_size=20))
def test_any_frame_sequence_never_raises_and_state_stays_well_typed(seq: list[Any]) -> None:
    model = m.StatusModel()
    for i, frame in enumerate(seq):
        before = (dict(model.jobs), model.peers, model.node)
        kind = model.apply_event(frame, i)
        if kind is None:
            assert (dict(model.jobs), model.peers, model.node) == before  # dropped: nothing applied
    for job in model.jobs.values():
        assert isinstance(job, m.Job) and job.verdict in m.VERDICTS
        m.job_row(model, job, 10)
        m.detail_lines(model, job)
        m.detail_lines(model, job, 10)
    m.snapshot_text(model, 10)


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_status_reply_is_applied_whole_or_counted(reply: Any) -> None:
    model = m.StatusModel()
    if not model.apply_status(reply, 0):
        assert model.bad_frames == 1 and model.node is None and not model.jobs


def test_filter_cycle_covers_every_verdict_then_all() -> None:
    model = m.StatusModel()
    seen = [model.cycle_filter() for _ in m.FILTERS]
    assert seen == [*m.VERDICTS, None]


def test_snapshot_text_lists_jobs_newest_first_in_aligned_columns() -> None:
    model = m.StatusModel()
    model.apply_status(status_obj([job_obj("bb" * 32, "FAILED", created=2_000),
                                   job_obj("aa" * 32, "PENDING", created=1_000)]), 3_000)
    text = m.snapshot_text(model, 3_000)
    rows = [line for line in text.splitlines() if line.startswith("hello-c")]
    assert [r.split()[1] for r in rows] == ["bb" * 6, "aa" * 6]
    assert rows[0].index("FAILED") == rows[1].index("PENDING")


def test_jobs_without_created_keep_the_daemon_order() -> None:
    model = m.StatusModel()
    jobs = [job_obj(h * 32, "PENDING") for h in ("cc", "aa", "bb")]  # as the daemon sends them: newest first
    assert all(j["created"] is None for j in jobs)
    model.apply_status(status_obj(jobs), 0)
    assert [j.job[:2] for j in model.visible_jobs()] == ["cc", "aa", "bb"]
    model.apply_event({"event": "job", "job": {**jobs[1], "job": "dd" * 32}}, 5)
    assert model.visible_jobs()[0].job == "dd" * 32


def test_detail_states_what_the_job_builds_escaped() -> None:
    from tests.integration.test_tui_helpers import PROVENANCE

    job = m.parse_job(job_obj("ab" * 32))
    text = "\n".join(m.detail_lines(m.StatusModel(), job))
    assert f"source    sha256 {PROVENANCE['source_sha256']}" in text
    assert f"git       commit {PROVENANCE['commit']}  tree {PROVENANCE['tree']}" in text
    assert f"image     {PROVENANCE['image']}  (recipe busybox)" in text
    assert "command   sh build.sh" in text and "env       LC_ALL=C" in text and "inputs    none" in text
    pinned = m.parse_job(job_obj("ab" * 32, provenance={**PROVENANCE, "inputs_sha256": "11" * 32, "commit": None}))
    text = "\n".join(m.detail_lines(m.StatusModel(), pinned))
    assert f"inputs    sha256 {'11' * 32}" in text and "git " not in text
    # peer text from a signed offer: escaped, never interpreted by the terminal
    hostile = m.parse_job(job_obj("ab" * 32, provenance={**PROVENANCE, "command": ["sh", "\x1b[2Jgotcha"]}))
    text = "\n".join(m.detail_lines(m.StatusModel(), hostile))
    assert "\x1b" not in text and "gotcha" in text
    assert m.parse_job(job_obj("ab" * 32, provenance=None)).provenance == ()


def test_status_facts_counters_line_is_bounded_and_safe() -> None:
    """issue 18: `status --once` shows the daemon's fact counters in one line; hostile input
    (escape codes as reasons, bools, negative or huge counts, wrong types) never reaches the terminal."""
    from p2pci.tui import model as m

    from .test_tui_helpers import status_obj

    model = m.StatusModel(connected=True)
    assert model.apply_status(status_obj([]), 0)
    text = m.snapshot_text(model, 0)
    assert "facts from peers: received 12  new 8  duplicate 2  rejected 2 (body 1, signature 1)  dropped 0\n" in text
    hostile = {"received": True, "new": -5, "duplicate": 1 << 70,
               "rejected": {"\x1b[2Jwipe": 3, "body": "7", "signature": 2, **{f"r{i}": 1 for i in range(100)}},
               "dropped": ["backlog"]}  # fmt: skip
    line = m.facts_line(hostile)
    assert "\x1b" not in line and "wipe" not in line
    assert line.startswith("received 0  new 0  duplicate 0  rejected ") and line.endswith("dropped 0")
    assert len(line) < 1000
    assert m.facts_line(None) == "" and m.facts_line("x") == ""
    model2 = m.StatusModel(connected=True)
    assert model2.apply_status({k: v for k, v in status_obj([]).items() if k != "facts"}, 0)
    assert "facts from peers" not in m.snapshot_text(model2, 0)  # an older daemon: no line


def test_status_once_has_a_quotas_section_with_what_was_dropped_and_why() -> None:
    """issue 14: `status --once` (snapshot_text) says what the quotas dropped and evicted, by
    reason, and only when something was; hostile reasons and counts never reach the terminal."""
    quiet = {"dropped": {"peer_rate": 0, "peer_bytes": 0}, "evicted": {"jobs_per_node": 0}, "max_jobs": 4096}
    model = m.StatusModel(connected=True)
    assert model.apply_status({**status_obj([]), "quotas": quiet}, 0)
    assert "== quotas" not in m.snapshot_text(model, 0)
    busy = {
        "dropped": {"peer_rate": 5, "peer_bytes": 0, "signer_rate": 2, "\x1b[2Jwipe": 9, "signer_bytes": "7", "x": -1},
        "evicted": {"jobs_per_node": 3, "offers_per_key": True},
        "dropped_from": {"peer": 5},
    }
    assert model.apply_status({**status_obj([]), "quotas": busy}, 0)
    text = m.snapshot_text(model, 0)
    section = text.split("== quotas", 1)[1].splitlines()[1:]
    assert section == ["  dropped peer_rate  5", "  dropped signer_rate  2", "  evicted jobs_per_node  3"], text
    assert "\x1b" not in text and "wipe" not in text
    for junk in (None, "x", {"dropped": ["peer_rate"]}, {"evicted": {"a": 1 << 70}}):
        assert model.apply_status({**status_obj([]), "quotas": junk}, 0)
        assert "wipe" not in m.snapshot_text(model, 0)


def test_every_worker_phase_the_daemon_sends_has_words_and_unknown_ones_are_marked() -> None:
    from p2pci.control.schema import WORKER_PHASES
    from tests.integration.test_tui_helpers import worker_row

    assert set(m.PHASE_WORDS) == set(WORKER_PHASES)
    job = m.parse_job(job_obj("ab" * 32, workers=[worker_row(PEER_A, p) for p in (*WORKER_PHASES, "hacked")]))
    text = "\n".join(m.phase_lines(m.StatusModel(), job))
    assert all(m.PHASE_WORDS[p] in text for p in WORKER_PHASES)
    assert "? hacked" in text  # a phase this TUI does not know is shown as such, never as a known one


def test_expired_reason_and_cause_only_on_an_expired_job() -> None:
    kw = {"reason": "not enough agreeing votes by the deadline", "cause": "no eligible worker claimed the job"}
    expired = "\n".join(m.detail_lines(m.StatusModel(), m.parse_job(job_obj("ab" * 32, "EXPIRED", **kw))))
    assert "expired:  not enough agreeing votes by the deadline\ncause:    no eligible worker claimed the job" in expired
    pending = "\n".join(m.detail_lines(m.StatusModel(), m.parse_job(job_obj("ab" * 32, "PENDING", **kw))))
    assert "expired:" not in pending and "cause:" not in pending


def test_deadlines_far_out_of_range_never_break_the_detail() -> None:
    from tests.integration.test_tui_helpers import deadlines_obj

    job = m.parse_job(job_obj("ab" * 32, deadlines=deadlines_obj(1 << 62)))
    text = "\n".join(m.detail_lines(m.StatusModel(), job, 0))
    assert "claim window ends ? UTC (in " in text
    assert m.parse_job(job_obj("ab" * 32, deadlines=None)).deadlines == ()


def test_node_pane_says_when_the_donor_paused_or_drains() -> None:
    model = m.StatusModel()
    status = status_obj([])
    assert model.apply_status(status, 0)
    assert not any("accepting" in line for line in m.node_lines(model, 0))
    status["node"].update(accepting="paused", paused_why="outside the schedule 22:00-07:00\x1b[2J")
    assert model.apply_status(status, 0)
    text = "\n".join(m.node_lines(model, 0))
    assert "accepting no new work: paused (outside the schedule 22:00-07:00\\x1b[2J)" in text
    status["node"].update(accepting="\x1b[31mweird", paused_why="")
    assert model.apply_status(status, 0) and model.node is not None and model.node.accepting == "open"
