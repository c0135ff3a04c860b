"""Snapshot of the status screen, exported as SVG by Textual and read back.

pytest-textual-snapshot does not install cleanly here (it pins syrupy 4.8,
which needs pytest < 9), so this test does the same thing by hand: render an
offline StatusApp (fixed model, fixed clock) at 100x24, export the SVG
screenshot, rebuild the text grid from it and compare with the snapshot
below, then check the fill colour of every verdict in the SVG.
"""

from __future__ import annotations

import asyncio
import html
import re

from p2pci.tui import model as m
from p2pci.tui.app import StatusApp
from tests.integration.test_tui_helpers import PEER_A, PEER_B, PEER_C, job_obj, status_obj

NOW = 1_700_000_100_000
CELL_W = 12.2  # px per column in Textual's SVG export

EXPECTED = """\
 offline view
╭─ this node ──────────────────────────────────────────────────────────────────────────────────────╮
│ peer ID  12D3KooWMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMeMe01                                    │
│ listen   /ip4/127.0.0.1/tcp/4001                                                                 │
│ slots    1 busy / 1 free (of 2)    uptime 1h02m                                                  │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
╭─ peers (1) ──────────────────────────────────────────────────────────────────────────────────────╮
│ peer               via      address                  connected                                   │
│ 12D3KooWAl…lpha02  relayed  /ip4/127.0.0.1/tcp/4002  1m50s ago                                   │
│                                                                                                  │
│                                                                                                  │
│                                                                                                  │
│                                                                                                  │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
╭─ jobs (5) · filter: all ─────────────────────────────────────────────────────────────────────────╮
│ project         job           age    replicas/quorum  votes  agree  verdict                      │
│ py-wheel        e5e5e5e5e5e5  1s     3/2              0      0      FAILED                       │
│ busybox-smoke   c3c3c3c3c3c3  5s     3/2              0      0      PENDING                      │
│ unreproducible  b2b2b2b2b2b2  1m00s  3/2              3      2      DISPUTED                     │
│ hello-c         a1a1a1a1a1a1  2m00s  3/2              2      2      REPRODUCED                   │
│ traditional     d4d4d4d4d4d4  2h00m  3/2              0      0      CANCELLED                    │
│                                                                                                  │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
"""


def fixed_model() -> m.StatusModel:
    model = m.StatusModel()
    groups = [{"digest": "d0" * 32, "exit_code": 0, "workers": [PEER_A, PEER_B]}]
    jobs = [
        job_obj("a1" * 32, "REPRODUCED", groups=groups, created=NOW - 120_000),
        job_obj("b2" * 32, "DISPUTED", project="unreproducible", created=NOW - 60_000, groups=[
            {"digest": "d1" * 32, "exit_code": 0, "workers": [PEER_A, PEER_B]},
            {"digest": "e2" * 32, "exit_code": 0, "workers": [PEER_C]},
        ]),  # votes 3, agree 2: the counts of `p2pci jobs`
        job_obj("c3" * 32, "PENDING", project="busybox-smoke", created=NOW - 5_000),
        job_obj("d4" * 32, "CANCELLED", project="traditional", created=NOW - 7_200_000),
        job_obj("e5" * 32, "FAILED", project="py-wheel", created=NOW - 1_000),  # the cursor row
    ]
    assert model.apply_status(status_obj(jobs), NOW)
    return model


def render_svg() -> str:
    async def main() -> str:
        app = StatusApp(None, clock=lambda: NOW, model=fixed_model())
        async with app.run_test(size=(100, 24)) as pilot:
            await pilot.pause()
            return app.export_screenshot()

    return asyncio.run(main())


_TEXT = re.compile(r'<text class="[^"]*-(r\d+)" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>')


def svg_grid(svg: str) -> tuple[list[str], dict[str, str]]:
    """The screen as text lines, and word -> fill colour of the segment holding it."""
    rows: dict[float, list[tuple[float, str, str]]] = {}
    for cls, x, y, text in _TEXT.findall(svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text).replace("\xa0", " "), cls))
    fills = dict(re.findall(r"\.terminal-\d+-(r\d+) \{ fill: (#[0-9a-f]{6})", svg))
    lines, colour_of = [], {}
    for y in sorted(rows):
        line = ""
        for x, text, cls in sorted(rows[y]):
            line = line.ljust(round(x / CELL_W)) + text
            if text.strip():
                colour_of[text.strip()] = fills.get(cls, "")
        lines.append(line.rstrip())
    return lines, colour_of


def rgb(hexcolour: str) -> tuple[int, int, int]:
    return int(hexcolour[1:3], 16), int(hexcolour[3:5], 16), int(hexcolour[5:7], 16)


def test_status_screen_snapshot_and_verdict_colours() -> None:
    lines, colour_of = svg_grid(render_svg())
    # The cursor row (FAILED, newest) is drawn in the cursor colours; the others keep theirs.
    # The last line is Textual's footer (key hints): its layout belongs to Textual.
    assert "q Quit" in lines[-1] and "f Filter" in lines[-1]
    assert "\n".join(lines[:-1]) + "\n" == EXPECTED
    r, g, b = rgb(colour_of["REPRODUCED"])
    assert g > r and g > b, "REPRODUCED is green"
    for verdict in ("DISPUTED",):
        r, g, b = rgb(colour_of[verdict])
        assert r > g and r > b, f"{verdict} is red"
    r, g, b = rgb(colour_of["PENDING"])
    assert r > b and g > b and min(r, g) > 0x80, "PENDING is yellow"
    r, g, b = rgb(colour_of["CANCELLED"])
    assert r == g == b, "CANCELLED is grey"
