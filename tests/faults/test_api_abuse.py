"""Abuse of the HTTP side: bodies that are not what an endpoint takes, ids no table holds,
clients that are slow, many, impatient or malformed. Every case runs against a real
watcher on a loopback port; a client mistake is a 4xx with no state change, never a 5xx,
and the log keeps one line per event.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.support.daemon import Daemon
from tests.support.helpers import write_config
from watcher.app.daemon import App
from watcher.web import server as web

TOKEN = "tok-5b8e21c7d3"
RULES = "rules:\n  - {name: http-down, probe: http, when: failed, after: 1, priority: P3, summary: '{target}: down'}\n"


def _config(directory: Path, port: int, url: str) -> Path:
    return write_config(
        directory,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{port}
        api_token: "${{WATCHER_API_TOKEN}}"
        defaults: {{interval: 300ms, timeout: 2s}}
        rules: [default, fast.yml]
        checkins:
          - {{name: nightly, period: 1d, grace: 2h}}
        targets:
          - name: shop
            probes: [{{http: {{url: "{url}"}}}}]
        """,
        extra={"fast.yml": RULES},
    )


@pytest.fixture
def start_app(
    tmp_path: Path, http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., App]]:
    """Starts a watcher in this process; keyword arguments replace watcher.web.server's limits."""
    monkeypatch.setenv("WATCHER_API_TOKEN", TOKEN)
    http_server.set_default(status=500)
    started: list[App] = []

    def start(**limits: float) -> App:
        for name, value in limits.items():
            monkeypatch.setattr(web, name, value, raising=False)
        app = App(_config(tmp_path, free_port(), http_server.url_for("/")))
        app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.shutdown()


@pytest.fixture
def app(start_app: Callable[..., App]) -> App:
    return start_app()


