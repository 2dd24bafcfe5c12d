"""pagerduty against the Events API v2 as documented (PagerDuty/api-schema, events-v2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrations.base import PermanentError
from tests.integrations.hosted import body_of, build, content, replies, responses
from tests.integrations.site import Site, site_config, unique_site

ENQUEUE = "https://events.pagerduty.com/v2/enqueue"
KEY = "w0123456789abcdef01234567"
ROUTING = "R0UT1NGKEY0000000000000000000001"
ACCEPTED = {"status": "success", "message": "Event processed", "dedup_key": KEY}


def pagerduty(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path,
        "pagerduty",
        {"routing_key": "${PD_KEY}", **extra},
        role="paging",
        environ={"PD_KEY": ROUTING},
    )


@responses.activate
def test_trigger_acknowledge_resolve_share_the_fingerprint_as_dedup_key(tmp_path: Path) -> None:
    responses.post(ENQUEUE, status=202, json=ACCEPTED)
    pd = pagerduty(tmp_path)
    page = content(priority="P1", priority_name="Urgent", url="http://watcher.acme:9177/")
    assert pd.page(page) == KEY
    pd.page_acknowledge(page)
    pd.page_resolve(page)
    trigger, ack, resolve = (body_of(c) for c in responses.calls)
    assert (
        trigger["routing_key"] == ROUTING
        and trigger["event_action"] == "trigger"
        and trigger["dedup_key"] == KEY
    )
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "127.0.0.15"
    assert payload["summary"] == page.subject and payload["custom_details"]["fingerprint"] == KEY
    assert (
        trigger["client_url"] == "http://watcher.acme:9177/"
        and trigger["links"][0]["href"] == page.runbook
    )
    assert ack == {"routing_key": ROUTING, "event_action": "acknowledge", "dedup_key": KEY}
    assert resolve == {"routing_key": ROUTING, "event_action": "resolve", "dedup_key": KEY}


@responses.activate
def test_severity_follows_the_priority_and_the_map(tmp_path: Path) -> None:
    responses.post(ENQUEUE, status=202, json=ACCEPTED)
    pagerduty(tmp_path).page(content(priority="P3"))
    pagerduty(tmp_path, severities={"P2": "critical"}).page(content(priority="P2"))
    assert [body_of(c)["payload"]["severity"] for c in responses.calls] == ["warning", "critical"]


@responses.activate
def test_a_summary_longer_than_pagerduty_takes_is_cut(tmp_path: Path) -> None:
    responses.post(ENQUEUE, status=202, json=ACCEPTED)
    pagerduty(tmp_path).page(content(subject="x" * 5000))
    assert len(body_of(responses.calls[0])["payload"]["summary"]) == 1024


@responses.activate
def test_an_invalid_routing_key_is_permanent(tmp_path: Path) -> None:
    responses.post(
        ENQUEUE,
        status=400,
        json={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
        },
    )
    with pytest.raises(PermanentError, match="routing_key"):
        pagerduty(tmp_path).page(content())


def refuse_for_ten_minutes(site: Site) -> None:
    """A P1 (tcp-down-long), which pages."""
    for _ in range(11):
        site.smtp_refused()
        site.tick()
        site.deliver()
        site.advance(minutes=1)


@responses.activate
def test_rate_limits_and_outages_are_retried_and_a_forbidden_key_surfaces(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(), "  paging:\n    - pagerduty: " + json.dumps({"routing_key": ROUTING})
        ),
    )
    responses.add_callback(
        responses.POST,
        ENQUEUE,
        callback=replies(
            (429, "", {"Retry-After": "120"}),
            (500, {"status": "error", "message": "Internal error"}, None),
            (202, ACCEPTED, None),
            (403, {"status": "Forbidden", "message": "Forbidden"}, None),
        ),
    )
    try:
        refuse_for_ten_minutes(site)
        (row,) = site.store.outbox(states=["pending"])
        assert (
            row.action == "page"
            and row.attempts == 1
            and row.due_at - site.clock().timestamp() >= 120 - 60
        )
        site.advance(minutes=2)
        site.deliver()  # 500
        site.advance(minutes=1)
        site.deliver()  # 202
        assert [(r.action, r.state, r.attempts) for r in site.store.outbox()] == [
            ("page", "done", 3)
        ]
        site.engine.acknowledge(site.incident().id, by="asha", source="cli")
        site.deliver()  # 403
        assert [(r.action, r.state) for r in site.store.outbox()][-1] == ("page_ack", "failed")
        assert (
            site.metrics.outbox_failures.labels("paging/pagerduty", "permanent")._value.get() == 1
        )
        assert site.metrics.pages_sent.labels("paging/pagerduty")._value.get() == 1
    finally:
        site.close()
