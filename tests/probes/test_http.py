"""The http probe against a real HTTP server: what it must not repeat or forward."""

from __future__ import annotations

from typing import Any

from probes.base import ProbeContext, Result, run_probe
from probes.http import HttpConfig, HttpProbe
from tests.servers.httpd import HTTPTestServer
from watcher.httpclient import HttpClients

HTTP = HttpClients()


def check(**settings: Any) -> Result:
    ctx = ProbeContext(site="acme", target="shop", host=None, labels={}, timeout=5.0, http=HTTP)
    (result,) = run_probe(HttpProbe(HttpConfig.model_validate(settings)), ctx, "http")
    return result


def test_a_password_in_the_url_never_reaches_the_message_or_evidence(http_server: HTTPTestServer) -> None:
    http_server.set_response("/down", status=503, body="maintenance")
    url = http_server.url_for("/down").replace("://", "://watcher:Http-Pw-3e9a@")
    r = check(url=url)
    assert r.status == "fail" and "503" in r.message
    assert "3e9a" not in r.message + r.evidence


def test_a_token_in_the_query_never_reaches_the_message_or_evidence(http_server: HTTPTestServer) -> None:
    http_server.set_response("/health", status=500)
    r = check(url=http_server.url_for("/health?access_token=Http-Tok-77c2"))
    assert r.status == "fail"
    assert "77c2" not in r.message + r.evidence
