"""SQLite store of facts and small node state (docs/internals.md "p2pci.store").

One file, `state.sqlite`, in WAL mode. `put` commits before it returns, so
a fact the daemon has acted on (or acknowledged) survives `kill -9`.
Blocking: call it from trio through `trio.to_thread.run_sync` (except
`put_many_now`, which never waits: it writes a few facts only when the lock is
free and never checkpoints); a lock makes the one connection safe to use from
any thread.

Tables:

* ``facts(id PRIMARY KEY, job, kind, signer, raw, received_at)``: the board.
* ``pins(job PRIMARY KEY)``: jobs retention never prunes (exported, our own).
* ``kv(key PRIMARY KEY, value)``: small node state as msgpack (trust set,
  the worker's salts and results so a restarted worker can still reveal).
* ``blob_refs(sha, job, role, served, at)``: why a blob is in this node's store
  (`p2pci.daemon.gc` keeps it while its job needs it; the blob server serves it
  only under the access rule of a job it is tied to with ``served = 1``).
  Rows are written only for blobs this node made or fetched for that job, never
  from what a peer claims: a hostile offer naming someone else's hash ties nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from p2pci.core.errors import LocalError
from p2pci.core.signing import Fact, open_envelope

if TYPE_CHECKING:
    from p2pci.core.board import Board

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id BLOB PRIMARY KEY,
    job BLOB NOT NULL,
    kind TEXT NOT NULL,
    signer BLOB NOT NULL,
    raw BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS facts_job ON facts(job);
CREATE TABLE IF NOT EXISTS pins (job BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blob_refs (
    sha BLOB NOT NULL,
    job BLOB NOT NULL,
    role TEXT NOT NULL,
    served INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (sha, job, role)
);
CREATE INDEX IF NOT EXISTS blob_refs_job ON blob_refs(job);
"""


AUTOCHECKPOINT = 1000  # SQLite's default WAL autocheckpoint (pages), set again after put_many_now
NOW_MAX = 8  # the most facts put_many_now commits on the caller's thread
NOW_COMMITS = 64  # put_many_now commits between two put_many (which may checkpoint the WAL)


