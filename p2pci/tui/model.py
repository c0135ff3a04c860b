"""What `p2pci status` knows, built only from control-socket frames.

Pure: no Textual, no trio, no clock reads (`now` is passed in, integer ms).
Every frame is checked for shape; a malformed one is dropped and counted in
`StatusModel.bad_frames`, never applied half-way (a malformed job inside a
status reply drops that job only). Lists longer than the model keeps (junk
reveals: hundreds of ignored votes) are cut and the rest counted, never a
reason to drop the job. Every string is made terminal-safe here, as it
enters (`p2pci.textsafe`): the Textual app and the `--once` printer both
render from this model and never see a raw control character.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from p2pci.textsafe import safe_lines, safe_text

VERDICTS = ("PENDING", "REPRODUCED", "FAILED", "DISPUTED", "EXPIRED", "CANCELLED")
# Colour per verdict (Rich style names): the issue fixes these.
VERDICT_STYLE = {
    "REPRODUCED": "green",
    "DISPUTED": "red",
    "FAILED": "red",
    "PENDING": "yellow",
    "EXPIRED": "grey50",
    "CANCELLED": "grey50",
}
# `f` cycles through these; None means "all".
FILTERS: tuple[str | None, ...] = (None, *VERDICTS)

MAX_STR = 256
MAX_JOBS = 5000
MAX_PEERS = 1000
LOG_LINES = 200
_HEX = re.compile(r"^[0-9a-f]{1,128}$")


class BadFrame(ValueError):
    """Raised internally by the validators; turned into a count."""


def _str(obj: Any, name: str, *, limit: int = MAX_STR) -> str:
    if not isinstance(obj, str):
        raise BadFrame(f"{name}: expected str")
    return safe_text(obj[:limit])


def _opt_str(obj: Any, name: str) -> str | None:
    return None if obj is None else _str(obj, name)


def _int(obj: Any, name: str) -> int:
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        raise BadFrame(f"{name}: expected a number")
    return int(obj)


def _opt_int(obj: Any, name: str) -> int | None:
    return None if obj is None else _int(obj, name)


MAX_LIST = 256  # items of one list kept per job (the rest is counted in Job.hidden)
MAX_RAW_LIST = 100_000  # a longer list is a malformed frame


def _list(obj: Any, name: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list) or len(obj) > MAX_RAW_LIST:
        raise BadFrame(f"{name}: expected a list")
    return obj


def _str_list(obj: Any, name: str, *, limit: int = MAX_LIST) -> tuple[str, ...]:
    return tuple(_str(x, name) for x in _list(obj, name)[:limit])


@dataclass(frozen=True)
class Group:
    digest: str
    exit_code: int | None
    workers: tuple[str, ...]


@dataclass(frozen=True)
class WorkerRow:
    """One row of the job object's `workers` (its phase as this node's facts tell it)."""

    peer: str
    phase: str  # claimed, selected, dropped, committed, revealed, declined, timed_out (or unknown: shown as "?")
    why: str = ""  # a decline's reason code and detail, one line
    selected: bool = False
    log: str = ""  # sha256 hex of a decline's log blob


@dataclass(frozen=True)
class Round:
    round: int
    select: str  # the select fact's id (hex)
    created: int | None
    workers: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    job: str
    project: str
    verdict: str
    digest: str | None
    replicas: int | None
    quorum: int | None
    groups: tuple[Group, ...]
    dissenters: tuple[str, ...]
    equivocators: tuple[str, ...]
    ignored: tuple[tuple[str, str], ...]
    created: int | None  # ms since the epoch, if the daemon sends it
    hidden: int = 0  # list items (groups, workers, ignored votes...) beyond what the model keeps
    reason: str | None = None  # why EXPIRED
    cause: str | None = None  # its cause (no eligible worker, N declined, timed out, publisher gone)
    phases: tuple[WorkerRow, ...] = ()  # per worker: its phase, and a decline's reason and detail
    provenance: tuple[tuple[str, str], ...] = ()  # (label, value): what the job builds, from its offer
    rounds: tuple[Round, ...] = ()  # the publisher's valid select rounds, in order
    ignored_selects: tuple[tuple[int, str, str], ...] = ()  # (round, signer, reason): select facts not counted
    missing: tuple[str, ...] = ()  # selected workers owing a reveal this node lacks
    deadlines: tuple[tuple[str, int], ...] = ()  # (what, ms since the epoch), in time order

    @property
    def votes(self) -> int:
        """Every counted vote (`p2pci jobs`: VOTES)."""
        return sum(len(g.workers) for g in self.groups)

    @property
    def agree(self) -> int:
        """The largest group's votes (`p2pci jobs`: AGREE)."""
        return max((len(g.workers) for g in self.groups), default=0)


