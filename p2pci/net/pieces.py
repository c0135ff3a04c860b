"""Which piece of a blob to ask which holder for (docs/protocol.md §8.4; no libp2p here).

A download (`Pull`) has two kinds of remotes:

* **holders**: peers expected to hold the whole blob (the publisher for a job's source, image
  archive and inputs; the workers that committed or revealed; for artifacts, the workers of
  the agreeing group). Asked in the given order, up to `MAX_HOLDERS` at once.
* **team**: the peers fetching the same blob at the same moment (a job's selected workers), in
  an order every member computes alike, this node included. Stripe `s` (`STRIPE` pieces) is
  *owned* by `team[s % len(team)]`: each member fetches the stripes it owns from the holders and
  every other stripe from its owner, which serves the pieces it got from a holder (`direct`)
  before its own copy is complete. So the holders upload each piece about once, whatever the
  team's size. A member that makes no progress (shows no piece we lack) for `PATIENCE_S`, shows
  no piece at all for `START_S`, refuses every request for `PATIENCE_S` with no run landing
  ("busy", or "not held" of pieces its `have` shows), or fails, is *stalled*: its stripes go to
  the holders (a holder that refuses so long is given up too: the next in line takes its
  place). Blobs of at most `TEAM_MIN`
  bytes are fetched without a team.

Pieces are taken in contiguous runs of at most `MAX_RUN`, lowest first, so several holders
split a large blob between them (parallel pulls) and a partial download resumes with the
pieces it lacks.
"""

from __future__ import annotations

from typing import Protocol

import trio

MAX_HOLDERS = 4  # holders pulled from at once
MAX_RUN = 8  # pieces per range request (8 MiB)
STRIPE = 4  # pieces per team stripe
PATIENCE_S = 5.0  # a partial copy (a team member's) whose `have` does not grow for this long: given up
START_S = 2.0  # a team member that has shown no piece at all for this long: given up
TEAM_MIN = 8 << 20  # smaller blobs come from the holders only (a wait for a team costs more)


class PieceSet(Protocol):
    n: int

    def held(self, i: int) -> bool: ...


def bit(bitmap: bytes | bytearray, i: int) -> bool:
    return 0 <= i >> 3 < len(bitmap) and bool(bitmap[i >> 3] & (0x80 >> (i & 7)))


def full_bitmap(n: int) -> bytes:
    out = bytearray((n + 7) // 8)
    for i in range(n):
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def popcount(bitmap: bytes | bytearray) -> int:
    return sum(bin(b).count("1") for b in bitmap)


class Pull:
    """The state of one download shared by its per-remote tasks."""

    def __init__(self, part: PieceSet, holders: list[str], team: list[str], me: str) -> None:
        self.part = part
        self.n = part.n
        self.holders = holders
        self.team = team if me in team and len(team) > 1 else []
        self.me = me
        self.inflight: dict[int, str] = {}
        self.sources: dict[int, str] = {}  # piece -> the remote it came from (this session)
        self.haves: dict[str, bytes] = {}
        self.stalled: set[str] = set()
        self.reasons: list[str] = []
        self.v1: list[str] = []  # holders without /p2pci/blob/2 (whole blob over /p2pci/blob/1)
        self.changed = trio.Event()
        self.live = 0  # remote tasks running
        self.gone = 0  # holder tasks that ended (each lets a waiting holder start)

    def kick(self) -> None:
        """Wake the tasks waiting for a change (a piece landed or came back, a member stalled)."""
        self.changed.set()
        self.changed = trio.Event()

    def owner(self, i: int) -> str | None:
        if not self.team:
            return None
        return self.team[(i // STRIPE) % len(self.team)]

    def is_team(self, remote: str) -> bool:
        return remote in self.team and remote != self.me

    def allowed(self, remote: str, i: int) -> bool:
        """May `remote` be asked for piece i now (ignoring whether it has it)?"""
        if self.is_team(remote):
            return True  # it serves only what it got from a holder
        owner = self.owner(i)
        return owner is None or owner == self.me or owner in self.stalled

    def open_pieces(self) -> list[int]:
        """Missing and not on their way."""
        return [i for i in range(self.n) if not self.part.held(i) and i not in self.inflight]

    def take(self, remote: str, limit: int = MAX_RUN) -> list[int]:
        """The next contiguous run of pieces to ask `remote` for (marked in flight), or []."""
        have = self.haves.get(remote, b"")
        run: list[int] = []
        for i in range(self.n):
            ok = not self.part.held(i) and i not in self.inflight and bit(have, i) and self.allowed(remote, i)
            if ok and (not run or i == run[-1] + 1):
                run.append(i)
                if len(run) >= limit:
                    break
            elif run:
                break
        for i in run:
            self.inflight[i] = remote
        return run

    def release(self, run: list[int]) -> None:
        for i in run:
            self.inflight.pop(i, None)
        self.kick()

    def landed(self, run: list[int], remote: str) -> None:
        for i in run:
            self.inflight.pop(i, None)
            self.sources[i] = remote
        self.kick()

    def stall(self, remote: str) -> None:
        if remote in self.team:
            self.stalled.add(remote)
            self.kick()