class FactStore:
    """Facts and node state in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LocalError(f"cannot open the store {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._since_thread = 0  # put_many_now commits since the last put_many

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> FactStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- facts

    def put(self, fact: Fact, received_at: int) -> bool:
        """Store one verified fact; True if it was new. Committed when this returns."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO facts(id, job, kind, signer, raw, received_at) VALUES (?,?,?,?,?,?)",
                (fact.id, fact.job, fact.kind, fact.signer, fact.raw, received_at),
            )
            return cur.rowcount == 1

    def put_many(self, facts: Iterable[tuple[Fact, int]]) -> int:
        """Store many facts in one transaction; returns how many were new."""
        with self._lock:
            self._since_thread = 0
            return self._put_rows(facts)

    def _put_rows(self, facts: Iterable[tuple[Fact, int]]) -> int:
        """One transaction of facts (the caller holds the lock); how many were new."""
        return self._many(
            "INSERT OR IGNORE INTO facts(id, job, kind, signer, raw, received_at) VALUES (?,?,?,?,?,?)",
            [(f.id, f.job, f.kind, f.signer, f.raw, t) for f, t in facts],
        )

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """`sql` for each row in one transaction (the caller holds the lock): every row or, when
        anything fails (a row that cannot be bound, a full disk at the commit), none, and the
        connection left out of the transaction. How many rows changed."""
        db = self._db
        before = db.total_changes
        db.execute("BEGIN")
        try:
            db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    def put_many_now(self, facts: list[tuple[Fact, int]]) -> int | None:
        """`put_many` for the event loop: None (nothing written) unless it is cheap and cannot wait.

        Written only when no other thread holds the connection and the batch has at most
        `NOW_MAX` facts; the commit never runs a WAL checkpoint (the one step of a commit that
        syncs the disk: autocheckpoint is off for it), and every `NOW_COMMITS`-th call returns None
        so that the caller's `put_many` in a thread checkpoints the WAL as usual (SQLite's
        autocheckpoint at 1000 pages; the WAL grows past that by at most `NOW_COMMITS` small
        commits). A commit of one fact takes ~15 us; a thread hop costs more than that.
        """
        if len(facts) > NOW_MAX or self._since_thread >= NOW_COMMITS:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._since_thread += 1
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            try:
                return self._put_rows(facts)
            finally:
                self._db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}")
        finally:
            self._lock.release()

    def has(self, fact_id: bytes) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM facts WHERE id=?", (fact_id,)).fetchone() is not None

    def get(self, fact_id: bytes) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT raw FROM facts WHERE id=?", (fact_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def count(self) -> int:
        with self._lock:
            n: int = self._db.execute("SELECT count(*) FROM facts").fetchone()[0]
        return n

    def _iter_rows(self, where: str = "", args: tuple[Any, ...] = ()) -> Iterator[tuple[bytes, int]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT raw, received_at FROM facts {where} ORDER BY rowid", args
            ).fetchall()
        for raw, t in rows:
            yield bytes(raw), int(t)

    def iter_facts(self) -> Iterator[tuple[Fact, int]]:
        """Every stored fact (re-verified) with its receive time, in arrival order.

        Arrival order matters to the board's `seen` bookkeeping (commits held
        before the first reveal), so a reloaded board matches the one before.

        A row that no longer verifies (disk corruption, a bug) is skipped.
        """
        for raw, t in self._iter_rows():
            try:
                yield open_envelope(raw), t
            except Exception:
                continue

    def load_into(self, board: Board) -> int:
        """Add every stored fact to `board`; returns how many it accepted as new."""
        n = 0
        for fact, _t in self.iter_facts():
            if board.add_fact(fact):
                n += 1
        return n

    def facts_of(self, job: bytes) -> list[Fact]:
        out = []
        for raw, _t in self._iter_rows("WHERE job=?", (job,)):
            try:
                out.append(open_envelope(raw))
            except Exception:
                continue
        return out

    def received_at(self, fact_id: bytes) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT received_at FROM facts WHERE id=?", (fact_id,)).fetchone()
        return None if row is None else int(row[0])

    # -------------------------------------------------------------- retention

    def pin(self, job: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO pins(job) VALUES (?)", (job,))

    def pinned(self) -> set[bytes]:
        with self._lock:
            return {bytes(r[0]) for r in self._db.execute("SELECT job FROM pins")}

    def evict(self, jobs: Iterable[bytes]) -> int:
        """Delete every fact of `jobs` (quota eviction), pinned jobs excepted; how many were deleted."""
        doomed = [(j,) for j in jobs]
        if not doomed:
            return 0
        with self._lock:
            return self._many("DELETE FROM facts WHERE job=? AND job NOT IN (SELECT job FROM pins)", doomed)

    def prune(self, before: int, keep: Iterable[bytes] = ()) -> int:
        """Delete the facts of jobs whose newest fact arrived before `before`.

        Pinned jobs and jobs in `keep` are kept. The caller decides which
        jobs are finished (it passes the live ones in `keep`). Returns the
        number of facts deleted.
        """
        keep_set = set(keep)
        with self._lock:
            rows = self._db.execute(
                "SELECT job FROM facts GROUP BY job HAVING max(received_at) < ?", (before,)
            ).fetchall()
            pins = {bytes(r[0]) for r in self._db.execute("SELECT job FROM pins")}
            doomed = [bytes(r[0]) for r in rows if bytes(r[0]) not in keep_set and bytes(r[0]) not in pins]
            if not doomed:
                return 0
            return self._many("DELETE FROM facts WHERE job=?", [(j,) for j in doomed])

    # -------------------------------------------------------------- blob references

    def tie(self, job: bytes, refs: Iterable[tuple[bytes, str]], *, served: bool, at: int) -> None:
        """Record that the blobs `refs` ((sha256, role) pairs) are here for `job`.

        `served`: the blob server may serve them under the job's access rule (a worker's
        outputs are tied unserved when built and served from the reveal on). An existing
        row is only ever widened to served, never narrowed."""
        rows = [(bytes(sha), bytes(job), role, int(served), at) for sha, role in refs]
        if not rows:
            return
        with self._lock:
            self._many(
                "INSERT INTO blob_refs(sha, job, role, served, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(sha, job, role) DO UPDATE SET served = max(served, excluded.served)",
                rows,
            )

    def serve_job_blobs(self, job: bytes) -> int:
        """Mark every blob tied to `job` as served (the worker has revealed); how many rows."""
        with self._lock:
            cur = self._db.execute("UPDATE blob_refs SET served = 1 WHERE job = ? AND served = 0", (job,))
            return cur.rowcount

    def blob_jobs(self, sha: bytes) -> list[tuple[bytes, str, bool]]:
        """(job, role, served) for every tie of the blob `sha`."""
        with self._lock:
            rows = self._db.execute("SELECT job, role, served FROM blob_refs WHERE sha = ?", (sha,)).fetchall()
        return [(bytes(j), str(r), bool(s)) for j, r, s in rows]

    def blob_refs(self) -> list[tuple[bytes, bytes, str, bool, int]]:
        """Every tie: (sha, job, role, served, at)."""
        with self._lock:
            rows = self._db.execute("SELECT sha, job, role, served, at FROM blob_refs").fetchall()
        return [(bytes(s), bytes(j), str(r), bool(v), int(t)) for s, j, r, v, t in rows]

    def untie_jobs(self, jobs: Iterable[bytes]) -> int:
        """Forget every tie of `jobs` (garbage collection dropped them); how many rows."""
        doomed = [(bytes(j),) for j in jobs]
        if not doomed:
            return 0
        with self._lock:
            return self._many("DELETE FROM blob_refs WHERE job = ?", doomed)

    def last_activity(self) -> dict[bytes, int]:
        """job -> when its newest fact arrived (ms), for every job with facts on disk."""
        with self._lock:
            rows = self._db.execute("SELECT job, max(received_at) FROM facts GROUP BY job").fetchall()
        return {bytes(j): int(t) for j, t in rows}

    # -------------------------------------------------------------- kv

    def kv_get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            return default
        return msgpack.unpackb(bytes(row[0]), raw=False, strict_map_key=False)

    def kv_put(self, key: str, value: Any) -> None:
        data = msgpack.packb(value, use_bin_type=True)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, data))

    def kv_delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE key=?", (key,))

    def kv_items(self, prefix: str) -> list[tuple[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
            ).fetchall()
        return [(k, msgpack.unpackb(bytes(v), raw=False, strict_map_key=False)) for k, v in rows]