@dataclass(frozen=True)
class Peer:
    peer_id: str
    addrs: tuple[str, ...]
    connected_since: int | None  # ms since the epoch
    via: str = ""  # "direct", "relayed" or "" (an older daemon)


@dataclass(frozen=True)
class NodeInfo:
    peer_id: str
    addrs: tuple[str, ...]
    slots: int | None
    busy: int | None
    uptime_s: int | None
    building: tuple[str, ...]  # job ids (hex) this node is building
    accepting: str = "open"  # open, paused or draining (donor controls and the schedule)
    paused_why: str = ""


def parse_provenance(obj: Any) -> tuple[tuple[str, str], ...]:
    """The job object's `provenance` map as detail lines (label, value), bounded and escaped."""
    import shlex

    if obj is None:
        return ()
    if not isinstance(obj, dict):
        raise BadFrame("job.provenance: expected a map")
    out = [("source", f"sha256 {_str(obj.get('source_sha256'), 'provenance.source_sha256', limit=64)}")]
    commit = _opt_str(obj.get("commit"), "provenance.commit")
    if commit:
        out.append(("git", f"commit {commit[:64]}  tree {(_opt_str(obj.get('tree'), 'provenance.tree') or '-')[:64]}"))
    image = _str(obj.get("image"), "provenance.image", limit=80)
    recipe = _opt_str(obj.get("image_recipe"), "provenance.image_recipe")
    out.append(("image", image + (f"  (recipe {recipe[:200]})" if recipe else "")))
    command = [_str(c, "provenance.command") for c in _list(obj.get("command"), "provenance.command")[:MAX_LIST]]
    out.append(("command", safe_text(shlex.join(command))[:MAX_STR]))
    env = obj.get("env") or {}
    if not isinstance(env, dict):
        raise BadFrame("provenance.env: expected a map")
    if env:
        pairs = sorted((str(k)[:MAX_STR], str(v)[:MAX_STR]) for k, v in list(env.items())[:MAX_LIST])
        out.append(("env", safe_text(" ".join(shlex.quote(f"{k}={v}") for k, v in pairs))[:MAX_STR]))
    inputs = _opt_str(obj.get("inputs_sha256"), "provenance.inputs_sha256")
    out.append(("inputs", f"sha256 {inputs[:64]}" if inputs else "none"))
    return tuple(out)


