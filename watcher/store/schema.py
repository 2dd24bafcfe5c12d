"""The schema, as one list of migrations both backends run in order.

The DDL is written once, in the SQL both SQLite and PostgreSQL read; the few words that
differ (an integer key that numbers itself, a float's type) are translated by
``watcher.store.dialect``. A backend records how many migrations it ran (SQLite: ``PRAGMA
user_version``; PostgreSQL: ``watcher_meta``) and refuses a state that ran more.
Standard library only.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "statements"]

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
    # 6: two-phase delivery: when the attempt in flight began (NULL when none is), and how
    # many attempts a stopped watcher left without an outcome (watcher/outbox.py)
    """
    ALTER TABLE outbox ADD COLUMN attempt_started REAL;
    ALTER TABLE outbox ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: alerts the Alertmanager receiver keeps across restarts (watcher/alertmanager_api.py);
    # files from before this migration may already have it, made when the receiver started
    """
    CREATE TABLE IF NOT EXISTS alertmanager_alerts (
        key TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        target_label TEXT NOT NULL,
        status TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        heard_at TEXT NOT NULL,
        alert TEXT NOT NULL,
        source TEXT NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Every table the migrations make, in an order that copies parents before children.
TABLES = (
    "meta",
    "incidents",
    "events",
    "tickets",
    "outbox",
    "commands",
    "results",
    "latest",
    "rollup",
    "checks",
    "checkins",
    "maintenance",
    "alertmanager_alerts",
)


def statements(script: str) -> list[str]:
    """The statements of one migration (none holds a ``;`` inside)."""
    return [s.strip() for s in script.split(";") if s.strip()]
