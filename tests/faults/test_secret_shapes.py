"""Secrets in the shapes they leak in: derived headers, URL userinfo, the wrong YAML shape.

A password travels base64-encoded in ``Authorization: Basic``; a server that echoes request
headers (many do, in a body or an error page) hands that form back, and it must be masked
in results (``/api/results``, ``watcher once --json``) and ticket evidence like the password
itself. ``user:password@`` in a URL becomes the same header in an HTTP client. And
``watcher validate`` must not print a secret that was written in the wrong shape.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.support.daemon import Daemon

USER = "monitor"
PASSWORD = "Echoed-Pa55word-7x"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with the request's headers, in its own headers and in the body, as
    httpbin-style debugging endpoints and many error pages do; records POST bodies."""

    server: _EchoServer

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST":
            self.server.posts.append((self.path, body))
        status = 200 if self.path.startswith("/hook") else 500
        if self.path.startswith("/refuse"):
            status = 400
        echoed = "".join(f"{name}: {value}\n" for name, value in self.headers.items())
        payload = (
            b'{"id": "T-1"}' if status == 200 else f"you sent:\n{echoed}".encode()
        )  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
        self.send_header("X-Echo-Authorization", self.headers.get("Authorization", "-"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    posts: list[tuple[str, bytes]]


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    server.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: _EchoServer, path: str, userinfo: str = "") -> str:
    return f"http://{userinfo}127.0.0.1:{server.server_address[1]}{path}"


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **env},
    )


def _assert_masked(text: str) -> None:
    assert PASSWORD not in text
    assert BASIC not in text, "the Basic header value (base64 of user:password) leaked"


def test_watcher_once_json_masks_a_basic_auth_header_the_server_echoes(
    tmp_path: Path, echo: _EchoServer
) -> None:
    (tmp_path / "watcher.yml").write_text(
        "site: acme\nstate: state.db\nlisten: null\n"
        "targets:\n  - name: shop\n    probes:\n"
        f'      - http: {{url: "{_url(echo, "/status")}", '
        f'basic_auth: {{user: {USER}, password: "${{SHOP_PASSWORD}}"}}}}\n'
    )
    done = _cli("once", "--json", cwd=tmp_path, env={"SHOP_PASSWORD": PASSWORD})
    assert done.returncode == 1, done.stderr  # the check fails: HTTP 500
    results = json.loads(done.stdout)
    evidence = results[0]["evidence"]
    assert "Basic ********" in evidence, evidence  # the echo is there, masked
    _assert_masked(done.stdout + done.stderr)


def test_api_results_and_ticket_evidence_mask_a_basic_auth_header_the_server_echoes(
    tmp_path: Path, echo: _EchoServer
) -> None:
    port = free_port()
    (tmp_path / "rules.yml").write_text(
        "priorities:\n  P1: {name: Urgent, response: 2h, resolve: 4h, clock: 24x7, ticket: true}\n"
        "rules:\n  - {name: shop-down, probe: http, when: failed, priority: P1}\n"
    )
    config = tmp_path / "watcher.yml"
    config.write_text(
        f"site: acme\nstate: state.db\nlisten: 127.0.0.1:{port}\nrules: [rules.yml]\n"
        "defaults: {interval: 1s, timeout: 5s}\n"
        "targets:\n  - name: shop\n    probes:\n"
        f'      - http: {{url: "{_url(echo, "/status")}", '
        f'basic_auth: {{user: {USER}, password: "${{SHOP_PASSWORD}}"}}}}\n'
        f'integrations:\n  tickets: [{{webhook: {{url: "{_url(echo, "/hook")}"}}}}]\n'
    )
    daemon = Daemon(config, port, env={"SHOP_PASSWORD": PASSWORD}).start()
    try:

        def echoed_result() -> str | None:
            text = daemon.get("/api/results")[1]
            return text if "Basic" in text else None

        results = daemon.wait_for(echoed_result, 60, "a result with the echoed header")
        daemon.wait_for(lambda: echo.posts, 60, "the ticket at the webhook")
    finally:
        daemon.stop()
    assert "Basic ********" in results, results
    _assert_masked(results)
    ticket = echo.posts[0][1].decode()
    assert "Basic ********" in ticket, ticket  # the evidence went into the ticket, masked
    _assert_masked(ticket)
    _assert_masked(daemon.log())


