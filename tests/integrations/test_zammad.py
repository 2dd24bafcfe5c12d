"""zammad against Zammad's documented REST payloads (``responses``)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from integrations.base import TicketRef
from tests.integrations.hosted import body_of, build, content, replies, responses
from tests.integrations.site import Site, site_config, unique_site

URL = "https://helpdesk.acme.example"
KEY = "w0123456789abcdef01234567"
TICKET = {  # the documented create answer, trimmed
    "id": 19,
    "group_id": 2,
    "priority_id": 3,
    "state_id": 1,
    "number": "22019",
    "title": "x",
    "owner_id": 1,
    "customer_id": 10,
    "article_ids": [30],
}


def zammad(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    options = {
        "url": URL,
        "token": "${ZAMMAD_TOKEN}",
        "group": "2nd Level",
        "customer": "monitoring@acme.example",
        **extra,
    }
    return build(tmp_path, "zammad", options, environ={"ZAMMAD_TOKEN": "zammad-token-456"})


@responses.activate
def test_it_creates_a_ticket_tagged_with_the_fingerprint_and_an_internal_note(
    tmp_path: Path,
) -> None:
    responses.post(f"{URL}/api/v1/tickets", status=201, json=TICKET)
    ref = zammad(tmp_path).open(content(priority="P1"))
    assert ref == TicketRef("19", f"{URL}/#ticket/zoom/19")
    (call,) = responses.calls
    sent = body_of(call)
    assert sent["title"].startswith("[P2][acme] mail1:") and sent["group"] == "2nd Level"
    assert sent["customer_id"] == "guess:monitoring@acme.example" and sent["state"] == "new"
    assert sent["priority"] == "3 high"
    assert sent["tags"] == f"watcher,{KEY}"  # set in the create call itself: no window without it
    assert sent["article"]["internal"] is True and sent["article"]["type"] == "note"
    assert "Evidence (probe output)" in sent["article"]["body"]
    assert call.request.headers["Authorization"] == "Token token=zammad-token-456"


@responses.activate
def test_find_takes_the_oldest_ticket_with_the_tag_that_is_not_closed(tmp_path: Path) -> None:
    found = [
        {**TICKET, "id": 12, "state": "closed", "owner": "-"},
        {**TICKET, "id": 19, "state": "open", "owner": "asha"},
        {**TICKET, "id": 25, "state": "new", "owner": "-"},
    ]
    responses.get(f"{URL}/api/v1/tickets/search", json=found)
    assert zammad(tmp_path).find(KEY) == TicketRef("19", f"{URL}/#ticket/zoom/19")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(responses.calls[0].request.url).query)
    assert query["query"] == [f'tags:"{KEY}"'] and query["expand"] == ["true"]


@responses.activate
def test_find_returns_nothing_when_only_closed_tickets_carry_the_tag(tmp_path: Path) -> None:
    responses.get(f"{URL}/api/v1/tickets/search", json=[{**TICKET, "id": 12, "state": "closed"}])
    assert zammad(tmp_path).find(KEY) is None


@responses.activate
def test_notes_priority_close_and_reopen(tmp_path: Path) -> None:
    z = zammad(tmp_path)
    ref = TicketRef("19")
    responses.post(f"{URL}/api/v1/ticket_articles", status=201, json={"id": 31, "ticket_id": 19})
    responses.put(f"{URL}/api/v1/tickets/19", json=TICKET)
    z.comment(ref, content(text="Now: 97% full"))
    z.set_priority(ref, content(priority="P3", text="Priority now P3 (was P2)"))
    z.resolve(ref, content(text="Resolved: recovered"))
    z.reopen(ref, content(text="Failing again"))
    bodies = [body_of(c) for c in responses.calls]
    assert (
        bodies[0]["ticket_id"] == 19
        and bodies[0]["body"] == "Now: 97% full"
        and bodies[0]["internal"] is True
    )
    assert (
        bodies[1]["priority"] == "2 normal"
        and bodies[1]["article"]["body"] == "Priority now P3 (was P2)"
    )
    assert bodies[2]["state"] == "closed" and bodies[2]["article"]["body"] == "Resolved: recovered"
    assert bodies[3]["state"] == "new" and bodies[3]["priority"] == "3 high"


@responses.activate
def test_status_reads_owner_and_state(tmp_path: Path) -> None:
    url = f"{URL}/api/v1/tickets/19"
    responses.get(url, json={**TICKET, "state": "new", "owner": "-", "owner_id": 1})
    responses.get(url, json={**TICKET, "state": "new", "owner": "asha@acme.example", "owner_id": 3})
    responses.get(url, json={**TICKET, "state": "open", "owner": "-", "owner_id": 1})
    z = zammad(tmp_path)
    a, b, c = (z.status(TicketRef("19")) for _ in range(3))
    assert (a.state, a.taken) == ("new", False)
    assert (b.taken, b.owner) == (True, "asha@acme.example")
    assert (c.state, c.taken) == ("open", False)


@responses.activate
def test_an_invalid_token_is_permanent_and_rate_limits_are_retried(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - zammad: "
            + json.dumps(
                {"url": URL, "token": "zammad-token-789", "customer": "monitoring@acme.example"}
            ),
        ),
    )
    responses.add_callback(
        responses.GET,
        f"{URL}/api/v1/tickets/search",
        callback=replies(
            (429, {"error": "Too many requests"}, {"Retry-After": "60"}),
            (401, {"error": "Invalid token!"}, None),
        ),
    )
    try:
        site.smtp_refused()
        site.deliver()
        (row,) = site.store.outbox()
        assert row.state == "pending" and row.due_at - site.clock().timestamp() >= 60
        site.advance(seconds=61)
        site.deliver()
        (row,) = site.store.outbox()
        assert (
            row.state == "failed"
            and "HTTP 401" in (row.last_error or "")
            and "Invalid token" in (row.last_error or "")
        )
    finally:
        site.close()


@responses.activate
def test_a_server_error_is_retried_then_delivered_once(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - zammad: "
            + json.dumps(
                {
                    "url": URL,
                    "user": "watcher",
                    "password": "zammad-pw-1",
                    "customer": "guess:monitoring@acme.example",
                }
            ),
        ),
    )
    responses.get(f"{URL}/api/v1/tickets/search", json=[])
    responses.add_callback(
        responses.POST,
        f"{URL}/api/v1/tickets",
        callback=replies((502, "<html>Bad Gateway</html>", None), (201, TICKET, None)),
    )
    try:
        site.smtp_refused()
        site.deliver()
        site.advance(seconds=10)
        site.deliver()
        assert [(r.state, r.attempts) for r in site.store.outbox()] == [("done", 2)]
        assert (
            body_of([c for c in responses.calls if c.request.method == "POST"][-1])["customer_id"]
            == "guess:monitoring@acme.example"
        )
    finally:
        site.close()


def test_it_needs_a_token_or_a_login(tmp_path: Path) -> None:
    from watcher.config.models import ConfigError

    with pytest.raises(ConfigError, match="token"):
        build(tmp_path, "zammad", {"url": URL, "customer": "m@acme.example"})
