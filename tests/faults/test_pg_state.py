"""A PostgreSQL state that cannot be used is refused at start in one line, without its
password; one that goes away under a running watcher is the same "state cannot be
written" as a full volume (healthz 503, metric), and nothing is lost when it is back."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.faults.test_delivery import Receiver, _config
from tests.servers.base import LOOPBACK, free_port
from tests.servers.postgres import PostgresServer
from tests.support.daemon import Daemon
from watcher.store import SCHEMA_VERSION, Outcome, StateWriteError, Store


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and restart without disturbing the others."""
    server = PostgresServer().start()
    yield server
    server.stop()


def _run_once(directory: Path, state: str) -> subprocess.CompletedProcess[str]:
    """``watcher run`` on ``state``, expected to refuse it at once."""
    with Receiver() as receiver:
        config = _config(directory, state, free_port(), receiver)
        return subprocess.run(
            [sys.executable, "-m", "watcher.cli", "run", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )


def _refused(proc: subprocess.CompletedProcess[str], password: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert password not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_database_holding_another_programs_tables_is_refused_untouched(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.new_url()
    postgres.sql(url, "CREATE TABLE invoices (id int PRIMARY KEY, total numeric)")
    line = _refused(_run_once(tmp_path, url), postgres.password)
    assert "not watcher's" in line and "invoices" in line
    tables = postgres.sql(
        url, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
    )
    assert tables == [("invoices",)]


def test_a_database_of_a_newer_watcher_is_refused(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_url()
    Store(url).close()
    postgres.sql(
        url, f"UPDATE watcher_meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'"
    )
    line = _refused(_run_once(tmp_path, url), postgres.password)
    assert "newer watcher" in line


@pytest.mark.parametrize("problem", ["no server", "wrong password"])
def test_a_database_that_cannot_be_reached_at_start_is_one_line_without_the_password(
    tmp_path: Path, postgres: PostgresServer, problem: str
) -> None:
    url = postgres.new_url()
    if problem == "no server":
        url = re.sub(r":\d+/", f":{free_port()}/", url)
    else:
        url = url.replace(postgres.password, "not-" + postgres.password)
    line = _refused(_run_once(tmp_path, url), postgres.password)
    assert "cannot be used" in line and f"@{LOOPBACK}:" in line


def test_a_second_watcher_on_the_same_database_is_refused(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.new_url()
    with Receiver() as receiver:
        port = free_port()
        (tmp_path / "a").mkdir()
        daemon = Daemon(_config(tmp_path / "a", url, port, receiver), port).start()
        try:
            (tmp_path / "b").mkdir()
            line = _refused(_run_once(tmp_path / "b", url), postgres.password)
            assert "another watcher is running" in line
        finally:
            assert daemon.stop() == 0


def test_writes_fail_cleanly_while_the_server_is_down_and_nothing_is_lost_after(
    own_postgres: PostgresServer,
) -> None:
    url = own_postgres.new_url()
    store = Store(url)
    try:
        now = datetime.now(UTC)
        store.set_meta("before", "kept")
        with store.transaction() as tx:
            action = store.enqueue(
                tx,
                incident_id=1,
                integration="tickets/helpdesk",
                role="tickets",
                action="open",
                payload={"subject": "s"},
                now=now,
            )
        assert store.mark_attempting(action, now)

        own_postgres.restart()  # every pooled connection is now dead
        store.set_meta("after restart", "kept")
        assert store.writable

        own_postgres.stop()
        with pytest.raises(StateWriteError):
            store.set_meta("while down", "lost")
        assert not store.writable and store.write_failures >= 1
        assert own_postgres.password not in (store.write_problem or "")
        # Delivered while the server was away: the outcome waits in memory.
        assert not store.record(
            Outcome(action, "done", now, ticket=(1, "tickets/helpdesk", "T-1", None))
        )
        assert store.unrecorded == 1

        own_postgres.start()
        assert store.due_actions(now) == []  # its outcome is not written yet: not handed out
        assert store.flush_outcomes() == 0
        assert store.writable
        assert store.get_meta("before") == store.get_meta("after restart") == "kept"
        assert store.get_meta("while down") is None
        [row] = store.outbox()
        assert row.state == "done" and row.attempt_started is None
        assert store.ticket(1, "tickets/helpdesk") == ("T-1", None)
    finally:
        store.close()


def test_a_running_watcher_reports_a_server_gone_and_recovers_when_it_is_back(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    url = own_postgres.new_url()
    with Receiver() as receiver:
        port = free_port()
        daemon = Daemon(_config(tmp_path, url, port, receiver), port).start()
        try:
            daemon.wait_for(receiver.opens, 30, "the webhook to receive ticket.open")
            own_postgres.stop()

            def unhealthy() -> str | None:
                status, body = daemon.get("/healthz")
                return body if status == 503 else None

            reason = daemon.wait_for(unhealthy, 60, "/healthz to say the state is not writable")
            assert "cannot be written" in reason and own_postgres.password not in reason
            status, metrics = daemon.get("/metrics")
            assert re.search(r"^watcher_state_writable 0", metrics, re.M)

            own_postgres.start()
            daemon.wait_for(lambda: daemon.get("/healthz")[0] == 200, 60, "/healthz to be 200")
            assert len(receiver.opens()) == 1
            assert own_postgres.password not in daemon.log()
        finally:
            assert daemon.stop() == 0
