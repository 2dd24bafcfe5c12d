"""SQLite state: incidents and their timelines, results history, the outbox.

One file in WAL mode, so the CLI can read while the daemon writes. Every change to an
incident is written in the same transaction as the outbox rows it causes: a crash
loses neither, and a restart resumes the deliveries that were pending.

A delivery is two-phase: a durable "attempting" mark is committed before the call to
the helpdesk or pager, and the outcome after it. An outcome that cannot be written (a
full volume) is kept in memory, its action is not handed out again, and it is written
when the file takes writes again. Failed writes are counted and reported (``writable``,
``write_problem``), logged at most once a minute.

The file is checked read-only before it is opened (``watcher.statefile``): a file that
is not watcher's, is newer, or is damaged is refused untouched.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from probes.base import Result
from watcher.engine.incident import Event, Incident
from watcher.statefile import APPLICATION_ID, StateFileError, check_state_file

__all__ = [
    "Store",
    "OutboxRow",
    "Outcome",
    "Point",
    "SCHEMA_VERSION",
    "ROLLUP_DELAY",
    "StateFileError",
    "StateWriteError",
]

log = logging.getLogger("watcher.store")

MIGRATIONS: list[str] = [
    # 1: the spine
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        priority TEXT,
        target TEXT NOT NULL,
        grp TEXT NOT NULL,
        opened_at TEXT,
        acknowledged_at TEXT,
        resolved_at TEXT,
        updated_at TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX incidents_fingerprint ON incidents (fingerprint, id);
    CREATE INDEX incidents_state ON incidents (state);
    CREATE INDEX incidents_opened ON incidents (opened_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    );
    CREATE INDEX events_incident ON events (incident_id, id);
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        target TEXT NOT NULL,
        probe TEXT NOT NULL,
        item TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        metrics TEXT NOT NULL,
        duration REAL NOT NULL
    );
    CREATE INDEX results_check ON results (target, probe, item, at);
    CREATE INDEX results_at ON results (at);
    CREATE TABLE latest (
        target TEXT NOT NULL,
        probe TEXT NOT NULL,
        item TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (target, probe, item)
    );
    CREATE TABLE rollup (
        resolution INTEGER NOT NULL,
        bucket INTEGER NOT NULL,
        target TEXT NOT NULL,
        probe TEXT NOT NULL,
        item TEXT NOT NULL,
        metric TEXT NOT NULL,
        n INTEGER NOT NULL,
        total REAL NOT NULL,
        lo REAL NOT NULL,
        hi REAL NOT NULL,
        PRIMARY KEY (resolution, target, probe, item, metric, bucket)
    );
    CREATE INDEX rollup_bucket ON rollup (resolution, bucket);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        integration TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        due_at REAL NOT NULL,
        last_error TEXT,
        done_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox (state, due_at);
    CREATE INDEX outbox_incident ON outbox (incident_id, integration, id);
    CREATE TABLE tickets (
        incident_id INTEGER NOT NULL,
        integration TEXT NOT NULL,
        external_id TEXT NOT NULL,
        url TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (incident_id, integration)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        incident_id INTEGER NOT NULL,
        requested_by TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        done_at TEXT,
        outcome TEXT
    );
    """,
    # 2: which kind of probe wrote each series, kept as long as its summaries, so the
    # audits find disk and load history after the raw results that named it are gone
    """
    CREATE TABLE IF NOT EXISTS checks (
        target TEXT NOT NULL,
        probe TEXT NOT NULL,
        item TEXT NOT NULL,
        kind TEXT NOT NULL,
        last_at REAL NOT NULL,
        PRIMARY KEY (target, probe, item)
    );
    """,
    # 3: pushed heartbeats (checkins:): what each job last said and when (watcher/web/checkins.py)
    """
    CREATE TABLE IF NOT EXISTS checkins (
        name TEXT PRIMARY KEY,
        first_seen TEXT NOT NULL,
        last_ok_at TEXT,
        last_fail_at TEXT,
        exit_code INTEGER,
        note TEXT NOT NULL DEFAULT '',
        pings INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 4: maintenance windows added with `watcher maintenance add` or the HTTP API
    # (watcher/engine/maintenance.py); removed ones stay, stamped, for the record
    """
    CREATE TABLE IF NOT EXISTS maintenance (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        removed_at TEXT,
        removed_by TEXT
    );
    """,
    # 5: when the watcher came back from being down while a heartbeat was due
    # (watcher/web/checkins.py)
    """
    ALTER TABLE checkins ADD COLUMN resumed_at TEXT;
    """,
    # 6: two-phase delivery: when the attempt in flight began (NULL when none is), and how
    # many attempts a stopped watcher left without an outcome (watcher/delivery/outbox.py)
    """
    ALTER TABLE outbox ADD COLUMN attempt_started REAL;
    ALTER TABLE outbox ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