def parse_job(obj: Any) -> Job:
    if not isinstance(obj, dict):
        raise BadFrame("job: expected a map")
    job = _str(obj.get("job"), "job.job").lower()
    if not _HEX.match(job):
        raise BadFrame("job.job: expected hex")
    verdict = _str(obj.get("verdict"), "job.verdict")
    if verdict not in VERDICTS:
        raise BadFrame(f"job.verdict: unknown verdict {verdict[:20]!r}")
    raw_groups = _list(obj.get("groups"), "job.groups")
    hidden = max(0, len(raw_groups) - 64)
    groups = []
    for g in raw_groups[:64]:
        if not isinstance(g, dict):
            raise BadFrame("job.groups[]: expected a map")
        workers = _list(g.get("workers"), "group.workers")
        hidden += max(0, len(workers) - MAX_LIST)
        groups.append(
            Group(
                digest=_str(g.get("digest"), "group.digest"),
                exit_code=_opt_int(g.get("exit_code"), "group.exit_code"),
                workers=_str_list(workers, "group.workers"),
            )
        )
    raw_ignored = _list(obj.get("ignored"), "job.ignored")
    hidden += max(0, len(raw_ignored) - MAX_LIST)
    ignored = []
    for i in raw_ignored[:MAX_LIST]:
        if not isinstance(i, dict):
            raise BadFrame("job.ignored[]: expected a map")
        ignored.append((_str(i.get("worker"), "ignored.worker"), _str(i.get("reason", ""), "ignored.reason")))
    dissenters = _list(obj.get("dissenters"), "job.dissenters")
    equivocators = _list(obj.get("equivocators"), "job.equivocators")
    hidden += max(0, len(dissenters) - MAX_LIST) + max(0, len(equivocators) - MAX_LIST)
    raw_workers = _list(obj.get("workers"), "job.workers")
    hidden += max(0, len(raw_workers) - MAX_LIST)
    phases = tuple(_worker_row(w) for w in raw_workers[:MAX_LIST])
    raw_rounds = _list(obj.get("rounds"), "job.rounds")
    hidden += max(0, len(raw_rounds) - 64)
    rounds = []
    for r in raw_rounds[:64]:
        if not isinstance(r, dict):
            raise BadFrame("job.rounds[]: expected a map")
        ws = _list(r.get("workers"), "round.workers")
        hidden += max(0, len(ws) - MAX_LIST)
        rounds.append(Round(round=_int(r.get("round"), "round.round"), select=_str(r.get("select"), "round.select"),
                            created=_opt_int(r.get("created"), "round.created"),
                            workers=_str_list(ws, "round.workers")))
    raw_isel = _list(obj.get("ignored_selects"), "job.ignored_selects")
    hidden += max(0, len(raw_isel) - MAX_LIST)
    ignored_selects = []
    for b in raw_isel[:MAX_LIST]:
        if not isinstance(b, dict):
            raise BadFrame("job.ignored_selects[]: expected a map")
        ignored_selects.append((_int(b.get("round"), "ignored_selects.round"),
                                _str(b.get("signer"), "ignored_selects.signer"),
                                _str(b.get("reason", ""), "ignored_selects.reason")))
    missing = _list(obj.get("missing"), "job.missing")
    hidden += max(0, len(missing) - MAX_LIST)
    return Job(
        job=job,
        project=_str(obj.get("project") or "", "job.project", limit=80),
        verdict=verdict,
        digest=_opt_str(obj.get("digest"), "job.digest"),
        replicas=_opt_int(obj.get("replicas"), "job.replicas"),
        quorum=_opt_int(obj.get("quorum"), "job.quorum"),
        groups=tuple(groups),
        dissenters=_str_list(dissenters, "job.dissenters"),
        equivocators=_str_list(equivocators, "job.equivocators"),
        ignored=tuple(ignored),
        created=_opt_int(obj.get("created"), "job.created"),
        hidden=hidden,
        reason=_opt_str(obj.get("reason"), "job.reason"),
        cause=_opt_str(obj.get("cause"), "job.cause"),
        phases=phases,
        provenance=parse_provenance(obj.get("provenance")),
        rounds=tuple(rounds),
        ignored_selects=tuple(ignored_selects),
        missing=_str_list(missing, "job.missing"),
        deadlines=_deadlines(obj.get("deadlines")),
    )


def _worker_row(w: Any) -> WorkerRow:
    if not isinstance(w, dict):
        raise BadFrame("job.workers[]: expected a map")
    why = _opt_str(w.get("reason"), "workers.reason") or ""
    raw = w.get("detail")
    detail = "" if raw is None else _str(" ".join(raw.split()) if isinstance(raw, str) else raw, "workers.detail")[:160]
    log = _opt_str(w.get("log"), "workers.log") or ""
    return WorkerRow(
        peer=_str(w.get("worker"), "workers.worker"),
        phase=_str(w.get("phase"), "workers.phase", limit=16),
        why=why + (f": {detail}" if detail else ""),
        selected=w.get("selected") is True,
        log=log[:64] if _HEX.match(log) else "",
    )


DEADLINES = (("claim_window_end", "claim window ends"), ("reveal", "reveal by"), ("offer", "deadline"))


def _deadlines(obj: Any) -> tuple[tuple[str, int], ...]:
    """The job object's `deadlines` map as (label, ms) in the order of DEADLINES; None -> ()."""
    if obj is None:
        return ()
    if not isinstance(obj, dict):
        raise BadFrame("job.deadlines: expected a map")
    return tuple((label, _int(obj[key], f"deadlines.{key}")) for key, label in DEADLINES if obj.get(key) is not None)


def parse_peer(obj: Any) -> Peer:
    if not isinstance(obj, dict):
        raise BadFrame("peer: expected a map")
    return Peer(
        peer_id=_str(obj.get("peer_id"), "peer.peer_id"),
        addrs=_str_list(obj.get("addrs"), "peer.addrs", limit=64),
        connected_since=_opt_int(obj.get("connected_since"), "peer.connected_since"),
        via=_via(obj.get("via")),
    )


