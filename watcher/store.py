"""SQLite state: incidents and their timelines, results history, the outbox.

One file in WAL mode, so the CLI can read while the daemon writes. Every change to an
incident is written in the same transaction as the outbox rows it causes: a crash
loses neither, and a restart resumes the deliveries that were pending.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from probes.base import Result
from watcher.incident import Event, Incident

__all__ = ["Store", "OutboxRow", "Point", "SCHEMA_VERSION", "ROLLUP_DELAY"]

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
    # 3: pushed heartbeats (checkins:): what each job last said and when (watcher/checkins.py)
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
    # (watcher/maintenance.py); removed ones stay, stamped, for the record
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
    # (watcher/checkins.py)
    """
    ALTER TABLE checkins ADD COLUMN resumed_at TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


HOUR = 3600
DAY = 86400
# How long after an hour ends its results are rolled up: results are stamped when the
# probe starts and stored when it finishes, at most a timeout later.
ROLLUP_DELAY = timedelta(minutes=15)


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


class Store:
    """The watcher's state file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; only a power cut can lose the last commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self.writes = 0  # rows written, for the scale benchmark and /metrics

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer watcher (schema {version}, this one knows {SCHEMA_VERSION})"
                )
            for number in range(version, SCHEMA_VERSION):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={number + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; commits on success, rolls back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
        clauses, params = [], []
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
        incident and integration is still waiting on (comments follow their ticket)."""
        only = "AND o.integration=?" if integration is not None else ""
        params: list[Any] = [now.timestamp()]
        if integration is not None:
            params.append(integration)
        rows = self.query(
            f"SELECT * FROM outbox o WHERE o.state='pending' AND o.due_at <= ? {only} AND NOT EXISTS ("
            " SELECT 1 FROM outbox p WHERE p.incident_id=o.incident_id AND p.integration=o.integration"
            " AND p.id < o.id AND p.state='pending') ORDER BY o.id LIMIT ?",
            (*params, limit),
        )
        return [_outbox_row(r) for r in rows]

    def next_due(self, integration: str | None = None) -> float | None:
        if integration is None:
            row = self.query("SELECT min(due_at) FROM outbox WHERE state='pending'")
        else:
            row = self.query(
                "SELECT min(due_at) FROM outbox WHERE state='pending' AND integration=?",
                (integration,),
            )
        return row[0][0] if row else None

    def outbox(
        self, *, incident_id: int | None = None, states: Iterable[str] | None = None
    ) -> list[OutboxRow]:
        sql = "SELECT * FROM outbox"
        clauses, params = [], []
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
    )


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
