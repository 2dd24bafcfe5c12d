"""SIGTERM stops ``watcher run`` (a real process) within about 5 s, whatever its checks
and deliveries are doing: a check stuck on a trickling peer, a command that never ends,
a helpdesk that accepted the connection and never answers. What was not delivered stays
in the outbox for the next start."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.base import free_port, pid_alive, wait_until
from tests.servers.trickle import TricklingPeer
from tests.support.daemon import Daemon
from tests.support.helpers import write_config

# The design target is 5 s; a little slack for a loaded machine.
STOP_WITHIN = 7.0


@pytest.fixture
def trickling_web() -> Iterator[TricklingPeer]:
    with TricklingPeer(head=b"HTTP/1.1 200 OK\r\n", drip=b"X-Slow: yes\r\n") as peer:
        yield peer


@pytest.fixture
def trickling_smtp() -> Iterator[TricklingPeer]:
    with TricklingPeer(drip=b"220-endless banner\r\n") as peer:
        yield peer


@pytest.fixture
def silent_helpdesk() -> Iterator[TricklingPeer]:
    with TricklingPeer(drip=b"") as peer:  # accepts, reads the request, never answers
        yield peer


def stop_timed(daemon: Daemon) -> tuple[int, float]:
    assert daemon.proc is not None
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    try:
        code = daemon.proc.wait(30)
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    return code, time.monotonic() - started


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_sigterm_stops_the_daemon_on_time_while_its_checks_are_stuck(
    tmp_path: Path, trickling_web: TricklingPeer, trickling_smtp: TricklingPeer
) -> None:
    port = free_port()
    pid_file = tmp_path / "sleeper.pid"
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        defaults: {{interval: 1s, timeout: 60s}}
        targets:
          - name: shop
            probes:
              - http: {{url: "{trickling_web.url()}"}}
              - smtp: {{host: 127.0.0.1, port: {trickling_smtp.port}}}
              - command: {{run: "echo $$ > {pid_file}; exec sleep 120", name: sleeper}}
        """,
    )
    daemon = Daemon(config, port).start()
    try:
        assert trickling_web.wait_connected(30), daemon.log()[-3000:]
        assert trickling_smtp.wait_connected(30), daemon.log()[-3000:]
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the command")
        time.sleep(0.5)  # well inside the 60 s timeouts: the checks are stuck, not done
        code, took = stop_timed(daemon)
    finally:
        daemon.stop(5)
    assert took < STOP_WITHIN, f"SIGTERM took {took:.1f}s\n{daemon.log()[-3000:]}"
    assert code == 0, daemon.log()[-3000:]
    assert trickling_web.wait_all_closed(5) and trickling_smtp.wait_all_closed(5)
    # The stuck command went with the check, and no cut check was reported as a failure.
    sleeper = int(pid_file.read_text())
    wait_until(lambda: not pid_alive(sleeper), 5, "the stuck command to end")
    db = tmp_path / "state.db"
    assert (
        rows(db, "SELECT count(*) FROM results")
        == rows(db, "SELECT count(*) FROM latest")
        == [(0,)]
    )


def test_sigterm_stops_the_daemon_on_time_while_a_helpdesk_never_answers(
    tmp_path: Path, silent_helpdesk: TricklingPeer
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        defaults: {{interval: 1s, timeout: 2s}}
        integrations:
          tickets: [{{webhook: {{url: "{silent_helpdesk.url("/hook")}", timeout: 60s}}}}]
        rules: [default, fast.yml]
        targets:
          - name: shop
            probes: [{{tcp: {{port: {free_port()}, name: gone}}}}]
        """,
        extra={
            "fast.yml": "rules:\n  - {name: gone-now, probe: tcp, when: failed, priority: P2, summary: '{target}: gone'}\n"
        },
    )
    db = tmp_path / "state.db"
    daemon = Daemon(config, port).start()
    try:
        assert silent_helpdesk.wait_connected(30), daemon.log()[-3000:]
        time.sleep(0.5)  # the ticket's request is sent and waits for an answer
        code, took = stop_timed(daemon)
    finally:
        daemon.stop(5)
    assert took < STOP_WITHIN, f"SIGTERM took {took:.1f}s\n{daemon.log()[-3000:]}"
    assert code == 0, daemon.log()[-3000:]
    assert silent_helpdesk.wait_all_closed(5)
    # Not delivered, not given up on: the ticket waits in the outbox for the next start.
    assert rows(db, "SELECT action, state FROM outbox") == [("open", "pending")]