def _exchange(port: int, raw: bytes, *, timeout: float = 20, quiet: float | None = None) -> bytes:
    """Sends ``raw`` and reads until the server closes, ``timeout`` passes, or (with
    ``quiet``) the server says nothing more for that long after its first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused before all of a large request is sent
            sock.sendall(raw)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if quiet:
                    sock.settimeout(quiet)
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, f"no status line in {answer[:200]!r}"
    return int(match.group(1))


def _request(
    port: int, method: str, path: str, body: bytes = b"", *, token: str | None = TOKEN
) -> tuple[int, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    answer = _exchange(port, head.encode() + body)
    return _status(answer), answer.partition(b"\r\n\r\n")[2]


def _open_incident(app: App) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = _request(app.web.port, "GET", "/api/incidents?state=open")
        items = json.loads(body)
        if items:
            return int(items[0]["id"])
        time.sleep(0.1)
    raise AssertionError("no incident opened within 30 s")


def _incident_state(app: App, incident_id: int) -> str:
    status, body = _request(app.web.port, "GET", f"/api/incidents/{incident_id}")
    assert status == 200
    return str(json.loads(body)["state"])


# ----------------------------------------------------------------------------- bodies


@pytest.mark.parametrize("action", ["ack", "resolve"])
@pytest.mark.parametrize(
    "body", [b"not json", b"{", b"[1, 2]", b'"asha"', b"\xff\xfe", b"  "], ids=repr
)
def test_a_body_that_is_not_a_json_object_is_refused_and_the_incident_stays_open(
    app: App, action: str, body: bytes
) -> None:
    incident_id = _open_incident(app)
    status, answer = _request(app.web.port, "POST", f"/api/incidents/{incident_id}/{action}", body)
    assert status == 400, answer
    assert "JSON" in json.loads(answer)["error"]
    assert _incident_state(app, incident_id) == "open"


def test_an_empty_body_still_acknowledges(app: App) -> None:
    incident_id = _open_incident(app)
    status, answer = _request(app.web.port, "POST", f"/api/incidents/{incident_id}/ack")
    assert status == 200, answer
    assert _incident_state(app, incident_id) == "acknowledged"


def test_a_by_that_is_not_text_is_refused(app: App) -> None:
    incident_id = _open_incident(app)
    body = json.dumps({"by": [[["asha"]]]}).encode()
    status, answer = _request(app.web.port, "POST", f"/api/incidents/{incident_id}/ack", body)
    assert status == 400, answer
    assert _incident_state(app, incident_id) == "open"


@pytest.mark.parametrize(
    "path", ["/api/incidents/1/ack", "/api/incidents/1/resolve", "/api/maintenance"]
)
def test_json_nested_thirty_thousand_deep_is_a_400(app: App, path: str) -> None:
    for body in (b"[" * 30_000 + b"]" * 30_000, b'{"by": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"):
        status, answer = _request(app.web.port, "POST", path, body)
        assert status == 400, answer
        assert "nested" in json.loads(answer)["error"]


@pytest.mark.parametrize(
    "window",
    [
        {"name": ["x"]},
        {"timezone": 5},
        {"name": "w", "targets": "shop", "duration": []},
        {"by": {}},
    ],
    ids=repr,
)
def test_a_maintenance_window_of_the_wrong_types_is_a_400(app: App, window: dict) -> None:
    status, answer = _request(app.web.port, "POST", "/api/maintenance", json.dumps(window).encode())
    assert status == 400, answer
    assert json.loads(answer)["error"]


# -------------------------------------------------------------------------------- ids

HUGE_ID = "9" * 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/incidents/{HUGE_ID}"),
        ("POST", f"/api/incidents/{HUGE_ID}/ack"),
        ("POST", f"/api/incidents/{HUGE_ID}/resolve"),
        ("DELETE", f"/api/maintenance/{HUGE_ID}"),
        ("GET", "/api/incidents/9223372036854775808"),
        ("POST", f"/checkin/nightly/{HUGE_ID}"),
        ("POST", f"/checkin/nightly?exit_code={HUGE_ID}"),
        ("POST", "/checkin/nightly?exit_code=99999999999999999999"),
    ],
)
def test_an_id_out_of_range_is_a_400_or_404_not_a_crash(app: App, method: str, path: str) -> None:
    status, answer = _request(app.web.port, method, path)
    assert status in (400, 404), answer


# ------------------------------------------------------------------ slow and many clients


def test_a_client_trickling_its_headers_is_cut_off_by_a_total_deadline(
    start_app: Callable[..., App],
) -> None:
    # Each read comes well within the per-read timeout; only a deadline on the whole
    # request stops the client holding its connection (and a thread) for ever.
    app = start_app(REQUEST_DEADLINE=2.0, REQUEST_TIMEOUT=10.0)
    with socket.create_connection(("127.0.0.1", app.web.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        cut_off = False
        for n in range(200):  # 40 s at most
            try:
                sock.sendall(f"X-{n}: a\r\n".encode())
                time.sleep(0.2)
                sock.setblocking(False)
                try:
                    cut_off = sock.recv(1024) == b""
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:
                cut_off = True
            if cut_off:
                break
        elapsed = time.monotonic() - started
    assert cut_off, "the server waited 40 s for headers that never end"
    assert elapsed < 15, f"cut off only after {elapsed:.1f} s with a 2 s deadline"


def test_three_hundred_idle_connections_do_not_take_three_hundred_threads(app: App) -> None:
    assert _request(app.web.port, "GET", "/healthz")[0] == 200
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", app.web.port), timeout=10) for _ in range(300)]
    try:
        # Connections are accepted in order, so once this one is answered, all are in.
        status, body = _request(app.web.port, "GET", "/healthz")
        assert status == 200 and body == b"ok\n"
        grown = threading.active_count() - before
        assert grown <= getattr(web, "MAX_HANDLERS", 64), (
            f"{grown} threads for 300 idle connections"
        )
    finally:
        for sock in idle:
            sock.close()


def test_a_hundred_simultaneous_connections_are_all_answered(app: App) -> None:
    barrier = threading.Barrier(100)
    answers: list[int | str] = []

    def client() -> None:
        sock = socket.socket()
        sock.settimeout(30)
        try:
            barrier.wait(30)
            sock.connect(("127.0.0.1", app.web.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
            answers.append(_status(received))
        except OSError as exc:
            answers.append(type(exc).__name__)
        finally:
            sock.close()

    threads = [threading.Thread(target=client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [200] * 100, sorted(map(str, answers))


def test_over_the_handler_cap_a_request_waits_briefly_then_gets_a_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web, "WAIT_FOR_HANDLER", 0.5)
    entered, release = threading.Event(), threading.Event()

    def slow(request: web.Request) -> web.Response:
        entered.set()
        return web.text_response(f"{release.wait(30)}\n")

    server = web.WebServer(f"127.0.0.1:{free_port()}", api_token=None, max_handlers=1)
    server.route("GET", "/slow", slow)
    server.route("GET", "/quick", lambda r: web.text_response("quick\n"))
    server.start()
    try:
        first: list[bytes] = []
        holder = threading.Thread(
            target=lambda: first.append(
                _exchange(server.port, b"GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n")
            )
        )
        holder.start()
        assert entered.wait(20)
        answer = _exchange(server.port, b"GET /quick HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert _status(answer) == 503 and b"Retry-After: 1" in answer
        release.set()
        holder.join(20)
        assert _status(first[0]) == 200
        answer = _exchange(server.port, b"GET /quick HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert answer.endswith(b"quick\n")
    finally:
        release.set()
        server.stop()


def test_a_request_cut_off_before_its_headers_end_is_not_acted_on(app: App) -> None:
    incident_id = _open_incident(app)
    with socket.create_connection(("127.0.0.1", app.web.port), timeout=20) as sock:
        sock.sendall(
            f"POST /api/incidents/{incident_id}/ack HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\n".encode()
        )
        sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                received += chunk
    assert received == b""
    assert _incident_state(app, incident_id) == "open"


def test_an_oversized_body_with_expect_100_continue_gets_413_and_never_100(app: App) -> None:
    answer = _exchange(
        app.web.port,
        f"POST /api/incidents/1/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n".encode(),
    )
    assert _status(answer) == 413
    assert b"100 Continue" not in answer


def test_a_small_body_with_expect_100_continue_is_still_invited(app: App) -> None:
    with socket.create_connection(("127.0.0.1", app.web.port), timeout=20) as sock:
        sock.sendall(
            f"POST /api/maintenance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode()
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"[]")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert _status(received) == 400


# ------------------------------------------------------------------------------ the log


def test_a_client_hanging_up_mid_response_logs_one_line_and_no_traceback(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_default(status=200)
    port = free_port()
    daemon = Daemon(
        _config(tmp_path, port, http_server.url_for("/")), port, env={"WATCHER_API_TOKEN": TOKEN}
    ).start()
    try:
        before = len(daemon.log())
        with socket.socket() as sock:
            # A small receive window and fifty pipelined scrapes: the server is still
            # writing when the client resets the connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        daemon.wait_for(lambda: "hung up" in daemon.log()[before:], 20, "the hang-up to be logged")
        assert daemon.get("/healthz")[0] == 200
        added = daemon.log()[before:]
    finally:
        daemon.stop()
    assert "Traceback" not in added, added
    lines = added.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines), added
    assert len([line for line in lines if "watcher.web" in line]) == 1, added


# ----------------------------------------------------------------------- malformed requests

MALFORMED = {
    "unknown method": b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "method with control bytes": b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no version": b"GARBAGE\r\n\r\n",
    "HTTP/2 request line": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "bad percent encoding": b"GET /%ff%fe/../%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw high bytes in path": b"GET /\xff\xfe\xb2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "status filter not utf-8": b"GET /?status=%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    "superscript limit": b"GET /api/results?limit=%C2%B2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "5000-digit offset": b"GET /api/results?offset="
    + b"9" * 5000
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "superscript exit code": (
        f"POST /checkin/nightly/\xb2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    ).encode("latin-1"),
    "superscript exit_code query": (
        "POST /checkin/nightly?exit_code=%C2%B2 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode(),
    "huge header": b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 150 + b"\r\n",
    "huge request line": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    "word for a length": b"POST /checkin/nightly HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
    "negative length": b"POST /checkin/nightly HTTP/1.1\r\nContent-Length: -5\r\n\r\nabc",
    "two lengths": b"POST /api/maintenance HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
    "chunked": b"POST /api/maintenance HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "header without colon": b"GET /healthz HTTP/1.1\r\nthis is not a header\r\n\r\n",
    "null in header": b"GET /metrics HTTP/1.1\r\nAccept-Encoding: \x00gzip\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_never_gets_a_5xx(app: App, raw: bytes) -> None:
    answer = _exchange(app.web.port, raw, quiet=2.0)
    assert answer, "the server closed without an answer"
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]
    assert statuses and all(s < 500 for s in statuses), answer[:300]
    assert _request(app.web.port, "GET", "/healthz")[0] == 200
