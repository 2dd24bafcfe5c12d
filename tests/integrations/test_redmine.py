"""redmine against Redmine's documented REST payloads (``responses``)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from integrations.base import PermanentError, TicketRef
from tests.integrations.hosted import body_of, build, content, replies, responses
from tests.integrations.site import Site, site_config, unique_site

URL = "https://redmine.acme.example"
KEY = "w0123456789abcdef01234567"


def redmine(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    options = {
        "url": URL,
        "api_key": "${REDMINE_KEY}",
        "project": "ops",
        "fingerprint_field_id": 4,
        **extra,
    }
    return build(tmp_path, "redmine", options, environ={"REDMINE_KEY": "redmine-key-0987"})


def issue(
    issue_id: int,
    *,
    status: dict[str, object],
    assigned: dict[str, object] | None = None,
    fp: str = KEY,
) -> dict[str, object]:
    data: dict[str, object] = {
        "id": issue_id,
        "project": {"id": 1, "name": "Ops"},
        "tracker": {"id": 1, "name": "Bug"},
        "status": status,
        "priority": {"id": 3, "name": "High"},
        "subject": "x",
        "custom_fields": [{"id": 4, "name": "Watcher Fingerprint", "value": fp}],
    }
    if assigned:
        data["assigned_to"] = assigned
    return data


NEW = {"id": 1, "name": "New", "is_closed": False}


@responses.activate
def test_it_creates_an_issue_with_the_fingerprint_in_a_custom_field(tmp_path: Path) -> None:
    responses.post(f"{URL}/issues.json", status=201, json={"issue": issue(42, status=NEW)})
    ref = redmine(tmp_path, tracker_id=1).open(content(priority="P1"))
    assert ref == TicketRef("42", f"{URL}/issues/42")
    (call,) = responses.calls
    sent = body_of(call)["issue"]
    assert sent["project_id"] == "ops" and sent["priority_id"] == 4 and sent["tracker_id"] == 1
    assert sent["custom_fields"] == [{"id": 4, "value": KEY}]
    assert call.request.headers["X-Redmine-API-Key"] == "redmine-key-0987"


@responses.activate
def test_find_filters_on_the_custom_field_and_checks_the_value(tmp_path: Path) -> None:
    responses.get(
        f"{URL}/issues.json",
        json={
            "issues": [issue(40, status=NEW, fp="wsomethingelse"), issue(42, status=NEW)],
            "total_count": 2,
            "offset": 0,
            "limit": 5,
        },
    )
    assert redmine(tmp_path).find(KEY) == TicketRef("42", f"{URL}/issues/42")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(responses.calls[0].request.url).query)
    assert (
        query["cf_4"] == [KEY] and query["status_id"] == ["open"] and query["project_id"] == ["ops"]
    )


@responses.activate
def test_notes_priority_resolve_reopen_answer_204(tmp_path: Path) -> None:
    responses.put(f"{URL}/issues/42.json", status=204)
    # each status or priority change is read back (Redmine drops what a workflow forbids)
    for status, priority in ((NEW, 4), ({"id": 3, "name": "Resolved"}, 4), (NEW, 3)):
        data = issue(42, status=status)
        data["priority"] = {"id": priority, "name": "x"}
        responses.get(f"{URL}/issues/42.json", json={"issue": data})
    r = redmine(tmp_path)
    ref = TicketRef("42")
    r.comment(ref, content(text="Now: 97%"))
    r.set_priority(ref, content(priority="P1", text="Priority raised"))
    r.resolve(ref, content(text="Resolved"))
    r.reopen(ref, content(text="Failing again"))
    sent = [body_of(c)["issue"] for c in responses.calls if c.request.method == "PUT"]
    assert sent[0] == {"notes": "Now: 97%", "private_notes": False}
    assert sent[1]["priority_id"] == 4 and sent[1]["notes"] == "Priority raised"
    assert sent[2]["status_id"] == 3
    assert sent[3]["status_id"] == 1 and sent[3]["priority_id"] == 3


@responses.activate
def test_status_from_status_and_assignee(tmp_path: Path) -> None:
    url = f"{URL}/issues/42.json"
    responses.get(url, json={"issue": issue(42, status=NEW)})
    responses.get(
        url, json={"issue": issue(42, status={"id": 2, "name": "In Progress", "is_closed": False})}
    )
    responses.get(
        url, json={"issue": issue(42, status=NEW, assigned={"id": 5, "name": "Asha Rao"})}
    )
    r = redmine(tmp_path)
    a, b, c = (r.status(TicketRef("42")) for _ in range(3))
    assert (a.state, a.taken) == ("new", False)
    assert (b.state, b.taken) == ("open", False)
    assert (c.taken, c.owner) == (True, "Asha Rao")


@responses.activate
def test_a_validation_error_is_permanent(tmp_path: Path) -> None:
    responses.post(f"{URL}/issues.json", status=422, json={"errors": ["Priority cannot be blank"]})
    with pytest.raises(PermanentError, match="Priority cannot be blank"):
        redmine(tmp_path).open(content())


@responses.activate
def test_a_wrong_key_is_permanent_and_a_busy_server_is_retried(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - redmine: "
            + json.dumps(
                {
                    "url": URL,
                    "api_key": "redmine-key-1111",
                    "project": "ops",
                    "fingerprint_field_id": 4,
                }
            ),
        ),
    )
    responses.add_callback(
        responses.GET,
        f"{URL}/issues.json",
        callback=replies(
            (503, "Service Unavailable", {"Retry-After": "30"}),
            (401, "", None),
        ),
    )
    try:
        site.smtp_refused()
        site.deliver()
        (row,) = site.store.outbox()
        assert row.state == "pending" and row.due_at - site.clock().timestamp() >= 30
        site.advance(seconds=31)
        site.deliver()
        (row,) = site.store.outbox()
        assert row.state == "failed" and "HTTP 401" in (row.last_error or "")
    finally:
        site.close()
