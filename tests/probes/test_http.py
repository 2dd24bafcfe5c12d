"""The http probe against a real HTTP server: what it must not repeat or forward."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from probes.base import ProbeContext, Result, run_probe
from probes.http import HttpConfig, HttpProbe, may_send_credentials
from tests.servers.httpd import HTTPTestServer
from watcher.delivery.httpclient import HttpClients

HTTP = HttpClients()


def check(**settings: Any) -> Result:
    ctx = ProbeContext(site="acme", target="shop", host=None, labels={}, timeout=5.0, http=HTTP)
    (result,) = run_probe(HttpProbe(HttpConfig.model_validate(settings)), ctx, "http")
    return result


def test_a_password_in_the_url_never_reaches_the_message_or_evidence(
    http_server: HTTPTestServer,
) -> None:
    http_server.set_response("/down", status=503, body="maintenance")
    url = http_server.url_for("/down").replace("://", "://watcher:Http-Pw-3e9a@")
    r = check(url=url)
    assert r.status == "fail" and "503" in r.message
    assert "3e9a" not in r.message + r.evidence


def test_a_token_in_the_query_never_reaches_the_message_or_evidence(
    http_server: HTTPTestServer,
) -> None:
    http_server.set_response("/health", status=500)
    r = check(url=http_server.url_for("/health?access_token=Http-Tok-77c2"))
    assert r.status == "fail"
    assert "77c2" not in r.message + r.evidence


def test_credentials_and_headers_follow_a_redirect_only_to_the_configured_host(
    http_server_factory: Callable[..., HTTPTestServer],
) -> None:
    home, elsewhere = http_server_factory(), http_server_factory()
    home.set_response("/old", status=301, headers={"Location": "/new"})
    # another host name for the same loopback address: another site as far as the probe knows
    elsewhere_url = elsewhere.url_for("/landing").replace("127.0.0.1", "localhost")
    home.set_response("/new", status=302, headers={"Location": elsewhere_url})
    r = check(
        url=home.url_for("/old"),
        basic_auth={"user": "monitor", "password": "Basic-Pw-6d1f"},
        headers={"X-Api-Key": "Hdr-Key-2b8c"},
    )
    assert r.status == "ok" and r.metrics["redirects"] == 2
    for request in home.requests:
        assert request.headers.get("Authorization", "").startswith("Basic ")
        assert request.headers.get("X-Api-Key") == "Hdr-Key-2b8c"
    (landed,) = elsewhere.requests
    assert "Authorization" not in landed.headers and "X-Api-Key" not in landed.headers


@pytest.fixture
def trickle() -> Iterator[str]:
    """A server that answers 200 at once, then sends its body a byte every 50 ms for up
    to 20 s: each read gets something, so only a deadline over the whole body ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                for _ in range(400):
                    if stop.wait(0.05):
                        break
                    conn.sendall(b"x")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/stream"
    stop.set()
    listener.close()
    thread.join(5)


def test_a_body_that_trickles_in_ends_at_the_checks_timeout(trickle: str) -> None:
    ctx = ProbeContext(site="acme", target="shop", host=None, labels={}, timeout=1.0, http=HTTP)
    (r,) = run_probe(HttpProbe(HttpConfig(url=trickle)), ctx, "http")
    # Without a deadline over the whole body it read on for the server's 20 s and then
    # called the 1 s check ok ("HTTP 200 in 20106 ms").
    assert (r.status, r.reason) == ("fail", "timeout"), r.message


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://mdm.example/api?page=2", True),
        ("https://MDM.example:8443/other", True),
        ("https://evil.example/api", False),
        ("http://mdm.example/api", False),  # down from https: in clear
        ("https://mdm.example.evil.example/api", False),
    ],
)
def test_which_urls_may_receive_the_configured_credentials(url: str, allowed: bool) -> None:
    assert may_send_credentials("https://mdm.example/api", url) is allowed
    assert may_send_credentials("http://mdm.example/api", url.replace("http://", "https://")) is (
        "evil" not in url
    )
