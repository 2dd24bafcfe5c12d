"""The helpdesk acknowledgement poller, against Jira's documented issue payloads
(``responses``); Request Tracker's own case runs for real in
tests/integrations/test_request_tracker.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integrations.hosted import responses
from tests.integrations.site import Site, site_config, unique_site
from watcher.engine.maintenance import add_window, window_from_request

JIRA = "https://acme.atlassian.net"
P1_NOW = """
rules:
  - {name: tcp-down, probe: tcp, when: failed, priority: P1, summary: "{target}: SMTP port not answering ({message})"}
"""


def issue(category: str, assignee: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "key": "OPS-9",
        "fields": {
            "status": {"name": category, "statusCategory": {"key": category}},
            "assignee": assignee,
        },
    }


@pytest.fixture
def site(tmp_path: Path) -> Site:
    integrations = "  tickets:\n    - jira: " + json.dumps(
        {
            "url": JIRA,
            "project": "OPS",
            "user": "w@acme.example",
            "token": "jira-poll-token",
            "poll_every": "2m",
        }
    )
    s = Site(tmp_path, site_config(unique_site(), integrations), rules=P1_NOW)
    yield s
    s.close()


def open_p1(site: Site) -> None:
    responses.get(f"{JIRA}/rest/api/2/search/jql", json={"issues": []})
    responses.post(
        f"{JIRA}/rest/api/2/issue", status=201, json={"id": "1", "key": "OPS-9", "self": "x"}
    )
    site.smtp_refused()
    site.deliver()
    assert site.store.ticket(site.incident().id, "tickets/jira") == (
        "OPS-9",
        f"{JIRA}/browse/OPS-9",
    )


@responses.activate
def test_an_assignee_acknowledges_and_repaging_stops(site: Site) -> None:
    open_p1(site)
    responses.get(f"{JIRA}/rest/api/2/issue/OPS-9", json=issue("new"))
    assert site.poller.poll() == []
    site.advance(minutes=31)
    site.tick()
    assert site.incident().page_count == 2
    responses.replace(
        responses.GET,
        f"{JIRA}/rest/api/2/issue/OPS-9",
        json=issue("new", {"displayName": "Asha Rao", "accountId": "5b1"}),
    )
    site.advance(minutes=2)
    assert site.poller.poll() == [site.incident().id]
    incident = site.incident()
    assert (incident.state, incident.acknowledged_by) == ("acknowledged", "Asha Rao")
    site.advance(hours=2)
    site.tick()
    assert site.incident().page_count == 2
    timeline = site.store.events(incident.id)
    assert any(e.kind == "acknowledged" and "via helpdesk" in e.message for e in timeline)
    assert site.poller.poll(force=True) == []  # only open incidents are asked about
    assert len([c for c in responses.calls if "/issue/OPS-9?" in c.request.url]) == 2


@responses.activate
def test_a_ticket_moved_on_acknowledges_and_a_new_one_does_not(site: Site) -> None:
    open_p1(site)
    responses.get(f"{JIRA}/rest/api/2/issue/OPS-9", json=issue("new"))
    assert site.poller.poll(force=True) == []
    responses.replace(responses.GET, f"{JIRA}/rest/api/2/issue/OPS-9", json=issue("indeterminate"))
    assert site.poller.poll(force=True) == [site.incident().id]
    assert site.incident().acknowledged_by == "jira user"


@responses.activate
def test_a_helpdesk_that_cannot_answer_acknowledges_nothing_and_is_asked_again(site: Site) -> None:
    open_p1(site)
    responses.get(f"{JIRA}/rest/api/2/issue/OPS-9", status=503, body="down")
    assert site.poller.poll(force=True) == []
    assert site.incident().state == "open"
    responses.replace(responses.GET, f"{JIRA}/rest/api/2/issue/OPS-9", json=issue("done"))
    assert site.poller.poll(force=True) == [
        site.incident().id
    ]  # resolved by hand in Jira: someone had it


@responses.activate
def test_the_api_and_cli_acknowledge_the_same_way(site: Site) -> None:
    open_p1(site)
    responses.post(f"{JIRA}/rest/api/2/issue/OPS-9/comment", status=201, json={"id": "5"})
    site.engine.acknowledge(site.incident().id, by="asha", source="api")
    site.deliver()
    assert site.incident().state == "acknowledged"
    comments = [
        json.loads(c.request.body)["body"]
        for c in responses.calls
        if c.request.url.endswith("/comment")
    ]
    assert comments == ["Acknowledged by asha via api."]  # the helpdesk hears of it
    site.advance(hours=1)
    site.tick()
    assert site.incident().page_count == 1


def test_polling_can_be_turned_off(tmp_path: Path) -> None:
    integrations = "  tickets:\n    - jira: " + json.dumps(
        {"url": JIRA, "project": "OPS", "token": "t0k3n-zz", "poll_every": "0s"}
    )
    s = Site(tmp_path, site_config(unique_site(), integrations))
    try:
        assert not s.poller.active
    finally:
        s.close()


def resolve_in_jira(site: Site) -> int:
    """The P1 recovers and watcher resolves its issue: Jira now shows it done."""
    responses.post(f"{JIRA}/rest/api/2/issue/OPS-9/comment", status=201, json={"id": "5"})
    responses.get(
        f"{JIRA}/rest/api/2/issue/OPS-9/transitions",
        json={"transitions": [{"id": "31", "name": "Done"}]},
    )
    responses.post(f"{JIRA}/rest/api/2/issue/OPS-9/transitions", status=204)
    incident_id = site.incident().id
    site.smtp_ok()
    site.smtp_ok()
    assert site.deliver() and site.incident().state == "resolved"
    responses.get(f"{JIRA}/rest/api/2/issue/OPS-9", json=issue("done"))
    return incident_id


@responses.activate
def test_a_reopening_the_issue_has_not_heard_of_yet_is_not_acknowledged_by_its_old_resolution(
    site: Site,
) -> None:
    open_p1(site)
    incident_id = resolve_in_jira(site)
    site.advance(minutes=5)
    site.smtp_refused()  # failing again: the reopen is queued, Jira still says done
    assert site.incident().state == "open" and site.incident().id == incident_id
    assert site.poller.poll(force=True) == []
    assert site.incident().state == "open"


@responses.activate
def test_a_reopening_held_by_a_maintenance_window_is_not_acknowledged_by_its_old_resolution(
    site: Site,
) -> None:
    open_p1(site)
    resolve_in_jira(site)
    window = window_from_request(
        {"name": "upgrade", "targets": ["mail1"], "duration": "1h"},
        default_timezone="UTC",
        now=site.clock(),
    )
    add_window(site.store, window, by="ops", now=site.clock())
    site.advance(minutes=5)
    site.smtp_refused()  # failing again, held back: nothing queued, Jira still says done
    assert site.incident().state == "open" and not site.incident().notified
    assert site.poller.poll(force=True) == []
    assert site.incident().state == "open"
