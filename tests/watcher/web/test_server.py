"""The HTTP side: escaping on the status page, tokens on state-changing endpoints."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.support.helpers import write_config
from watcher.app.daemon import App
from watcher.web.server import WebServer, text_response


@pytest.fixture
def app(tmp_path: Path, http_server: HTTPTestServer) -> Iterator[App]:
    port = free_port()
    http_server.set_default(status=200, body="<b>hello</b>")
    config = write_config(
        tmp_path,
        f"""
        site: "acme"
        state: state.db
        listen: 127.0.0.1:{port}
        defaults: {{interval: 200ms}}
        targets:
          - name: shop
            labels: {{role: "<img src=x onerror=alert(1)>"}}
            probes:
              - http: {{url: "{http_server.url_for("/")}", contains: "<script>alert(1)</script>"}}
        """,
    )
    app = App(config)
    app.start()
    yield app
    app.shutdown()


def _get(app: App, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{app.web.port}{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_results(app: App) -> None:
    import time

    deadline = time.monotonic() + 20
    while not app.engine.latest() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.engine.latest()


def test_the_status_page_escapes_everything_a_target_says(app: App) -> None:
    _wait_results(app)
    status, html = _get(app, "/")
    assert status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html and "<img" not in html


def test_state_changing_endpoints_are_off_without_a_token(app: App) -> None:
    status, body = _get(app, "/api/incidents/1/ack", method="POST")
    assert status == 403 and "api_token" in json.loads(body)["error"]


def test_unknown_paths_and_methods(app: App) -> None:
    assert _get(app, "/nope")[0] == 404
    assert _get(app, "/metrics", method="POST")[0] == 405
    assert _get(app, "/healthz")[0] == 200


def test_a_large_site_s_status_page_shows_problems_first_and_the_api_narrows(
    tmp_path: Path, http_server: HTTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("watcher.web.api.PAGE_ROWS", 2)
    http_server.set_default(status=200, body="fine")
    http_server.set_response("/gone", status=404, body="gone")
    healthy = "".join(
        f'\n          - {{name: web{n}, probes: [{{http: {{url: "{http_server.url_for("/")}"}}}}]}}'
        for n in range(4)
    )
    config = write_config(
        tmp_path,
        f"""
        site: acme
        state: state.db
        listen: 127.0.0.1:{free_port()}
        defaults: {{interval: 200ms}}
        targets:{healthy}
          - {{name: zz-broken, probes: [{{http: {{url: "{http_server.url_for("/gone")}"}}}}]}}
        """,
    )
    app = App(config)
    app.start()
    try:
        deadline = time.monotonic() + 20
        while len(app.engine.latest()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, html = _get(app, "/")
        assert status == 200 and "5 checks on 5 targets, 1 not ok" in html
        assert "Showing 2 of 5" in html
        assert html.index("zz-broken") < html.index("web0")  # last by name, first on the page
        assert "web3" not in html

        def targets(query: str) -> list[str]:
            status, body = _get(app, "/api/results" + query)
            assert status == 200, body
            return [r["target"] for r in json.loads(body)]

        assert targets("") == ["web0", "web1", "web2", "web3", "zz-broken"]
        assert targets("?status=fail,error") == ["zz-broken"]
        assert targets("?target=web1&target=web3,zz-broken&status=ok") == ["web1", "web3"]
        assert targets("?limit=2&offset=1") == ["web1", "web2"]
        status, html = _get(app, "/?target=web3")
        assert "web3" in html and "Showing" not in html
        assert _get(app, "/api/results?status=down")[0] == 400
    finally:
        app.shutdown()


# ---------------------------------------------------------------- bad and slow clients


@pytest.fixture
def bare_web() -> Iterator[WebServer]:
    web = WebServer(f"127.0.0.1:{free_port()}", api_token=None, request_timeout=0.5)
    web.route("POST", "/echo", lambda r: text_response(f"{len(r.body)} bytes\n"))
    web.start()
    yield web
    web.stop()


def _exchange(web: WebServer, raw: bytes) -> bytes:
    """Sends ``raw`` and reads until the server closes; the client waits up to 10 s."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_client_that_stops_sending_loses_its_connection(bare_web: WebServer) -> None:
    # Without a socket timeout the handler thread waits for the rest forever.
    answer = _exchange(bare_web, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert answer == b""


def test_a_negative_content_length_is_refused_not_read_to_the_end(bare_web: WebServer) -> None:
    answer = _exchange(bare_web, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("value", [b"ten", b"\xc2\xb2", b"9" * 5000])
def test_a_content_length_that_is_not_a_small_number_is_refused(
    bare_web: WebServer, value: bytes
) -> None:
    answer = _exchange(
        bare_web, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n"
    )
    assert answer.split(b" ", 2)[1] in (b"400", b"413")
    assert b"Connection: close" in answer


def test_a_chunked_body_is_refused_rather_than_taken_for_the_next_request(
    bare_web: WebServer,
) -> None:
    answer = _exchange(
        bare_web,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 411")
    assert answer.count(b"HTTP/1.1") == 1


def test_a_body_within_the_limit_is_read(bare_web: WebServer) -> None:
    answer = _exchange(
        bare_web,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"3 bytes\n")
