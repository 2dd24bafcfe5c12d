"""The state file's outbox over a long run: what was sent is not kept for ever."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.store import MIGRATIONS, SCHEMA_VERSION, Store, _statements

NOW = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)
RAW, HOURLY, DAILY = timedelta(days=2), timedelta(days=90), timedelta(days=730)
BODY = {"subject": "[P1][acme] web: down", "body": "x" * 5000}


@pytest.fixture
def store(state_location: str | Path) -> Iterator[Store]:
    s = Store(state_location)
    yield s
    s.close()


def _queue(store: Store, action: str, at: datetime) -> int:
    with store.transaction() as db:
        return store.enqueue(
            db,
            incident_id=1,
            integration="tickets/rt",
            role="tickets",
            action=action,
            payload=BODY,
            now=at,
        )


def test_compaction_empties_delivered_actions_older_than_raw_results_and_keeps_their_record(
    store: Store,
) -> None:
    old = _queue(store, "open", NOW - timedelta(days=3))
    store.mark_done(old, NOW - timedelta(days=3))
    recent = _queue(store, "comment", NOW - timedelta(hours=1))
    store.mark_done(recent, NOW - timedelta(hours=1))
    failed = _queue(store, "comment", NOW - timedelta(days=3))
    store.mark_failed(failed, "HTTP 401", NOW - timedelta(days=3))
    waiting = _queue(store, "resolve", NOW - timedelta(days=3))

    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)

    rows = {r.id: r for r in store.outbox()}
    assert (rows[old].action, rows[old].state, rows[old].payload) == ("open", "done", {})
    assert rows[recent].payload == BODY  # what was sent lately stays, to look at
    assert rows[failed].payload == BODY and rows[waiting].payload == BODY  # still to deliver


def test_a_state_file_of_an_older_schema_is_migrated_keeping_what_it_held(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for number in range(4):  # as the watcher before heartbeats could resume wrote it
        for statement in _statements(MIGRATIONS[number]):
            db.execute(statement)
    db.execute("PRAGMA user_version=4")
    db.execute(
        "INSERT INTO checkins (name, first_seen, pings) VALUES ('backup', ?, 7)", (NOW.isoformat(),)
    )
    db.close()
    store = Store(path)
    try:
        assert store.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        (row,) = store.query("SELECT name, pings, resumed_at FROM checkins")
        assert (row["name"], row["pings"], row["resumed_at"]) == ("backup", 7, None)
    finally:
        store.close()


def test_a_volume_that_flickers_between_full_and_not_is_logged_once_a_minute(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    with caplog.at_level("WARNING", logger="watcher.store"):
        store._write_failed(full)
        store._write_succeeded()
        for _ in range(5):  # a nearly full volume takes one write and refuses the next
            store._write_failed(full)
            store._write_succeeded()
        store._write_failed(full)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot be written" in line for line in lines) == 1
    assert sum("takes writes again" in line for line in lines) == 1
    assert store.write_problem == "database or disk is full"
