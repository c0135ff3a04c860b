"""`[worker] schedule` windows (p2pci.core.schedule)."""

from __future__ import annotations

import pytest

from p2pci.core.errors import LocalError
from p2pci.core.schedule import in_schedule, parse_schedule

MON, TUE, FRI, SAT, SUN = 0, 1, 4, 5, 6


def at(h: int, m: int = 0) -> int:
    return h * 60 + m


def test_empty_schedule_is_always() -> None:
    assert in_schedule((), MON, 0)


def test_plain_window_every_day() -> None:
    w = parse_schedule(["09:00-17:30"])
    assert in_schedule(w, SUN, at(9)) and in_schedule(w, MON, at(17, 29))
    assert not in_schedule(w, MON, at(17, 30)) and not in_schedule(w, MON, at(8, 59))


def test_window_that_wraps_past_midnight_belongs_to_its_start_day() -> None:
    w = parse_schedule(["mon-fri 19:00-07:00"])
    assert in_schedule(w, MON, at(20)) and in_schedule(w, TUE, at(6, 59))
    assert in_schedule(w, SAT, at(6))  # Friday night's morning
    assert not in_schedule(w, SAT, at(20)) and not in_schedule(w, MON, at(6))  # Sunday night is not in it
    assert not in_schedule(w, TUE, at(7)) and not in_schedule(w, TUE, at(12))


def test_days_lists_and_whole_days() -> None:
    w = parse_schedule(["sat,sun 00:00-24:00", "fri-mon 12:00-13:00"])
    assert in_schedule(w, SAT, 0) and in_schedule(w, SUN, at(23, 59))
    assert in_schedule(w, MON, at(12, 30)) and in_schedule(w, FRI, at(12)) and not in_schedule(w, TUE, at(12, 30))


@pytest.mark.parametrize(
    "entry, msg",
    [
        ("9-17", "expected"),
        ("25:00-26:00", "not a time of day"),
        ("10:00-10:00", "empty window"),
        ("monday 10:00-11:00", "days are mon..sun"),
        ("10:60-11:00", "not a time of day"),
    ],
)
def test_bad_entries_name_themselves(entry: str, msg: str) -> None:
    with pytest.raises(LocalError, match=msg) as exc:
        parse_schedule([entry])
    assert entry in str(exc.value)


def test_config_keys_parse_and_bad_values_name_the_file_and_key(tmp_path: object) -> None:
    from pathlib import Path

    from p2pci.config import DEFAULT_CONFIG_TEXT, Config, load_config

    d = Path(str(tmp_path))
    p = d / "config.toml"
    p.write_text(DEFAULT_CONFIG_TEXT)
    assert load_config(p).worker == Config().worker  # the documented defaults are the defaults
    p.write_text('[worker]\nschedule = ["mon-fri 19:00-07:00"]\nidle_load = 0.8\ndrain_grace_s = 30\n')
    w = load_config(p).worker
    assert w.schedule == ("mon-fri 19:00-07:00",) and w.idle_load == 0.8 and w.drain_grace_s == 30
    for text, msg in (
        ('[worker]\nschedule = ["19-7"]\n', "worker.schedule '19-7'"),
        ("[worker]\nidle_load = -1\n", "worker.idle_load must be"),
        ("[worker]\ndrain_grace_s = -5\n", "drain_grace_s"),
    ):
        p.write_text(text)
        with pytest.raises(LocalError, match=msg) as exc:
            load_config(p)
        assert str(p) in str(exc.value)
