"""apprise for real: its json:// service posting to a real HTTP server on loopback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from integrations.base import TransientError
from tests.integrations.hosted import build, content
from tests.servers.httpd import HTTPTestServer

TOKEN = "h00kT0ken4242"


def apprise_to(tmp_path: Path, *urls: str, **extra: object):  # type: ignore[no-untyped-def]
    environ = {f"URL{i}": url for i, url in enumerate(urls)}
    return build(
        tmp_path,
        "apprise",
        {"urls": [f"${{URL{i}}}" for i in range(len(urls))], **extra},
        role="paging",
        environ=environ,
    )


def test_a_page_and_its_resolution_reach_the_service(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    url = f"json://127.0.0.1:{http_server.port}/hooks/{TOKEN}"
    a = apprise_to(tmp_path, url)
    a.page(content(priority="P1", text="Repage 2: still unacknowledged"))
    a.page_acknowledge(content())  # off by default
    a.page_resolve(content(text="Resolved: recovered"))
    posted = [json.loads(r.body) for r in http_server.requests_for(f"/hooks/{TOKEN}")]
    assert [p["type"] for p in posted] == ["failure", "success"]
    assert posted[0]["title"].startswith("[P2][acme] mail1:")
    assert (
        posted[0]["message"].startswith("Repage 2: still unacknowledged")
        and "Evidence (probe output)" in posted[0]["message"]
    )
    assert posted[1]["title"].startswith("[Resolved]")


def test_a_service_that_fails_is_retried_without_repeating_the_ones_that_took_it(
    tmp_path: Path, http_server_factory
) -> None:  # type: ignore[no-untyped-def]
    good, bad = http_server_factory(), http_server_factory()
    bad.set_default(status=500, body="down")
    a = apprise_to(tmp_path, f"json://127.0.0.1:{good.port}/a", f"json://127.0.0.1:{bad.port}/b")
    page = content(delivery_id=12)
    with pytest.raises(TransientError, match=r"urls\[1\] did not take"):
        a.page(page)
    bad.set_default(status=200)
    a.page(page)
    assert len(good.requests) == 1 and len(bad.requests) == 2


def test_a_url_apprise_does_not_know_is_refused_at_load_without_showing_it(tmp_path: Path) -> None:
    from watcher.config.models import ConfigError

    with pytest.raises(ConfigError) as raised:
        apprise_to(tmp_path, f"nosuchservice://{TOKEN}@example.org")
    assert "urls[0] is not a URL apprise understands" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_the_tokens_in_its_urls_stay_out_of_the_logs(
    tmp_path: Path, http_server: HTTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    from watcher.core.secret import redact

    caplog.set_level(logging.DEBUG)
    http_server.set_default(status=500)
    a = apprise_to(
        tmp_path,
        f"json://user:Pa55word99@127.0.0.1:{http_server.port}/hooks/{TOKEN}?key=qu3ryS3cret",
    )
    with pytest.raises(TransientError):
        a.page(content())
    text = "\n".join(
        redact(r.getMessage()) for r in caplog.records
    )  # as the daemon's formatter writes them
    for secret in (TOKEN, "Pa55word99", "qu3ryS3cret"):
        assert secret not in text
    assert repr(a.config).count("********") == 1
