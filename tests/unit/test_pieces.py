"""The bound on a slow team member (p2pci.net.pieces.Pull.overdue), in Pull's own terms: no
libp2p, no clock but the `now` passed in."""

from __future__ import annotations

import trio

from p2pci.net.pieces import PATIENCE_S, STRIPE, Pull, full_bitmap


class Pieces:
    def __init__(self, n: int) -> None:
        self.n = n
        self.got: set[int] = set()

    def held(self, i: int) -> bool:
        return i in self.got


ME, SLOW, HOLDER = "me", "slow", "holder"
N = 4 * STRIPE  # stripes 0..3: me, slow, me, slow


def _pull() -> tuple[Pull, Pieces]:
    part = Pieces(N)
    pull = Pull(part, [HOLDER], [ME, SLOW], ME)
    pull.haves[HOLDER] = full_bitmap(N)
    pull.haves[SLOW] = full_bitmap(N)  # it claims everything: it may be asked for any piece
    pull.tasks[HOLDER] = trio.CancelScope()
    pull.tasks[SLOW] = trio.CancelScope()
    return pull, part


def _land(pull: Pull, part: Pieces, run: list[int], remote: str) -> list[int]:
    got = pull.landed(run, remote)
    part.got.update(got)
    return got


def _holder_takes_all(pull: Pull, part: Pieces) -> None:
    while run := pull.take(HOLDER):
        _land(pull, part, run, HOLDER)


def test_a_slow_member_is_stalled_patience_s_after_the_holders_ran_out_whatever_it_delivers() -> None:
    pull, part = _pull()
    slow_run = pull.take(SLOW, limit=2)  # the first two pieces of our own stripe, from the member
    assert slow_run == [0, 1]
    assert pull.overdue(0.0) == [] and pull.idle_since is None  # the holder has work
    _holder_takes_all(pull, part)
    assert not set(range(STRIPE, 2 * STRIPE)) & part.got  # the member's stripes: not the holder's
    assert pull.overdue(10.0) == [] and pull.idle_since == 10.0  # the clock starts
    later = pull.take(SLOW)  # it keeps delivering (slowly): no reprieve
    _land(pull, part, later, SLOW)
    assert later and pull.overdue(10.0 + PATIENCE_S - 0.1) == []
    assert pull.due() == 10.0 + PATIENCE_S
    assert pull.overdue(10.0 + PATIENCE_S) == [SLOW]

    pull.stall(SLOW)
    assert pull.tasks[SLOW].cancel_called  # its transfer stops
    assert 0 not in pull.inflight and 1 not in pull.inflight  # its run in flight is free again
    assert pull.overdue(11.0 + PATIENCE_S) == [] and pull.idle_since is None  # the holder has work again
    again = pull.take(HOLDER)
    assert again[:2] == [0, 1]
    assert _land(pull, part, slow_run, SLOW) == []  # its late copy is discarded, the holder's kept
    assert pull.inflight[0] == HOLDER and pull.inflight[1] == HOLDER
    assert _land(pull, part, again, HOLDER) == again and pull.sources[0] == HOLDER
    _holder_takes_all(pull, part)
    assert part.got == set(range(N))


def test_a_member_that_delivered_everything_it_owed_is_not_stalled() -> None:
    pull, part = _pull()
    _holder_takes_all(pull, part)
    while run := pull.take(SLOW):
        _land(pull, part, run, SLOW)
    assert part.got == set(range(N))
    assert pull.owing() == set() and pull.overdue(0.0) == [] and pull.overdue(100.0) == []


def test_no_member_is_stalled_while_no_holder_runs_to_take_its_stripes_over() -> None:
    pull, part = _pull()
    _holder_takes_all(pull, part)
    del pull.tasks[HOLDER]  # the holder failed: a slow member is better than none
    assert pull.overdue(0.0) == [] and pull.overdue(100.0) == []
    pull.tasks[HOLDER] = trio.CancelScope()  # one runs again: the clock starts then
    assert pull.overdue(200.0) == [] and pull.overdue(200.0 + PATIENCE_S) == [SLOW]


def test_the_clock_stops_when_the_holders_get_work_again() -> None:
    pull, part = _pull()
    runs = []
    while run := pull.take(HOLDER):
        runs.append(run)
    assert pull.overdue(-1.0) == [] and pull.idle_since is None  # all ours in flight from the holder
    for run in runs:
        _land(pull, part, run, HOLDER)
    assert pull.overdue(0.0) == [] and pull.idle_since == 0.0
    part.got.discard(0)  # a piece of ours is missing again (say): the holder has work
    assert pull.overdue(PATIENCE_S) == [] and pull.idle_since is None
    _holder_takes_all(pull, part)
    assert pull.overdue(PATIENCE_S + 1.0) == [] and pull.overdue(2 * PATIENCE_S + 1.0) == [SLOW]


def test_a_run_in_flight_from_a_member_keeps_the_holders_idle_and_is_owed_by_it() -> None:
    """Pieces of our own stripe that the member took hold no holder busy: after PATIENCE_S the
    member is stalled even if its own stripes are in, and the pieces go to the holder."""
    pull, part = _pull()
    part.got.update(range(STRIPE, 2 * STRIPE))
    part.got.update(range(3 * STRIPE, N))  # the member's stripes are in
    first = pull.take(SLOW)
    second = pull.take(SLOW)  # all of ours in flight from the member
    assert first and second and pull.take(HOLDER) == []
    assert pull.owing() == {SLOW}
    assert pull.overdue(0.0) == [] and pull.overdue(PATIENCE_S) == [SLOW]
    pull.stall(SLOW)
    assert pull.take(HOLDER) == first
