"""Deliveries when the state file fails them: a volume that fills as the helpdesk accepts a
ticket, a watcher killed between the "attempting" mark and the outcome. A real ``watcher
run`` sends to a real webhook receiver on loopback; the volume is a real tmpfs."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.servers.base import LOOPBACK, free_port
from tests.servers.disk import SmallFs
from tests.support.daemon import Daemon
from tests.support.helpers import write_config

SECRET = "hook-secret-8c1e"


class Receiver:
    """A webhook receiver: records each POST; ``on_open`` runs before it answers a
    ``ticket.open`` (to fill a volume, or to hold the answer while the test kills watcher)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.on_open: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.requests.append((dict(self.headers.items()), body))
                if json.loads(body).get("event") == "ticket.open":
                    owner.on_open()
                answer = json.dumps({"id": "HOOK-1"}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the watcher that sent it was killed meanwhile

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/hook"

    def opens(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(h, b) for h, b in self.requests if json.loads(b).get("event") == "ticket.open"]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(directory: Path, state: str, port: int, receiver: Receiver) -> Path:
    return write_config(
        directory,
        f"""
        site: acme
        state: {state}
        listen: 127.0.0.1:{port}
        integrations:
          tickets: [{{webhook: {{url: "{receiver.url}", secret: "{SECRET}"}}}}]
        defaults: {{interval: 500ms, timeout: 1s}}
        rules: [default, fast.yml]
        targets:
          - name: shop
            probes: [{{tcp: {{host: 127.0.0.1, port: {free_port()}}}}}]
        """,
        extra={
            "fast.yml": "rules:\n  - {name: shop-down, probe: tcp, when: failed,"
            " priority: P2, summary: '{target}: port closed'}\n"
        },
    )


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _metric(daemon: Daemon, name: str) -> float:
    status, text = daemon.get("/metrics")
    assert status == 200
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_a_volume_that_fills_as_the_webhook_accepts_a_ticket_gets_one_ticket_open(
    tmp_path: Path,
) -> None:
    volume = SmallFs(tmp_path / "vol", size_mb=8).mount()
    with Receiver() as receiver:
        receiver.on_open = lambda: volume.fill_to(100)
        port = free_port()
        daemon = Daemon(_config(tmp_path, "vol/state.db", port, receiver), port).start(wait=False)
        try:
            daemon.wait_for(receiver.opens, 30, "the webhook to receive ticket.open")

            def unhealthy() -> str | None:
                status, body = daemon.get("/healthz")
                return body if status == 503 else None

            reason = daemon.wait_for(unhealthy, 30, "/healthz to say the state is not writable")
            assert "state file cannot be written" in reason and "full" in reason
            assert _metric(daemon, "watcher_state_writable") == 0.0
            # The old outbox sent the open again every ~5 s while the volume stayed full:
            # give it well over two of those rounds, and the workers many failed writes.
            full_since = time.monotonic()
            daemon.wait_for(
                lambda: (
                    time.monotonic() - full_since > 12
                    and _metric(daemon, "watcher_state_write_failures_total") >= 5
                ),
                60,
                "watcher to keep trying to write while the volume is full",
            )
            assert len(receiver.opens()) == 1
            assert daemon.get("/healthz")[0] == 503

            volume.clear()
            daemon.wait_for(
                lambda: daemon.get("/healthz")[0] == 200, 60, "/healthz ok once space is back"
            )
            db = tmp_path / "vol" / "state.db"
            daemon.wait_for(
                lambda: _rows(db, "SELECT state FROM outbox WHERE action='open'") == [("done",)],
                60,
                "the delivered open to be recorded",
            )
            assert _rows(db, "SELECT external_id FROM tickets") == [("HOOK-1",)]
            # Other actions may follow while the target stays down (a recheck's comment);
            # the open was attempted once, and nothing is left marked as being attempted.
            assert _rows(db, "SELECT attempts FROM outbox WHERE action='open'") == [(1,)]
            assert _rows(db, "SELECT count(*) FROM outbox WHERE attempt_started IS NOT NULL") == [
                (0,)
            ]
            assert _metric(daemon, "watcher_state_writable") == 1.0
            assert len(receiver.opens()) == 1
        finally:
            daemon.stop()
            volume.unmount()
    log = daemon.log()
    assert log.count("cannot be written") == 1, log  # once a minute, not per attempt
    assert "takes writes again" in log
    assert "Traceback" not in log


class _Held:
    """Holds the receiver's answer to a ticket.open until released: the webhook has the
    ticket, watcher has not heard back."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        self.arrived.set()
        self.release.wait(60)


def _kill_while_sending(daemon: Daemon, receiver: Receiver, db: Path) -> None:
    held = _Held()
    receiver.on_open = held
    daemon.start()
    try:
        assert held.arrived.wait(60), daemon.log()[-3000:]
        (started,) = _rows(db, "SELECT attempt_started FROM outbox WHERE action='open'")
        assert started[0] is not None  # the attempting mark was committed before the call
        daemon.kill()
    finally:
        held.release.set()
        receiver.on_open = lambda: None


def _signed(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Watcher-Signature"], expected)


def test_a_webhook_ticket_sent_by_a_killed_watcher_is_repeated_once_with_its_delivery_id(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "state.db"
    with Receiver() as receiver:
        daemon = Daemon(_config(tmp_path, "state.db", port, receiver), port)
        _kill_while_sending(daemon, receiver, db)
        daemon.start()
        try:
            daemon.wait_for(lambda: len(receiver.opens()) == 2, 60, "the repeat after restart")
            daemon.wait_for(
                lambda: _rows(db, "SELECT state FROM outbox WHERE action='open'") == [("done",)],
                30,
                "the repeat to be recorded",
            )
        finally:
            daemon.stop()
        opens = receiver.opens()
    assert len(opens) == 2
    (first_headers, first_body), (second_headers, second_body) = opens
    assert first_headers["X-Watcher-Delivery"] == second_headers["X-Watcher-Delivery"]
    assert json.loads(first_body)["delivery_id"] == json.loads(second_body)["delivery_id"]
    assert _signed(first_headers, first_body) and _signed(second_headers, second_body)
    assert "sending it once more with the same delivery id" in daemon.log()


def test_a_webhook_ticket_is_not_sent_a_third_time_after_a_second_kill(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "state.db"
    with Receiver() as receiver:
        daemon = Daemon(_config(tmp_path, "state.db", port, receiver), port)
        _kill_while_sending(daemon, receiver, db)
        _kill_while_sending(daemon, receiver, db)
        daemon.start()
        try:
            daemon.wait_for(
                lambda: _rows(db, "SELECT state FROM outbox WHERE action='open'") == [("failed",)],
                60,
                "the twice-interrupted open to be given up",
            )
        finally:
            daemon.stop()
        opens = receiver.opens()
    assert len(opens) == 2
    assert len({h["X-Watcher-Delivery"] for h, _ in opens}) == 1
    ((error,),) = _rows(db, "SELECT last_error FROM outbox WHERE action='open'")
    assert "stopped twice while sending it" in error
    assert "not sent a third time" in daemon.log()