def _via(obj: Any) -> str:
    """How we reach a peer; anything but the known words shows as "?" (never raw)."""
    return obj if obj in ("direct", "relayed", "hole-punched") else ("" if obj in (None, "") else "?")


def parse_peers(obj: Any) -> tuple[Peer, ...]:
    if not isinstance(obj, list) or len(obj) > MAX_PEERS:
        raise BadFrame("peers: expected a list")
    return tuple(parse_peer(p) for p in obj)


def parse_node(obj: Any) -> NodeInfo:
    if not isinstance(obj, dict):
        raise BadFrame("node: expected a map")
    building_raw = obj.get("building") or []
    if not isinstance(building_raw, list) or len(building_raw) > 256:
        raise BadFrame("node.building: expected a list")
    building = []
    for b in building_raw:  # job ids, or maps carrying a "job" id; anything else is skipped
        if isinstance(b, dict):
            b = b.get("job")
        if isinstance(b, str) and _HEX.match(b.lower()):
            building.append(b.lower())
    return NodeInfo(
        peer_id=_str(obj.get("peer_id"), "node.peer_id"),
        addrs=_str_list(obj.get("addrs"), "node.addrs", limit=64),
        slots=_opt_int(obj.get("slots"), "node.slots"),
        busy=_opt_int(obj.get("busy"), "node.busy"),
        uptime_s=_opt_int(obj.get("uptime_s"), "node.uptime_s"),
        building=tuple(building),
        accepting=str(obj.get("accepting")) if obj.get("accepting") in ("open", "paused", "draining") else "open",
        paused_why=_str(obj.get("paused_why") or "", "node.paused_why"),
    )


@dataclass
class StatusModel:
    node: NodeInfo | None = None
    node_seen_at: int = 0  # our `now` when `node` arrived (for a live uptime)
    peers: tuple[Peer, ...] = ()
    jobs: dict[str, Job] = field(default_factory=dict)
    # job -> our `now` when a live event first showed it (jobs first seen in a status snapshot
    # have no known age unless the daemon sends `created`)
    first_seen: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)  # job -> arrival rank (higher = newer)
    next_seq: int = 0
    logs: dict[str, deque[str]] = field(default_factory=dict)  # job -> tail of this node's build log
    connected: bool = False
    error: str | None = None
    facts: str = ""  # the `facts` counters of a `status` reply, as one line ("" when absent)
    bad_frames: int = 0
    quota_dropped: dict[str, int] = field(default_factory=dict)
    filter: str | None = None

    # -- applying frames ---------------------------------------------------

    def apply_status(self, result: Any, now: int) -> bool:
        """Apply a `status` reply. False (and counted) if malformed."""
        try:
            if not isinstance(result, dict):
                raise BadFrame("status: expected a map")
            node = parse_node(result.get("node"))
            peers = parse_peers(result.get("peers") or [])
            raw_jobs = result.get("jobs") or []
            if not isinstance(raw_jobs, list):
                raise BadFrame("status.jobs: expected a list")
        except BadFrame:
            self.bad_frames += 1
            return False
        jobs = []
        for raw in raw_jobs[:MAX_JOBS]:  # one malformed job is dropped (and counted), not the reply
            try:
                jobs.append(parse_job(raw))
            except BadFrame:
                self.bad_frames += 1
        self.node, self.node_seen_at, self.peers = node, now, peers
        self.facts = facts_line(result.get("facts"))
        self.quota_dropped = parse_quota_dropped(result.get("quotas"))
        for j in reversed(jobs):  # the daemon lists newest first
            self._put_job(j, now, live=False)
        return True

    def apply_event(self, frame: Any, now: int) -> str | None:
        """Apply one subscription frame; returns its event name, or None if dropped."""
        try:
            if not isinstance(frame, dict):
                raise BadFrame("event: expected a map")
            kind = frame.get("event")
            if kind == "job":
                self._put_job(parse_job(frame.get("job")), now, live=True)
            elif kind == "peers":
                self.peers = parse_peers(frame.get("peers"))
            elif kind == "node":
                self.node, self.node_seen_at = parse_node(frame.get("node")), now
            elif kind == "log":
                job = _str(frame.get("job"), "log.job").lower()
                _str(frame.get("worker", ""), "log.worker")
                text = frame.get("text")
                if not isinstance(text, str):
                    raise BadFrame("log.text: expected str")
                tail = self.logs.get(job)
                if tail is None:
                    if len(self.logs) >= MAX_JOBS:
                        self.logs.pop(next(iter(self.logs)))
                    tail = self.logs[job] = deque(maxlen=LOG_LINES)
                if text:
                    tail.extend(safe_lines(text[: 64 * 1024].rstrip("\n")))
            elif isinstance(kind, str):
                return None  # an event kind we do not show: ignore, not an error
            else:
                raise BadFrame("event: missing event name")
            return str(kind)
        except BadFrame:
            self.bad_frames += 1
            return None

    def _put_job(self, job: Job, now: int, *, live: bool) -> None:
        if job.job not in self.jobs and len(self.jobs) >= MAX_JOBS:
            oldest = min(self.jobs, key=lambda k: self.seq.get(k, 0))
            del self.jobs[oldest]
            self.first_seen.pop(oldest, None)
            self.seq.pop(oldest, None)
        new = job.job not in self.jobs
        self.jobs[job.job] = job
        if new and live:
            self.first_seen[job.job] = now
        if job.job not in self.seq:
            self.next_seq += 1
            self.seq[job.job] = self.next_seq

    # -- views -------------------------------------------------------------

    def created_of(self, job: Job) -> int | None:
        """The offer's creation time if the daemon sent it, else when a live event first showed
        the job (published while we watch), else unknown."""
        return job.created if job.created is not None else self.first_seen.get(job.job)

    def visible_jobs(self) -> list[Job]:
        """Jobs passing the filter, newest first (ties: the daemon's order, then arrival)."""
        jobs = [j for j in self.jobs.values() if self.filter is None or j.verdict == self.filter]
        jobs.sort(key=lambda j: (-(self.created_of(j) or 0), -self.seq.get(j.job, 0), j.job))
        return jobs

    def cycle_filter(self) -> str | None:
        i = FILTERS.index(self.filter) if self.filter in FILTERS else 0
        self.filter = FILTERS[(i + 1) % len(FILTERS)]
        return self.filter

    def find(self, prefix: str) -> Job | None:
        matches = [j for k, j in self.jobs.items() if k.startswith(prefix.lower())]
        return matches[0] if len(matches) == 1 else None