HOUR = 3600
DAY = 86400
# How long after an hour ends its results are rolled up: results are stamped when the
# probe starts and stored when it finishes, at most a timeout later.
ROLLUP_DELAY = timedelta(minutes=15)
# How often a state file that cannot be written is logged while it stays so.
WRITE_PROBLEM_LOG_EVERY = 60.0
# SQLite primary result codes that mean the file cannot take writes (not a bug in a query):
# PERM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_UNWRITABLE = {3, 8, 10, 11, 13, 14, 26}


class StateWriteError(sqlite3.OperationalError):
    """A write to the state file failed because of the file or its volume (full, read-only,
    I/O error). The store has counted and reported it; callers retry later."""


class Point(NamedTuple):
    """A moment of a series: one raw result (``span`` 0) or an hourly or daily summary
    starting at ``at`` and covering ``span`` seconds of ``n`` results."""

    at: datetime
    mean: float
    lo: float
    hi: float
    item: str
    n: int = 1
    span: float = 0.0

    @property
    def middle(self) -> datetime:
        return self.at + timedelta(seconds=self.span / 2)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class OutboxRow:
    id: int
    incident_id: int
    integration: str
    role: str
    action: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: str
    due_at: float
    last_error: str | None
    done_at: str | None
    attempt_started: float | None = None  # set: an attempt began and has no outcome yet
    interrupted: int = 0  # attempts a stopped watcher left without an outcome


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery attempt, to be written to the outbox row: ``done``,
    ``failed``, or ``pending`` again (a retry at ``due``); with the ticket it opened or
    found, if any (external id, url)."""

    action_id: int
    state: str
    at: datetime
    error: str | None = None
    due: datetime | None = None
    ticket: tuple[int, str, str, str | None] | None = None  # incident, integration, id, url


class Store:
    """The watcher's state file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            # Before anything writes to it: a refused file stays exactly as it was.
            check_state_file(self.path, SCHEMA_VERSION)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.writes = 0  # rows written, for the scale benchmark and /metrics
        self.write_failures = 0  # writes the file or its volume refused
        self._write_problem: str | None = None
        # A volume that is nearly full can take one write and refuse the next: the line is
        # kept to one a minute across such flickers, and a recovery is told only after a
        # problem was.
        self._problem_logged = float("-inf")
        self._problem_told = False
        # Delivery attempts in flight in this process, and outcomes not yet written: the
        # actions of both are not handed out again, so nothing is sent twice.
        self._in_flight: set[int] = set()
        self._unrecorded: dict[int, Outcome] = {}
        try:
            self._db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; only a power cut can lose the
            # last commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _unwritable(exc):
                raise
            raise StateFileError(
                f"state file {self.path} cannot be opened ({exc}); free space or fix its"
                " permissions, or if it is damaged restore it from a backup or move it aside"
                " (open tickets are adopted by fingerprint from the helpdesks that can be"
                " searched)"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._unrecorded:
                log.error(
                    "state file %s: %d delivery outcomes could not be written; after the"
                    " restart those actions are sent once more, with the same delivery ids",
                    self.path,
                    len(self._unrecorded),
                )
            self._db.close()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateFileError(
                    f"state file {self.path} was written by a newer watcher (schema {version},"
                    f" this one knows {SCHEMA_VERSION}); run the newer watcher, or point"
                    " state: at another file"
                )
            stamped = self._db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            for number in range(version, SCHEMA_VERSION):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number + 1}")
                    self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                stamped = True
            if not stamped:  # a state file from before watcher marked its files
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")

    # ------------------------------------------------------------ write health

    @property
    def writable(self) -> bool:
        """False while the last write to the file failed for the file's sake (full volume,
        read-only, I/O error); true again after the next write that succeeds."""
        return self._write_problem is None

    @property
    def write_problem(self) -> str | None:
        """Why the file cannot be written now, or None."""
        return self._write_problem

    def _write_failed(self, exc: sqlite3.Error) -> None:
        self.write_failures += 1
        self._write_problem = str(exc) or type(exc).__name__
        now = time.monotonic()
        if now - self._problem_logged >= WRITE_PROBLEM_LOG_EVERY:
            self._problem_logged = now
            self._problem_told = True
            log.error(
                "state file %s cannot be written (%s; %d failed writes): deliveries wait,"
                " outcomes already delivered are kept in memory and nothing is sent twice;"
                " free space on its volume or fix it",
                self.path,
                self._write_problem,
                self.write_failures,
            )

    def _write_succeeded(self) -> None:
        if self._write_problem is not None:
            self._write_problem = None
            if not self._problem_told:
                return
            self._problem_told = False
            log.warning(
                "state file %s takes writes again (%d writes had failed)",
                self.path,
                self.write_failures,
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; commits on success, rolls back on any exception.
        A write the file or its volume refuses raises StateWriteError (counted, reported)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (a full volume) can leave the transaction open: the
                    # next BEGIN would fail for good.
                    if self._db.in_transaction:
                        with suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if not _unwritable(exc):
                    raise
                self._write_failed(exc)
                raise StateWriteError(str(exc)) from exc
            self._write_succeeded()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # ------------------------------------------------------------------ incidents

    def save_incident(self, db: sqlite3.Connection, incident: Incident, now: datetime) -> int:
        incident.updated_at = now
        row = (
            incident.fingerprint,
            incident.state,
            incident.priority,
            incident.target,
            incident.group,
            _iso(incident.opened_at),
            _iso(incident.acknowledged_at),
            _iso(incident.resolved_at),
            now.isoformat(),
        )
        if incident.id is None:
            cursor = db.execute(
                "INSERT INTO incidents (fingerprint, state, priority, target, grp, opened_at, acknowledged_at,"
                " resolved_at, updated_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                row,
            )
            incident.id = int(cursor.lastrowid or 0)
        db.execute(
            "UPDATE incidents SET fingerprint=?, state=?, priority=?, target=?, grp=?, opened_at=?,"
            " acknowledged_at=?, resolved_at=?, updated_at=?, data=? WHERE id=?",
            (*row, json.dumps(incident.to_dict()), incident.id),
        )
        self.writes += 1
        return incident.id

    def delete_incident(self, db: sqlite3.Connection, incident_id: int) -> None:
        db.execute("DELETE FROM events WHERE incident_id=?", (incident_id,))
        db.execute("DELETE FROM incidents WHERE id=?", (incident_id,))
        self.writes += 1

    def add_events(self, db: sqlite3.Connection, incident_id: int, events: Iterable[Event]) -> None:
        rows = [
            (
                incident_id,
                e.at.isoformat(),
                e.kind,
                e.message,
                json.dumps(e.data) if e.data else None,
            )
            for e in events
        ]
        if rows:
            db.executemany(
                "INSERT INTO events (incident_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self.writes += len(rows)

    def incident(self, incident_id: int) -> Incident | None:
        rows = self.query("SELECT data FROM incidents WHERE id=?", (incident_id,))
        return Incident.from_dict(json.loads(rows[0]["data"])) if rows else None

    def incidents(
        self,
        *,
        states: Iterable[str] | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[Incident]:
        sql = "SELECT data FROM incidents"
        clauses: list[str] = []
        params: list[Any] = []
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if since is not None:
            clauses.append("(resolved_at IS NULL OR resolved_at >= ?)")
            params.append(since.isoformat())
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [Incident.from_dict(json.loads(r["data"])) for r in self.query(sql, params)]

    def incidents_between(self, start: datetime, end: datetime) -> list[Incident]:
        """Incidents opened in [start, end), for reports."""
        rows = self.query(
            "SELECT data FROM incidents WHERE opened_at >= ? AND opened_at < ? ORDER BY opened_at",
            (start.isoformat(), end.isoformat()),
        )
        return [Incident.from_dict(json.loads(r["data"])) for r in rows]

    def working_set(self, reopen_within: timedelta, now: datetime) -> dict[str, Incident]:
        """The newest incident per fingerprint that can still change: active, pending,
        or resolved recently enough to reopen."""
        since = (now - reopen_within).isoformat()
        rows = self.query(
            "SELECT data FROM incidents WHERE id IN (SELECT max(id) FROM incidents GROUP BY fingerprint)"
            " AND (state != 'resolved' OR resolved_at >= ?)",
            (since,),
        )
        out = {}
        for row in rows:
            incident = Incident.from_dict(json.loads(row["data"]))
            out[incident.fingerprint] = incident
        return out

    def events(self, incident_id: int, limit: int = 200) -> list[Event]:
        rows = self.query(
            "SELECT at, kind, message, data FROM events WHERE incident_id=? ORDER BY id DESC LIMIT ?",
            (incident_id, limit),
        )
        return [
            Event(
                r["kind"],
                r["message"],
                datetime.fromisoformat(r["at"]),
                json.loads(r["data"]) if r["data"] else {},
            )
            for r in reversed(rows)
        ]

    # -------------------------------------------------------------------- results

    def save_results(self, db: sqlite3.Connection, results: Iterable[Result]) -> None:
        history = []
        latest = []
        for r in results:
            history.append(
                (
                    r.at.timestamp(),
                    r.target,
                    r.probe,
                    r.item,
                    r.kind,
                    r.status,
                    r.reason,
                    r.message,
                    json.dumps(r.metrics),
                    r.duration_s,
                )
            )
            latest.append((r.target, r.probe, r.item, json.dumps(r.to_dict())))
        if history:
            db.executemany(
                "INSERT INTO results (at, target, probe, item, kind, status, reason, message, metrics, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                history,
            )
            db.executemany(
                "INSERT OR REPLACE INTO latest (target, probe, item, data) VALUES (?, ?, ?, ?)",
                latest,
            )
            self.writes += 2 * len(history)

    def forget_latest(self, db: sqlite3.Connection, keys: Iterable[tuple[str, str, str]]) -> None:
        """Drops latest results that no longer stand (their history stays)."""
        db.executemany("DELETE FROM latest WHERE target=? AND probe=? AND item=?", list(keys))

    def latest(self, target: str | None = None) -> list[Result]:
        if target is None:
            rows = self.query("SELECT data FROM latest ORDER BY target, probe, item")
        else:
            rows = self.query(
                "SELECT data FROM latest WHERE target=? ORDER BY probe, item", (target,)
            )
        return [Result.from_dict(json.loads(r["data"])) for r in rows]

    def recent_results(
        self, target: str, probe: str, item: str, limit: int = 10
    ) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT at, status, reason, message, metrics FROM results WHERE target=? AND probe=? AND item=?"
            " ORDER BY at DESC LIMIT ?",
            (target, probe, item, limit),
        )
        return [
            {
                "at": datetime.fromtimestamp(r["at"], UTC),
                "status": r["status"],
                "reason": r["reason"],
                "message": r["message"],
                "metrics": json.loads(r["metrics"]),
            }
            for r in reversed(rows)
        ]

    def compact(
        self, now: datetime, *, raw: timedelta, hourly: timedelta, daily: timedelta
    ) -> None:
        """Rolls complete hours of raw results into hourly summaries and complete days of
        those into daily ones, then drops what is past its retention.

        An hour is rolled once it ended ``ROLLUP_DELAY`` ago, so a result stamped when its
        probe started but stored when it finished still counts. Nothing is dropped before
        it is rolled, whatever the retention says, so the history has no holes.
        """
        now_s = now.timestamp()
        hour_end = _floor(now_s - ROLLUP_DELAY.total_seconds(), HOUR)
        day_end = _floor(hour_end, DAY)
        with self.transaction() as db:
            rolled = float(self._meta(db, "rolled_hourly", "0"))
            if not rolled:
                oldest = db.execute("SELECT min(at) FROM results").fetchone()[0]
                rolled = _floor(oldest, HOUR) if oldest is not None else hour_end
            if rolled < hour_end:
                _rollup_raw(db, rolled, hour_end)
                _catalog(db, rolled, hour_end)
                self._set_meta(db, "rolled_hourly", str(hour_end))
                rolled = hour_end
            rolled_days = float(self._meta(db, "rolled_daily", "0"))
            if not rolled_days:
                oldest = db.execute(
                    "SELECT min(bucket) FROM rollup WHERE resolution=3600"
                ).fetchone()[0]
                rolled_days = _floor(oldest, DAY) if oldest is not None else day_end
            if rolled_days < day_end:
                db.execute(
                    "INSERT OR REPLACE INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
                    " SELECT 86400, (bucket / 86400) * 86400, target, probe, item, metric, sum(n), sum(total),"
                    " min(lo), max(hi) FROM rollup WHERE resolution=3600 AND bucket >= ? AND bucket < ?"
                    " GROUP BY 2, target, probe, item, metric",
                    (rolled_days, day_end),
                )
                self._set_meta(db, "rolled_daily", str(day_end))
                rolled_days = day_end
            db.execute(
                "DELETE FROM results WHERE at < ?", (min(now_s - raw.total_seconds(), rolled),)
            )
            db.execute(
                "DELETE FROM rollup WHERE resolution=3600 AND bucket < ?",
                (min(now_s - hourly.total_seconds(), rolled_days),),
            )
            db.execute(
                "DELETE FROM rollup WHERE resolution=86400 AND bucket < ?",
                (now_s - daily.total_seconds(),),
            )
            db.execute(
                "DELETE FROM checks WHERE last_at < ?",
                (now_s - max(raw, hourly, daily).total_seconds(),),
            )
            db.execute(
                "DELETE FROM latest WHERE rowid IN (SELECT latest.rowid FROM latest"
                " WHERE json_extract(data, '$.at') < ?)",
                ((now - max(raw, timedelta(days=1))).isoformat(),),
            )
            # A delivered action's payload (the whole rendered ticket, ~7 KB) goes with the
            # raw results; its row stays as the record of the delivery.
            db.execute(
                "UPDATE outbox SET payload='{}' WHERE state='done' AND due_at < ? AND payload != '{}'",
                (now_s - raw.total_seconds(),),
            )

    def series(
        self,
        target: str,
        probe: str,
        metric: str,
        start: datetime,
        end: datetime,
        *,
        item: str | None = None,
        hourly: bool = False,
    ) -> list[Point]:
        """One metric's points in [start, end) from the finest data kept: raw results where
        they still exist, hourly summaries before those, daily ones before those, never two
        resolutions for the same stretch of one item. ``_up`` is 1 for ok, 0 otherwise.
        ``hourly``: raw results come summarised per hour too (cheaper for long periods).

        A summary belongs to the period if its middle does. Sorted by time, then item.
        """
        s, e = start.timestamp(), end.timestamp()
        item_sql, item_args = ("AND item=?", [item]) if item is not None else ("", [])
        if metric == "_up":
            value_sql, value_args = "status = 'ok'", []
        else:
            value_sql, value_args = "json_extract(metrics, ?)", [f'$."{metric}"']
        raw = f"SELECT at, {value_sql} AS v, item FROM results WHERE target=? AND probe=? {item_sql} AND at>=? AND at<?"
        args = [*value_args, target, probe, *item_args, s, e]
        points: list[Point] = []
        covered_from: dict[str, float] = {}
        if hourly:
            rows = self.query(
                f"SELECT CAST(at / 3600 AS INTEGER) * 3600 AS b, min(at) AS first, count(*) AS n, sum(v) AS total,"
                f" min(v) AS lo, max(v) AS hi, item FROM ({raw}) WHERE v IS NOT NULL GROUP BY b, item ORDER BY b",
                args,
            )
            for r in rows:
                points.append(
                    Point(
                        datetime.fromtimestamp(r["b"], UTC),
                        r["total"] / r["n"],
                        float(r["lo"]),
                        float(r["hi"]),
                        r["item"],
                        int(r["n"]),
                        float(HOUR),
                    )
                )
                covered_from.setdefault(r["item"], r["first"])
        else:
            for r in self.query(f"SELECT * FROM ({raw}) WHERE v IS NOT NULL ORDER BY at", args):
                value = float(r["v"])
                points.append(
                    Point(datetime.fromtimestamp(r["at"], UTC), value, value, value, r["item"])
                )
                covered_from.setdefault(r["item"], r["at"])
        for resolution in (HOUR, DAY):
            half = resolution / 2
            rows = self.query(
                f"SELECT bucket, n, total, lo, hi, item FROM rollup WHERE resolution=? AND target=? AND probe=?"
                f" AND metric=? {item_sql} AND bucket>=? AND bucket<? ORDER BY bucket",
                [resolution, target, probe, metric, *item_args, s - half, e - half],
            )
            earliest: dict[str, float] = {}
            for r in rows:
                limit = covered_from.get(r["item"])
                if limit is not None and r["bucket"] + resolution > limit:
                    continue
                points.append(
                    Point(
                        datetime.fromtimestamp(r["bucket"], UTC),
                        r["total"] / r["n"],
                        float(r["lo"]),
                        float(r["hi"]),
                        r["item"],
                        int(r["n"]),
                        float(resolution),
                    )
                )
                earliest.setdefault(r["item"], r["bucket"])
            covered_from.update(earliest)
        points.sort(key=lambda p: (p.at, p.item))
        return points

    def last_value(
        self, target: str, probe: str, metric: str, item: str, start: datetime, end: datetime
    ) -> float | None:
        """The newest raw value of one metric of one item in [start, end); None if no
        result kept raw in that stretch has it (compaction keeps only summaries)."""
        path = f'$."{metric}"'
        rows = self.query(
            "SELECT json_extract(metrics, ?) AS v FROM results WHERE target=? AND probe=?"
            " AND item=? AND at>=? AND at<? AND json_extract(metrics, ?) IS NOT NULL"
            " ORDER BY at DESC LIMIT 1",
            (path, target, probe, item, start.timestamp(), end.timestamp(), path),
        )
        return float(rows[0]["v"]) if rows else None

    def series_keys(self, since: datetime | None = None) -> list[tuple[str, str, str, str]]:
        """(target, probe, item, kind) of every series with history, newest knowledge first:
        the latest results, then the catalog that compaction keeps."""
        found: dict[tuple[str, str, str], str] = {}
        for r in self.latest():
            found.setdefault(r.key, r.kind)
        cutoff = since.timestamp() if since is not None else 0.0
        for row in self.query(
            "SELECT target, probe, item, kind FROM checks WHERE last_at >= ?", (cutoff,)
        ):
            found.setdefault((row["target"], row["probe"], row["item"]), row["kind"])
        return sorted((t, p, i, k) for (t, p, i), k in found.items())

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            self._set_meta(db, key, value)

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str, default: str) -> str:
        row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --------------------------------------------------------------------- outbox

    def enqueue(
        self,
        db: sqlite3.Connection,
        *,
        incident_id: int,
        integration: str,
        role: str,
        action: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO outbox (incident_id, integration, role, action, payload, created_at, due_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                incident_id,
                integration,
                role,
                action,
                json.dumps(payload),
                now.isoformat(),
                now.timestamp(),
            ),
        )
        self.writes += 1
        return int(cursor.lastrowid or 0)

    def due_actions(
        self, now: datetime, limit: int = 50, *, integration: str | None = None
    ) -> list[OutboxRow]:
        """Pending actions whose time has come and that no earlier action for the same
        incident and integration is still waiting on (comments follow their ticket);
        none that this process is delivering or has delivered without writing it yet."""
        only = "AND o.integration=?" if integration is not None else ""
        params: list[Any] = [now.timestamp()]
        if integration is not None:
            params.append(integration)
        held, held_params = self._held_sql("o.id")
        rows = self.query(
            f"SELECT * FROM outbox o WHERE o.state='pending' AND o.due_at <= ? {only} {held}"
            " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.incident_id=o.incident_id"
            " AND p.integration=o.integration AND p.id < o.id AND p.state='pending')"
            " ORDER BY o.id LIMIT ?",
            (*params, *held_params, limit),
        )
        return [_outbox_row(r) for r in rows]

    def next_due(self, integration: str | None = None) -> float | None:
        held, held_params = self._held_sql("id")
        if integration is None:
            row = self.query(
                f"SELECT min(due_at) FROM outbox WHERE state='pending' {held}", held_params
            )
        else:
            row = self.query(
                f"SELECT min(due_at) FROM outbox WHERE state='pending' AND integration=? {held}",
                (integration, *held_params),
            )
        return row[0][0] if row else None

    def _held_sql(self, column: str) -> tuple[str, list[int]]:
        with self._lock:
            held = sorted(self._in_flight | set(self._unrecorded))
        if not held:
            return "", []
        return f"AND {column} NOT IN ({','.join('?' * len(held))})", held

    def mark_attempting(self, action_id: int, now: datetime) -> bool:
        """Commits the "attempting" mark before an action is sent; False (and nothing
        may be sent) if the file cannot take it. A mark still set when the next one is
        made counts as an interrupted attempt."""
        try:
            with self.transaction() as db:
                db.execute(
                    "UPDATE outbox SET interrupted=interrupted + (attempt_started IS NOT NULL),"
                    " attempt_started=? WHERE id=?",
                    (now.timestamp(), action_id),
                )
        except StateWriteError:
            return False
        with self._lock:
            self._in_flight.add(action_id)
        return True

    def record(self, outcome: Outcome) -> bool:
        """Writes a delivery's outcome and clears its attempting mark; if the file cannot
        take it, keeps it to write later (``flush_outcomes``). True if written now."""
        with self._lock:
            self._in_flight.discard(outcome.action_id)
            self._unrecorded[outcome.action_id] = outcome
            return self._write_outcome(outcome)

    def flush_outcomes(self) -> int:
        """Writes the outcomes kept while the file could not take them; how many remain."""
        with self._lock:
            for outcome in list(self._unrecorded.values()):
                if not self._write_outcome(outcome):
                    break
            return len(self._unrecorded)

    def _write_outcome(self, outcome: Outcome) -> bool:
        try:
            with self.transaction() as db:
                db.execute(
                    "UPDATE outbox SET state=?, attempts=attempts+1, last_error=?, due_at=coalesce(?, due_at),"
                    " done_at=?, attempt_started=NULL WHERE id=?",
                    (
                        outcome.state,
                        outcome.error,
                        outcome.due.timestamp() if outcome.due else None,
                        None if outcome.state == "pending" else outcome.at.isoformat(),
                        outcome.action_id,
                    ),
                )
                if outcome.ticket is not None:
                    incident_id, integration, external_id, url = outcome.ticket
                    db.execute(
                        "INSERT OR REPLACE INTO tickets (incident_id, integration, external_id, url,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (incident_id, integration, external_id, url, outcome.at.isoformat()),
                    )
        except StateWriteError:
            return False
        del self._unrecorded[outcome.action_id]
        return True

    @property
    def unrecorded(self) -> int:
        """Delivery outcomes waiting in memory for the file to take writes."""
        return len(self._unrecorded)

    def outbox(
        self, *, incident_id: int | None = None, states: Iterable[str] | None = None
    ) -> list[OutboxRow]:
        sql = "SELECT * FROM outbox"
        clauses: list[str] = []
        params: list[Any] = []
        if incident_id is not None:
            clauses.append("incident_id=?")
            params.append(incident_id)
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [_outbox_row(r) for r in self.query(sql + " ORDER BY id", params)]

    def outbox_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.query("SELECT state, count(*) FROM outbox GROUP BY state")}

    def mark_done(self, action_id: int, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state='done', done_at=?, attempts=attempts+1, last_error=NULL WHERE id=?",
                (now.isoformat(), action_id),
            )

    def mark_retry(self, action_id: int, error: str, due: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, due_at=? WHERE id=?",
                (error, due.timestamp(), action_id),
            )

    def mark_failed(self, action_id: int, error: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state='failed', attempts=attempts+1, last_error=?, done_at=? WHERE id=?",
                (error, now.isoformat(), action_id),
            )

    # ------------------------------------------------------------------- commands

    def request(self, kind: str, incident_id: int, by: str, note: str, now: datetime) -> int:
        """Queues a request (ack, resolve) for whichever process owns the incidents."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO commands (kind, incident_id, requested_by, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (kind, incident_id, by, note, now.isoformat()),
            )
            return int(cursor.lastrowid or 0)

    def pending_requests(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM commands WHERE done_at IS NULL ORDER BY id")

    def finish_request(self, request_id: int, outcome: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE commands SET done_at=?, outcome=? WHERE id=?",
                (now.isoformat(), outcome, request_id),
            )

    def request_outcome(self, request_id: int) -> str | None:
        rows = self.query(
            "SELECT outcome FROM commands WHERE id=? AND done_at IS NOT NULL", (request_id,)
        )
        return rows[0]["outcome"] if rows else None

    # -------------------------------------------------------------------- tickets

    def set_ticket(
        self, incident_id: int, integration: str, external_id: str, url: str | None, now: datetime
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO tickets (incident_id, integration, external_id, url, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (incident_id, integration, external_id, url, now.isoformat()),
            )

    def ticket(self, incident_id: int, integration: str) -> tuple[str, str | None] | None:
        rows = self.query(
            "SELECT external_id, url FROM tickets WHERE incident_id=? AND integration=?",
            (incident_id, integration),
        )
        return (rows[0]["external_id"], rows[0]["url"]) if rows else None

    def tickets(self, incident_id: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT integration, external_id, url FROM tickets WHERE incident_id=?", (incident_id,)
        )
        return [dict(r) for r in rows]


def _floor(seconds: float, size: int) -> float:
    return float(int(seconds // size) * size)


def _catalog(db: sqlite3.Connection, start: float, end: float) -> None:
    """Remembers the kind behind each rolled series (the rollup rows do not carry it)."""
    db.execute(
        "INSERT INTO checks (target, probe, item, kind, last_at)"
        " SELECT target, probe, item, kind, max(at) FROM results WHERE at >= ? AND at < ?"
        " GROUP BY target, probe, item"
        " ON CONFLICT (target, probe, item) DO UPDATE SET kind=excluded.kind, last_at=excluded.last_at"
        " WHERE excluded.last_at >= checks.last_at",
        (start, end),
    )


def _rollup_raw(db: sqlite3.Connection, start: float, end: float) -> None:
    db.execute(
        "INSERT OR REPLACE INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
        " SELECT 3600, CAST(at / 3600 AS INTEGER) * 3600 AS b, target, probe, item, j.key, count(*),"
        " sum(j.value), min(j.value), max(j.value) FROM results, json_each(results.metrics) AS j"
        " WHERE at >= ? AND at < ? AND j.type IN ('integer', 'real') GROUP BY b, target, probe, item, j.key",
        (start, end),
    )
    db.execute(
        "INSERT OR REPLACE INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
        " SELECT 3600, CAST(at / 3600 AS INTEGER) * 3600 AS b, target, probe, item, '_up', count(*),"
        " sum(status = 'ok'), min(status = 'ok'), max(status = 'ok') FROM results"
        " WHERE at >= ? AND at < ? GROUP BY b, target, probe, item",
        (start, end),
    )


def _outbox_row(r: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        incident_id=r["incident_id"],
        integration=r["integration"],
        role=r["role"],
        action=r["action"],
        payload=json.loads(r["payload"]),
        state=r["state"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        due_at=r["due_at"],
        last_error=r["last_error"],
        done_at=r["done_at"],
        attempt_started=r["attempt_started"],
        interrupted=r["interrupted"],
    )


def _unwritable(exc: sqlite3.Error) -> bool:
    """True for errors that say the file cannot take writes, not that a query is wrong."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _UNWRITABLE


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
