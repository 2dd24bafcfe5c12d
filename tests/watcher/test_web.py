"""The HTTP side: escaping on the status page, tokens on state-changing endpoints."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import write_config
from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from watcher.app import App


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
              - http: {{url: "{http_server.url_for('/')}", contains: "<script>alert(1)</script>"}}
        """,
    )
    app = App(config)
    app.start()
    yield app
    app.shutdown()


def _get(app: App, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{app.web.port}{path}", method=method, data=b"{}" if method == "POST" else None)
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
