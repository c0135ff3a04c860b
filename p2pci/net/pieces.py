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
  place). Nor may a member that makes progress, but slowly (just above wire.BLOB_MIN_RATE),
  stretch the download to its pace: once the holders have had nothing left that they may serve
  for `PATIENCE_S` while a member still owes pieces (of its stripes, or in flight from it), it
  is stalled too (`overdue`). Stalling a member cancels its task and frees the pieces it had in
  flight for the holders; its copy of them is discarded (never written or marked after the
  stall), so the holder's copy is the one that lands. Blobs of at most `TEAM_MIN` bytes are
  fetched without a team.

Pieces are taken in contiguous runs of at most `MAX_RUN`, lowest first, so several holders
split a large blob between them (parallel pulls) and a partial download resumes with the
pieces it lacks.
"""

from __future__ import annotations

import math
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
        self.tasks: dict[str, trio.CancelScope] = {}  # remote -> its running task's scope
        self.idle_since: float | None = None  # when the holders ran out of work while members owe

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
        return self.for_holders(i)

    def for_holders(self, i: int) -> bool:
        """Is piece i one the holders serve us (no team, or our stripe, or a stalled member's)?"""
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

    def landed(self, run: list[int], remote: str) -> list[int]:
        """`remote` delivered `run`: the pieces still in flight from it, to be marked. Others are
        discarded (taken from it when it stalled: another copy is on its way or in)."""
        ours = [i for i in run if self.inflight.get(i) == remote]
        for i in ours:
            del self.inflight[i]
            self.sources[i] = remote
        self.kick()
        return ours

    def stall(self, remote: str) -> None:
        """Give up team member `remote`: its stripes go to the holders, its task is cancelled,
        and the pieces in flight from it are free to take again."""
        if remote in self.team:
            self.stalled.add(remote)
            scope = self.tasks.get(remote)
            if scope is not None:
                scope.cancel()
            for i in [i for i, r in self.inflight.items() if r == remote]:
                del self.inflight[i]
            self.kick()

    def owing(self) -> set[str]:
        """Team members (not stalled) we still wait on: a missing piece in flight from them, or
        not in flight and of a stripe they own."""
        out: set[str] = set()
        for i in range(self.n):
            if self.part.held(i):
                continue
            by = self.inflight.get(i)
            who = by if by is not None else self.owner(i)
            if who is not None and self.is_team(who):
                out.add(who)
        return out - self.stalled

    def holders_idle(self) -> bool:
        """Nothing left that a holder may serve: every missing piece is in flight from a team
        member, or in a stripe a member that is not stalled owns."""
        for i in range(self.n):
            if self.part.held(i):
                continue
            by = self.inflight.get(i)
            if by is None and self.for_holders(i) or by is not None and not self.is_team(by):
                return False
        return True

    def overdue(self, now: float, patience: float = PATIENCE_S) -> list[str]:
        """The members to stall at `now`: those that still owe pieces `patience` s after the
        holders ran out of pieces they may serve (while a holder's task runs, to serve what the
        members owed). So a member that serves slowly, yet fast enough never to stall otherwise,
        costs at most `patience` s more than the holders alone would take. Keeps the clock
        (`idle_since`); `due` says when to ask again."""
        owing = self.owing() if self.holding() and self.holders_idle() else set()
        if not owing:
            self.idle_since = None
            return []
        if self.idle_since is None:
            self.idle_since = now
        return sorted(owing) if now - self.idle_since >= patience else []

    def due(self, patience: float = PATIENCE_S) -> float:
        """When `overdue` may next name a member (inf while the holders have work)."""
        return math.inf if self.idle_since is None else self.idle_since + patience

    def holding(self) -> bool:
        """A holder's task is running (to serve what a stalled member owed)."""
        return any(not self.is_team(r) for r in self.tasks)
