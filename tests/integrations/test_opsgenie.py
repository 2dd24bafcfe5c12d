"""opsgenie against the documented Alert API v2 payloads (``responses``)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.base import PermanentError, TransientError
from tests.integrations.hosted import body_of, build, content, replies, responses
from tests.integrations.site import Site, site_config, unique_site

API = "https://api.opsgenie.com/v2/alerts"
KEY = "w0123456789abcdef01234567"
ACCEPTED = {
    "result": "Request will be processed",
    "took": 0.302,
    "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120",
}
STATUS = re.compile(re.escape(API) + r"/requests/[0-9a-f-]+$")


def status(success: bool, text: str, action: str = "Create") -> dict[str, object]:
    """Get Request Status's answer, as documented."""
    return {
        "data": {
            "success": success,
            "action": action,
            "processedAt": "2026-11-23T04:00:00.401Z",
            "integrationId": "c9cec2cb-e782-4ebb-bc1d-1b2fa703cf03",
            "isSuccess": success,
            "status": text,
            "alertId": "8743a1f2-8cc4-4e48-8b4d-eb7b9a0a4b7e" if success else "",
            "alias": KEY,
        },
        "took": 0.022,
        "requestId": ACCEPTED["requestId"],
    }


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("integrations.opsgenie.CONFIRM_WAITS", (0.0, 0.0, 0.0))
    yield


def posts() -> list:  # type: ignore[type-arg]
    return [c for c in responses.calls if c.request.method == "POST"]


def opsgenie(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path,
        "opsgenie",
        {"api_key": "${OG_KEY}", **extra},
        role="paging",
        environ={"OG_KEY": "eb243592-faa2-4ba2-a551-1afdf565c889"},
    )


@responses.activate
def test_create_acknowledge_close_by_alias(tmp_path: Path) -> None:
    responses.get(STATUS, json=status(True, "Created alert"))
    responses.post(API, status=202, json=ACCEPTED)
    responses.post(f"{API}/{KEY}/acknowledge", status=202, json=ACCEPTED)
    responses.post(f"{API}/{KEY}/close", status=202, json=ACCEPTED)
    og = opsgenie(tmp_path, responders=[{"type": "team", "name": "Ops"}])
    page = content(priority="P1", subject="[P1][acme] mail1: " + "SMTP down " * 30)
    assert og.page(page) == KEY
    og.page_acknowledge(content(text="Acknowledged by asha"))
    og.page_resolve(content(text="Resolved: recovered"))
    create, ack, close = posts()
    assert len(responses.calls) == 6  # each request's status asked once
    alert = body_of(create)
    assert alert["alias"] == KEY and alert["priority"] == "P1" and alert["entity"] == "mail1"
    assert len(alert["message"]) == 130 and alert["message"].endswith("...")
    assert alert["responders"] == [{"type": "team", "name": "Ops"}] and "watcher" in alert["tags"]
    assert (
        create.request.headers["Authorization"] == "GenieKey eb243592-faa2-4ba2-a551-1afdf565c889"
    )
    assert ack.request.url.endswith(f"/{KEY}/acknowledge?identifierType=alias")
    assert body_of(ack)["note"] == "Acknowledged by asha"
    assert close.request.url.endswith(f"/{KEY}/close?identifierType=alias")


@responses.activate
def test_the_eu_instance_and_a_priority_map(tmp_path: Path) -> None:
    responses.get(
        re.compile(r"https://api\.eu\.opsgenie\.com/v2/alerts/requests/.*"),
        json=status(True, "Created alert"),
    )
    responses.post("https://api.eu.opsgenie.com/v2/alerts", status=202, json=ACCEPTED)
    opsgenie(tmp_path, url="https://api.eu.opsgenie.com", priorities={"P2": "P1"}).page(
        content(priority="P2")
    )
    assert body_of(responses.calls[0])["priority"] == "P1"


@responses.activate
def test_a_key_opsgenie_does_not_know_is_permanent(tmp_path: Path) -> None:
    responses.post(
        API, status=401, json={"message": "Could not authenticate", "took": 0.0, "requestId": "d1"}
    )
    with pytest.raises(PermanentError, match="Could not authenticate"):
        opsgenie(tmp_path).page(content())


@responses.activate
def test_throttling_is_transient_with_retry_after(tmp_path: Path) -> None:
    responses.post(
        API,
        status=429,
        json={"message": "Too many requests", "took": 0.0, "requestId": "d2"},
        headers={"X-RateLimit-State": "THROTTLED", "Retry-After": "10"},
    )
    with pytest.raises(TransientError) as raised:
        opsgenie(tmp_path).page(content())
    assert raised.value.retry_after == 10


@responses.activate
def test_an_outage_is_retried_through_the_outbox_and_delivered_once(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(), "  paging:\n    - opsgenie: " + json.dumps({"api_key": "og-key-2222"})
        ),
    )
    responses.add_callback(
        responses.POST,
        API,
        callback=replies((503, "Service Unavailable", None), (202, ACCEPTED, None)),
    )
    responses.get(STATUS, json=status(True, "Created alert"))
    try:
        for _ in range(11):  # refused for ten minutes: a P1, which pages
            site.smtp_refused()
            site.tick()
            site.deliver()
            site.advance(minutes=1)
        site.deliver()  # past the backoff of the first, failed attempt
        assert [(r.action, r.state, r.attempts) for r in site.store.outbox()] == [
            ("page", "done", 2)
        ]
        assert len(posts()) == 2
    finally:
        site.close()


def test_a_priority_opsgenie_does_not_have_is_refused_at_load(tmp_path: Path) -> None:
    from watcher.config.models import ConfigError

    with pytest.raises(ConfigError, match="not an Opsgenie priority"):
        opsgenie(tmp_path, priorities={"P1": "critical"})


@responses.activate
def test_an_alert_opsgenie_accepts_and_then_refuses_to_create_is_a_permanent_failure(
    tmp_path: Path,
) -> None:
    responses.post(API, status=202, json=ACCEPTED)
    responses.get(
        STATUS, status=404, json={"message": "Request not found. It might not be processed, yet."}
    )
    responses.get(STATUS, json=status(False, "Responders not found: [team Nops]"))
    with pytest.raises(
        PermanentError, match=r"accepted, then refused by Opsgenie: Responders not found"
    ):
        opsgenie(tmp_path, responders=[{"type": "team", "name": "Nops"}]).page(content())
    assert len(responses.calls) == 3  # asked again after "not processed, yet"


@responses.activate
def test_a_request_not_processed_within_the_waits_counts_as_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    responses.post(API, status=202, json=ACCEPTED)
    responses.get(
        STATUS, status=404, json={"message": "Request not found. It might not be processed, yet."}
    )
    with caplog.at_level(logging.INFO, logger="watcher.integrations.opsgenie"):
        assert opsgenie(tmp_path).page(content()) == KEY
    assert len(responses.calls) == 4 and "not processed by Opsgenie" in caplog.text


@responses.activate
def test_closing_an_alert_already_closed_by_hand_is_logged_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    responses.post(f"{API}/{KEY}/close", status=202, json=ACCEPTED)
    responses.get(STATUS, json=status(False, "Alert does not exist", action="Close"))
    with caplog.at_level(logging.WARNING, logger="watcher.integrations.opsgenie"):
        opsgenie(tmp_path).page_resolve(content(text="Resolved: recovered"))
    assert "not applied by Opsgenie: Alert does not exist" in caplog.text
