"""Deadlines cut what a piece of work connected, whichever library connected it; the
daemon worker pool never keeps a finished process alive."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from tests.servers.trickle import TricklingPeer
from watcher.schedule.deadline import Deadline, current, unwatched, within_current


@pytest.fixture
def silent_peer() -> Iterator[TricklingPeer]:
    with TricklingPeer(drip=b"") as peer:
        yield peer


def test_a_tls_handshake_blocked_without_any_timeout_ends_when_the_deadline_passes(
    silent_peer: TricklingPeer,
) -> None:
    context = ssl.create_default_context()
    started = time.monotonic()
    with Deadline(0.5) as deadline, pytest.raises(OSError):
        sock = socket.create_connection((silent_peer.host, silent_peer.port), timeout=None)
        # TLS takes the descriptor over from the socket the deadline saw connect.
        context.wrap_socket(sock, server_hostname="localhost")
    assert time.monotonic() - started < 5
    assert deadline.cut
    assert silent_peer.wait_all_closed(5)


def test_a_socket_connected_while_unwatched_outlives_the_deadline(
    silent_peer: TricklingPeer,
) -> None:
    with Deadline(0.2), unwatched():
        sock = socket.create_connection((silent_peer.host, silent_peer.port))
        time.sleep(0.8)
    with sock:
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):  # still open: a cut socket would read b"" at once
            sock.recv(1)


def test_cancelling_a_deadline_without_an_end_runs_its_callbacks_once() -> None:
    called: list[str] = []
    with Deadline(None) as deadline:
        assert current() is deadline
        assert within_current(30.0) == 30.0
        deadline.on_expiry(lambda: called.append("cut"))
        deadline.cancel()
        deadline.cancel()
        assert deadline.remaining() == 0 and deadline.passed
    assert called == ["cut"] and current() is None


def test_a_finished_deadline_cuts_nothing_later(silent_peer: TricklingPeer) -> None:
    with Deadline(0.2) as deadline:
        sock = socket.create_connection((silent_peer.host, silent_peer.port))
    time.sleep(0.8)
    assert not deadline.cut
    with sock:
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_a_process_whose_pool_worker_is_stuck_exits_when_it_is_done() -> None:
    program = textwrap.dedent(
        """
        import time
        from watcher.schedule.workers import DaemonPool
        pool = DaemonPool(2, name="stuck")
        assert pool.submit(pow, 2, 10).result() == 1024
        pool.submit(time.sleep, 120)
        print("done", flush=True)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "done", done.stderr
    assert time.monotonic() - started < 20
