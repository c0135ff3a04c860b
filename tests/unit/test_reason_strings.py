"""The reasons a node gives for an ignored select, an ignored vote or an expiry are part of the
protocol (docs/protocol.md sections 5 and 6: other implementations and scripts compare them), so
each constant must be the documented string, verbatim (mutmut survivors in core/selection.py and
core/tally.py: a changed reason string passed every behavioural test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pci.core import selection, tally

PROTOCOL = " ".join((Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text().split())  # unwrapped

SELECT_REASONS = {n: getattr(selection, n) for n in dir(selection) if n.startswith("S_")}
VOTE_REASONS = {n: getattr(tally, n) for n in dir(tally) if n.startswith(("R_", "X_"))}


def test_every_reason_is_collected() -> None:
    assert len(SELECT_REASONS) == 10 and len(VOTE_REASONS) == 9


@pytest.mark.parametrize("name", sorted(SELECT_REASONS) + sorted(VOTE_REASONS))
def test_each_reason_is_the_documented_string(name: str) -> None:
    value = SELECT_REASONS.get(name, VOTE_REASONS.get(name))
    assert isinstance(value, str) and value
    assert f"`{value}`" in PROTOCOL, f"{name} = {value!r} is not quoted in docs/protocol.md"


def test_reasons_are_distinct() -> None:
    values = list(SELECT_REASONS.values()) + list(VOTE_REASONS.values())
    assert len(set(values)) == len(values)