# -- formatting (plain strings; the app adds colour) --------------------------


def short_id(hexid: str, n: int = 12) -> str:
    return hexid[:n]


def short_peer(peer_id: str) -> str:
    return peer_id if len(peer_id) <= 18 else f"{peer_id[:10]}…{peer_id[-6:]}"


def fmt_duration(seconds: int) -> str:
    seconds = max(0, seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def node_lines(model: StatusModel, now: int) -> list[str]:
    n = model.node
    if n is None:
        return ["(no node information yet)"]
    uptime = "?" if n.uptime_s is None else fmt_duration(n.uptime_s + (now - model.node_seen_at) // 1000)
    slots = "?" if n.slots is None else str(n.slots)
    busy = "?" if n.busy is None else str(n.busy)
    free = "?" if n.slots is None or n.busy is None else str(max(0, n.slots - n.busy))
    if n.slots == 0:
        slot_text = "none: observer, never builds (--no-build)"
    else:
        slot_text = f"{busy} busy / {free} free (of {slots})"
    lines = [
        f"peer ID  {n.peer_id}",
        f"listen   {', '.join(n.addrs) if n.addrs else '-'}",
        f"slots    {slot_text}    uptime {uptime}",
    ]
    if n.accepting != "open":
        lines.append(f"accepting no new work: {n.accepting}" + (f" ({n.paused_why})" if n.paused_why else ""))
    if n.building:
        lines.append("building " + ", ".join(short_id(b) for b in n.building))
    return lines


def peer_row(peer: Peer, now: int) -> tuple[str, str, str, str]:
    since = "?" if peer.connected_since is None else fmt_duration((now - peer.connected_since) // 1000) + " ago"
    return (short_peer(peer.peer_id), peer.via or "-", peer.addrs[0] if peer.addrs else "-", since)


JOB_COLUMNS = ("project", "job", "age", "replicas/quorum", "votes", "agree", "verdict")


def job_row(model: StatusModel, job: Job, now: int) -> tuple[str, str, str, str, str, str, str]:
    rq = f"{job.replicas if job.replicas is not None else '?'}/{job.quorum if job.quorum is not None else '?'}"
    created = model.created_of(job)
    age = "-" if created is None else fmt_duration((now - created) // 1000)
    return (job.project or "-", short_id(job.job), age, rq, str(job.votes), str(job.agree), job.verdict)


def detail_lines(model: StatusModel, job: Job, now: int | None = None) -> list[str]:
    """The job detail pane: what it builds, groups by digest, dissenters, equivocators, ignored
    votes, the publisher's select rounds, each worker's phase, the deadlines (relative to `now`
    when given) and whether this node holds every reveal the verdict needs."""
    lines = [
        f"job       {job.job}",
        f"project   {job.project or '-'}",
        f"verdict   {job.verdict}" + (f"  digest {job.digest}" if job.digest else ""),
        f"trust     replicas {job.replicas if job.replicas is not None else '?'}, "
        f"quorum {job.quorum if job.quorum is not None else '?'}, votes in {job.votes}",
        *expired_lines(job),
        *(f"{label:<9} {value}" for label, value in job.provenance),
        "",
        "groups (by result digest):" if job.groups else "groups: none yet",
    ]
    for g in job.groups:
        code = "?" if g.exit_code is None else str(g.exit_code)
        lines.append(f"  {short_id(g.digest, 16)}  exit {code}  {len(g.workers)} vote(s)")
        lines.extend(f"      {w}" for w in g.workers)
    for title, items in (("dissenters", job.dissenters), ("equivocators", job.equivocators)):
        lines.append(f"{title}: " + ("none" if not items else ""))
        lines.extend(f"  {w}" for w in items)
    lines.append("ignored votes: " + ("none" if not job.ignored else ""))
    lines.extend(f"  {w}: {reason}" for w, reason in job.ignored)
    lines.extend(round_lines(job, now))
    lines.extend(phase_lines(model, job))
    lines.extend(deadline_lines(job, now))
    lines.extend(evidence_lines(job))
    if job.hidden:
        lines.append(f"(and {job.hidden} more entries not shown: `p2pci show {short_id(job.job)} --json` has them all)")
    if job.verdict == "DISPUTED":
        lines.append(f"why: `p2pci diff {short_id(job.job)}` compares one result per group (diffoscope)")
    elif job.verdict == "REPRODUCED":
        lines.append(f"artifacts: `p2pci fetch {short_id(job.job)} --out DIR` (checked against the manifest)")
    me = model.node
    if me is not None and job.job in me.building:
        lines.append("this node: building (its output streams into the log below)")
    elif me is not None and any(me.peer_id in g.workers for g in job.groups):
        lines.append("this node: built and voted")
    return lines


def fmt_clock(ms: int) -> str:
    """An absolute time as HH:MM:SS UTC (a date first when it is not today's is not needed: jobs
    last at most days, and `show` prints the full date)."""
    import datetime

    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


def fmt_relative(ms: int, now: int | None) -> str:
    """ "14:02:05 UTC (in 3s)" / "(1m05s ago)"; without `now`, the clock time only."""
    text = f"{fmt_clock(ms)} UTC"
    if now is None:
        return text
    delta = (ms - now) // 1000
    return text + (f" (in {fmt_duration(delta)})" if delta > 0 else f" ({fmt_duration(-delta)} ago)")


def round_lines(job: Job, now: int | None) -> list[str]:
    """Issue 13: the workers each valid select round named, and the select facts not counted."""
    lines = ["selection: " + ("no select round yet" if not job.rounds else "")]
    for r in job.rounds:
        when = "" if r.created is None else f" at {fmt_clock(r.created)} UTC"
        lines.append(f"  round {r.round}{when}: selected {len(r.workers)}")
        lines.extend(f"      {w}" for w in r.workers)
    for rnd, signer, reason in job.ignored_selects:
        lines.append(f"  ignored select (round {rnd}) by {short_peer(signer)}: {reason}")
    return lines


PHASE_WORDS = {
    "claimed": "claimed",
    "selected": "selected, building",
    "dropped": "dropped by a later round",
    "committed": "committed",
    "revealed": "revealed",
    "declined": "declined",
    "timed_out": "timed out",
}


def phase_word(model: StatusModel, job: Job, row: WorkerRow) -> str:
    """A worker's phase in words; this node's own row says "building" only while it builds."""
    me = model.node
    if me is not None and row.peer == me.peer_id:
        if job.job in me.building:
            return "building (this node)"
        if row.phase == "selected":
            return "selected (this node; not building yet)"
    return PHASE_WORDS.get(row.phase, f"? {row.phase}")


def expired_lines(job: Job) -> list[str]:
    """Why an EXPIRED job expired (issue 16): the verdict's reason and its cause."""
    if job.verdict != "EXPIRED":
        return []
    return [*([f"expired:  {job.reason}"] if job.reason else []), *([f"cause:    {job.cause}"] if job.cause else [])]


def phase_lines(model: StatusModel, job: Job) -> list[str]:
    """Per worker: claimed / selected / building / committed / revealed / declined (why) / timed
    out (issue 16)."""
    lines = ["workers: " + ("none yet" if not job.phases else "")]
    for row in job.phases:
        text = f"  {short_peer(row.peer)}  {phase_word(model, job, row)}" + (f" ({row.why})" if row.why else "")
        if row.log:
            text += f"  log {row.log[:16]}"
        lines.append(text)
    return lines


def deadline_lines(job: Job, now: int | None) -> list[str]:
    if not job.deadlines:
        return []
    return ["deadlines:", *(f"  {label:<18}{fmt_relative(ms, now)}" for label, ms in job.deadlines)]


def evidence_lines(job: Job) -> list[str]:
    """Issue 13: does this node hold every reveal the verdict needs (what `export` + `verify` would
    call a complete bundle: a valid select round, and a reveal from every selected worker that owes one)?"""
    if not job.rounds:
        if job.verdict == "PENDING":
            return ["evidence: waiting for the publisher's select round"]
        return ["evidence: incomplete (no valid select round: no vote can count)"]
    if not job.missing:
        return ["evidence: complete (every selected worker that owes a reveal has revealed here)"]
    state = "waiting for" if job.verdict == "PENDING" else "incomplete: missing"
    return [f"evidence: {state} {len(job.missing)} reveal(s) of selected workers",
            *(f"  {w}" for w in job.missing)]


_REASON = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 63 else 0


def _by_reason(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "0"
    items = sorted((k, _count(v)) for k, v in list(obj.items())[:32] if isinstance(k, str) and _REASON.fullmatch(k))
    total = sum(n for _, n in items)
    return f"{total} ({', '.join(f'{k} {n}' for k, n in items)})" if items else "0"


def facts_line(obj: Any) -> str:
    """The `facts` counters of a `status` reply in one line (bounded, safe); "" when absent."""
    if not isinstance(obj, dict):
        return ""
    return (
        f"received {_count(obj.get('received'))}  new {_count(obj.get('new'))}  "
        f"duplicate {_count(obj.get('duplicate'))}  rejected {_by_reason(obj.get('rejected'))}  "
        f"dropped {_by_reason(obj.get('dropped'))}"
    )


def snapshot_text(model: StatusModel, now: int) -> str:
    """The `p2pci status --once` output: plain text, stable column order."""
    out = ["== this node", *node_lines(model, now)]
    if model.facts:
        out.append(f"facts from peers: {model.facts}")
    out += ["", f"== peers ({len(model.peers)})"]
    for p in model.peers:
        out.append("  ".join(peer_row(p, now)))
    jobs = model.visible_jobs()
    out += ["", f"== jobs ({len(jobs)})"]
    if jobs:
        rows = [JOB_COLUMNS, *(job_row(model, j, now) for j in jobs)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(JOB_COLUMNS))]
        for r in rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    dropped = model.quota_dropped
    if any(dropped.values()):
        out += ["", "== quotas (facts dropped or refused before storage, jobs evicted from the board)"]
        out += [f"  {reason}  {n}" for reason, n in dropped.items() if n]
    if model.bad_frames:
        out += ["", f"(dropped {model.bad_frames} malformed frame(s) from the daemon)"]
    return "\n".join(out) + "\n"


def parse_quota_dropped(raw: Any) -> dict[str, int]:
    """`status.quotas.dropped`, `.refused` and `.evicted` as {"<verb> <reason>": count}; anything
    malformed is ignored, never fatal."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, int] = {}
    for section, verb in (("dropped", "dropped"), ("refused", "refused"), ("evicted", "evicted")):
        part = raw.get(section)
        if not isinstance(part, dict):
            continue
        for reason, n in list(part.items())[:16]:
            if isinstance(reason, str) and type(n) is int and n >= 0 and reason.isidentifier():
                out[f"{verb} {reason[:32]}"] = n
    return out