def test_a_password_in_url_userinfo_is_masked_in_its_basic_header_form(
    tmp_path: Path, echo: _EchoServer
) -> None:
    # requests turns user:password@ into Authorization: Basic; the helpdesk's error page
    # echoes it back into the delivery error.
    (tmp_path / "watcher.yml").write_text(
        "site: acme\nstate: state.db\nlisten: null\n"
        "integrations:\n  tickets:\n"
        f'    - webhook: {{url: "{_url(echo, "/refuse", f"{USER}:${{HOOK_PASSWORD}}@")}"}}\n'
    )
    done = _cli("test-integration", "webhook", cwd=tmp_path, env={"HOOK_PASSWORD": PASSWORD})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED (permanent)" in done.stderr, done.stderr
    assert "Basic ********" in done.stderr, done.stderr  # the echo is in the error, masked
    _assert_masked(done.stdout + done.stderr)


WRONG_SHAPES = {
    "basic_auth as a string": (
        'targets:\n  - name: shop\n    probes:\n      - http: {url: "http://127.0.0.1/", '
        'basic_auth: "${SHOP_PASSWORD}"}\n',
        5,
    ),
    "headers as a string": (
        'targets:\n  - name: shop\n    probes:\n      - http: {url: "http://127.0.0.1/", '
        'headers: "Authorization: Bearer ${SHOP_PASSWORD}"}\n',
        5,
    ),
    "a header value as a list": (
        'targets:\n  - name: shop\n    probes:\n      - http: {url: "http://127.0.0.1/", '
        'headers: {X-Key: ["${SHOP_PASSWORD}"]}}\n',
        5,
    ),
    "a webhook as a string": (
        'integrations:\n  tickets: ["https://127.0.0.1/hooks/${SHOP_PASSWORD}"]\n',
        3,
    ),
    "a webhook mapping as a string": (
        'integrations:\n  tickets: [{webhook: "https://127.0.0.1/hooks/${SHOP_PASSWORD}"}]\n',
        3,
    ),
    "an api token as a mapping": ('api_token: {value: "${SHOP_PASSWORD}"}\n', 2),
    "a secret where a duration belongs": ('defaults: {timeout: "${SHOP_PASSWORD}"}\n', 2),
    "a secret where a choice belongs": ('log_level: "${SHOP_PASSWORD}"\n', 2),
    "a secret where a number belongs": ('workers: "${SHOP_PASSWORD}"\n', 2),
}


@pytest.mark.parametrize("shape", sorted(WRONG_SHAPES))
def test_validate_never_prints_a_secret_written_in_the_wrong_shape(
    tmp_path: Path, shape: str
) -> None:
    text, line = WRONG_SHAPES[shape]
    path = tmp_path / "watcher.yml"
    path.write_text("site: acme\n" + text)
    done = _cli("validate", "-c", str(path), cwd=tmp_path, env={"SHOP_PASSWORD": PASSWORD})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{path}:{line}:" in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr, done.stderr


def test_a_successful_validate_does_not_print_a_secret_reused_elsewhere(tmp_path: Path) -> None:
    # found by the config fuzz: the same ${VAR} as a check-in token and as the site name
    path = tmp_path / "watcher.yml"
    path.write_text(
        'site: "${SHOP_PASSWORD}"\n'
        'checkins:\n  - {name: backup, period: 1d, token: "${SHOP_PASSWORD}"}\n'
    )
    done = _cli("validate", "-c", str(path), cwd=tmp_path, env={"SHOP_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert "ok: site ********" in done.stdout, done.stdout
    assert PASSWORD not in done.stdout + done.stderr
