"""Attacks on the console's forms against a running watcher: forged posts without the
CSRF token, posts without a login, token guessing, redirects off-site, and the session
cookie's attributes. Each is refused and changes nothing."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.httpd import HTTPTestServer
from tests.support.console_rig import TOKEN, Console, start_console


@pytest.fixture
def console(tmp_path: Path, http_server: HTTPTestServer) -> Iterator[Console]:
    receiver = HTTPTestServer().start()
    rig = start_console(tmp_path, http_server, receiver)
    try:
        yield rig
    finally:
        rig.app.shutdown()
        receiver.stop()


def _state(console: Console, incident_id: int) -> str:
    incident = console.app.store.incident(incident_id)
    assert incident is not None
    return incident.state


def test_a_post_without_a_login_is_refused_and_changes_nothing(console: Console) -> None:
    incident_id = console.open_incident()
    anonymous = console.client()
    answer = anonymous.post(f"/console/incidents/{incident_id}/ack", {"csrf": "anything"})
    assert answer.status == 403 and "log in" in json.loads(answer.body)["error"]
    answer = anonymous.post("/console/maintenance", {"name": "x", "targets": "shop"})
    assert answer.status == 403
    answer = anonymous.post("/console/targets/shop/silence", {"duration": "1h"})
    assert answer.status == 403
    anonymous.cookie = "watcher_session=made-up-session-id"
    assert anonymous.post(f"/console/incidents/{incident_id}/resolve", {}).status == 403
    assert _state(console, incident_id) == "open"
    assert json.loads(anonymous.get("/api/maintenance").body) == []


def test_a_form_without_the_csrf_token_is_refused_even_with_a_session(console: Console) -> None:
    incident_id = console.open_incident()
    client = console.client()
    assert client.login().status == 303
    for fields in ({}, {"csrf": ""}, {"csrf": "forged-token"}):
        answer = client.post(f"/console/incidents/{incident_id}/ack", fields)
        assert answer.status == 403 and "CSRF" in json.loads(answer.body)["error"]
        assert (
            client.post("/console/maintenance", {**fields, "name": "x", "targets": "shop"}).status
            == 403
        )
    assert _state(console, incident_id) == "open"
    assert json.loads(client.get("/api/maintenance").body) == []
    # another session's token is no good either
    other = console.client()
    other.login()
    answer = client.post(f"/console/incidents/{incident_id}/ack", {"csrf": other.csrf()})
    assert answer.status == 403 and _state(console, incident_id) == "open"


def test_the_session_cookie_is_httponly_strict_and_logout_ends_it(console: Console) -> None:
    client = console.client()
    answer = client.login()
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("watcher_session=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    assert "Secure" not in cookie  # plain HTTP here; a TLS proxy's X-Forwarded-Proto adds it
    assert TOKEN not in cookie
    csrf = client.csrf()
    assert client.post("/console/logout", {"csrf": csrf}).status == 303
    assert "Log in" in client.get("/console").body
    assert client.post("/console/maintenance", {"csrf": csrf, "name": "x"}).status == 403


def test_guessing_the_token_is_throttled(console: Console) -> None:
    client = console.client()
    for _ in range(5):
        answer = client.login("wrong-token")
        assert answer.status == 403 and "set-cookie" not in answer.headers
    answer = client.login(TOKEN)  # right, but too soon after the guesses
    assert answer.status == 429 and int(answer.headers["retry-after"]) > 0
    assert "set-cookie" not in answer.headers


def test_a_login_never_redirects_off_the_console(console: Console) -> None:
    client = console.client()
    for target in ("https://evil.example/", "//evil.example/console", "/console\\@evil", "/api"):
        answer = client.post("/console/login", {"token": TOKEN, "next": target})
        assert answer.status == 303 and answer.headers["location"] == "/console", target
    answer = client.post("/console/login", {"token": TOKEN, "next": "/console/targets/shop"})
    assert answer.headers["location"] == "/console/targets/shop"


def test_a_form_that_is_not_utf8_gets_a_clear_error(console: Console) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    conn.request(
        "POST",
        "/console/login",
        body=b"token=%ff%fe\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = conn.getresponse()
    assert answer.status == 400 and b"UTF-8" in answer.read()
    conn.close()
