"""``watcher test-integration`` against a helpdesk on loopback that echoes the credential
back when it refuses (a real server, the command run as its own process): the output says
what the refusal means and never shows the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers.httpd import HTTPTestServer

TOKEN = "zd-token-Echo8842"
JSON = {"Content-Type": "application/json"}


def _test_integration(tmp_path: Path, server: HTTPTestServer) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "watcher.yml"
    options = {"url": server.url, "email": "watcher@acme.example", "token": "${ZD_TOKEN}"}
    config.write_text(
        f"site: acme\nlisten: null\nintegrations:\n  tickets:\n    - zendesk: {json.dumps(options)}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "test-integration", "zendesk", "-c", str(config)],
        env={**os.environ, "ZD_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_refused_resolve_echoing_the_token_is_explained_without_it(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_response(
        "/api/v2/tickets.json", 201, json.dumps({"ticket": {"id": 35, "status": "new"}}), JSON
    )
    refusal = {"error": "Couldn't authenticate you", "detail": f"token {TOKEN} was revoked"}
    http_server.set_response("/api/v2/tickets/35.json", 401, json.dumps(refusal), JSON)
    run = _test_integration(tmp_path, http_server)
    assert "tickets/zendesk: test ticket created: 35" in run.stdout
    assert "could not resolve the test ticket: wrong credentials" in run.stdout
    assert "Couldn't authenticate you" in run.stdout
    assert TOKEN not in run.stdout + run.stderr
    assert [r.method for r in http_server.requests] == ["POST", "PUT"]


def test_a_refused_open_is_one_line_naming_the_permission(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    refusal = {"error": "Forbidden", "description": f"You do not have access ({TOKEN})"}
    http_server.set_response("/api/v2/tickets.json", 403, json.dumps(refusal), JSON)
    run = _test_integration(tmp_path, http_server)
    assert run.returncode == 1
    (line,) = run.stderr.splitlines()
    assert line.startswith("tickets/zendesk: FAILED (permanent): permission denied")
    assert "HTTP 403" in line and TOKEN not in line
