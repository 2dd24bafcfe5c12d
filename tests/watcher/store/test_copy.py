"""``watcher state copy``: a site moves from its SQLite file to PostgreSQL with its open
incidents, tickets, outbox and history, and the watcher on the new state carries on
(no second ticket; what was pending is delivered)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.test_delivery import Receiver, _config
from tests.servers.base import free_port
from tests.servers.postgres import PostgresServer
from tests.support.daemon import Daemon
from watcher.store import Store


def _watcher(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def _delivered(db: Path) -> bool:
    store = Store(db)
    try:
        return bool(store.outbox(states=["done"]))
    finally:
        store.close()


def test_a_site_copied_to_postgresql_keeps_its_ticket_and_delivers_what_was_pending(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.new_url()
    with Receiver() as receiver:
        port = free_port()
        sqlite_dir = tmp_path / "sqlite"
        sqlite_dir.mkdir()
        daemon = Daemon(_config(sqlite_dir, "state.db", port, receiver), port).start()
        try:
            daemon.wait_for(receiver.opens, 30, "the webhook to receive ticket.open")
            db = sqlite_dir / "state.db"
            daemon.wait_for(lambda: _delivered(db), 30, "the open to be recorded done")
        finally:
            assert daemon.stop() == 0
        before = Store(db)
        try:
            [incident] = before.incidents(states=["open"])
            [opened] = before.outbox(states=["done"])
            with before.transaction() as tx:
                pending = before.enqueue(
                    tx,
                    incident_id=opened.incident_id,
                    integration=opened.integration,
                    role=opened.role,
                    action="comment",
                    payload=opened.payload,
                    now=datetime.now(UTC),
                )
            results = len(before.recent_results(incident.target, "tcp", "", limit=10_000))
            tickets = before.tickets(incident.id)
        finally:
            before.close()
        assert tickets and results > 0

        copied = _watcher("state", "copy", "--from", str(db), "--to", url, cwd=tmp_path)
        assert copied.returncode == 0, copied.stderr
        assert postgres.password not in copied.stdout + copied.stderr
        assert "incidents: 1 rows" in copied.stdout and "outbox: 2 rows" in copied.stdout

        after = Store(url)
        try:
            assert [i.id for i in after.incidents(states=["open"])] == [incident.id]
            assert after.tickets(incident.id) == tickets
            assert [r.id for r in after.outbox(states=["pending"])] == [pending]
            assert len(after.recent_results(incident.target, "tcp", "", limit=10_000)) == results
        finally:
            after.close()

        opens = len(receiver.opens())
        pg_dir = tmp_path / "pg"
        pg_dir.mkdir()
        daemon = Daemon(_config(pg_dir, url, port, receiver), port).start()
        try:

            def comments() -> list[dict[str, object]]:
                bodies = [json.loads(b) for _, b in list(receiver.requests)]
                return [b for b in bodies if b.get("event") == "ticket.comment"]

            [comment] = daemon.wait_for(comments, 30, "the pending comment to be delivered")
            assert comment["delivery_id"] == pending
            store = Store(url)
            try:
                daemon.wait_for(
                    lambda: len(store.recent_results(incident.target, "tcp", "", 10_000)) > results,
                    30,
                    "the watcher on PostgreSQL to record results",
                )
                assert [i.id for i in store.incidents(states=["open"])] == [incident.id]
                assert not store.outbox(states=["pending"])
            finally:
                store.close()
            assert len(receiver.opens()) == opens  # the open incident was adopted
        finally:
            assert daemon.stop() == 0


def test_a_copy_into_a_state_that_holds_incidents_or_from_no_file_is_refused(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.new_url()
    missing = _watcher("state", "copy", "--from", "gone.db", "--to", url, cwd=tmp_path)
    assert missing.returncode == 2 and "no state file at gone.db" in missing.stderr
    assert not (tmp_path / "gone.db").exists()

    source = tmp_path / "a.db"
    Store(source).close()
    target = Store(url)
    try:
        with target.transaction() as tx:
            target.enqueue(
                tx,
                incident_id=1,
                integration="tickets/helpdesk",
                role="tickets",
                action="open",
                payload={},
                now=datetime.now(UTC),
            )
    finally:
        target.close()
    refused = _watcher("state", "copy", "--from", str(source), "--to", url, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "already holds outbox" in refused.stderr
    assert postgres.password not in refused.stderr
