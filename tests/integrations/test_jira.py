"""jira against Jira Cloud's and Data Center's documented REST v2 payloads (``responses``)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from integrations.base import PermanentError, TicketRef, TransientError
from tests.integrations.hosted import body_of, build, content, replies, responses
from tests.integrations.site import Site, site_config, unique_site

CLOUD = "https://acme.atlassian.net"
DC = "https://jira.acme.example"
KEY = "w0123456789abcdef01234567"


def cloud(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    options = {
        "url": CLOUD,
        "project": "OPS",
        "user": "watcher@acme.example",
        "token": "${JIRA_TOKEN}",
        **extra,
    }
    return build(tmp_path, "jira", options, environ={"JIRA_TOKEN": "jira-api-token-123"})


@responses.activate
def test_it_creates_an_issue_with_the_mapped_priority_and_the_fingerprint_label(
    tmp_path: Path,
) -> None:
    responses.post(
        f"{CLOUD}/rest/api/2/issue",
        status=201,
        json={"id": "10000", "key": "OPS-24", "self": f"{CLOUD}/rest/api/2/issue/10000"},
    )
    ref = cloud(tmp_path).open(content(priority="P1", priority_name="Urgent"))
    assert ref == TicketRef("OPS-24", f"{CLOUD}/browse/OPS-24")
    (call,) = responses.calls
    fields = body_of(call)["fields"]
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Task"}
    assert fields["priority"] == {"name": "Highest"}
    assert fields["labels"] == ["watcher", KEY]
    assert (
        fields["summary"].startswith("[P2][acme] mail1:")
        and "Evidence (probe output)" in fields["description"]
    )
    auth = call.request.headers["Authorization"]
    assert auth == "Basic " + base64.b64encode(b"watcher@acme.example:jira-api-token-123").decode()
    assert call.request.headers["User-Agent"].startswith("watcher/")


@responses.activate
def test_a_custom_field_can_carry_the_fingerprint_and_priorities_are_configurable(
    tmp_path: Path,
) -> None:
    responses.post(
        f"{CLOUD}/rest/api/2/issue", status=201, json={"id": "1", "key": "OPS-1", "self": "x"}
    )
    jira = cloud(
        tmp_path,
        fingerprint_field="customfield_10050",
        priorities={"P2": "Major"},
        issue_type="Incident",
    )
    jira.open(content())
    fields = body_of(responses.calls[0])["fields"]
    assert fields["customfield_10050"] == KEY and fields["labels"] == ["watcher"]
    assert fields["priority"] == {"name": "Major"} and fields["issuetype"] == {"name": "Incident"}


@responses.activate
def test_find_searches_open_issues_with_jql_on_cloud_and_data_center(tmp_path: Path) -> None:
    responses.get(
        f"{CLOUD}/rest/api/2/search/jql",
        json={"issues": [{"id": "10000", "key": "OPS-24", "fields": {}}], "isLast": True},
    )
    assert cloud(tmp_path).find(KEY) == TicketRef("OPS-24", f"{CLOUD}/browse/OPS-24")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(responses.calls[0].request.url).query)
    assert query["jql"] == [
        f'project = "OPS" AND labels = "{KEY}" AND statusCategory != Done ORDER BY created ASC'
    ]

    responses.get(
        f"{DC}/rest/api/2/search", json={"startAt": 0, "maxResults": 5, "total": 0, "issues": []}
    )
    dc = build(
        tmp_path,
        "jira",
        {
            "url": DC,
            "project": "OPS",
            "token": "pat-xyz-1234",
            "fingerprint_field": "customfield_10050",
        },
    )
    assert dc.find(KEY) is None
    call = responses.calls[1]
    assert call.request.headers["Authorization"] == "Bearer pat-xyz-1234"  # a personal access token
    jql = urllib.parse.parse_qs(urllib.parse.urlsplit(call.request.url).query)["jql"][0]
    assert f'cf[10050] ~ "{KEY}"' in jql


@responses.activate
def test_comments_priority_changes_and_transitions(tmp_path: Path) -> None:
    jira = cloud(tmp_path)
    ref = TicketRef("OPS-24")
    responses.post(
        f"{CLOUD}/rest/api/2/issue/OPS-24/comment", status=201, json={"id": "10010", "body": "x"}
    )
    responses.put(f"{CLOUD}/rest/api/2/issue/OPS-24", status=204)
    transitions = {
        "transitions": [
            {
                "id": "11",
                "name": "To Do",
                "to": {"name": "To Do", "statusCategory": {"key": "new"}},
            },
            {"id": "31", "name": "Done", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
        ]
    }
    responses.get(f"{CLOUD}/rest/api/2/issue/OPS-24/transitions", json=transitions)
    responses.post(f"{CLOUD}/rest/api/2/issue/OPS-24/transitions", status=204)

    jira.comment(ref, content(text="Now: 97% full"))
    jira.set_priority(ref, content(priority="P1", text="Priority raised from P2 to P1"))
    jira.resolve(ref, content(text="Resolved: recovered"))
    jira.reopen(ref, content(text="Failing again"))
    sent = [
        (
            c.request.method,
            urllib.parse.urlsplit(c.request.url).path,
            c.request.body and json.loads(c.request.body),
        )
        for c in responses.calls
    ]
    assert sent == [
        ("POST", "/rest/api/2/issue/OPS-24/comment", {"body": "Now: 97% full"}),
        ("PUT", "/rest/api/2/issue/OPS-24", {"fields": {"priority": {"name": "Highest"}}}),
        ("POST", "/rest/api/2/issue/OPS-24/comment", {"body": "Priority raised from P2 to P1"}),
        ("POST", "/rest/api/2/issue/OPS-24/comment", {"body": "Resolved: recovered"}),
        ("GET", "/rest/api/2/issue/OPS-24/transitions", None),
        ("POST", "/rest/api/2/issue/OPS-24/transitions", {"transition": {"id": "31"}}),
        ("GET", "/rest/api/2/issue/OPS-24/transitions", None),
        (
            "POST",
            "/rest/api/2/issue/OPS-24/transitions",
            {"transition": {"id": "11"}},
        ),  # "To Do" reopens
        ("PUT", "/rest/api/2/issue/OPS-24", {"fields": {"priority": {"name": "High"}}}),
        ("POST", "/rest/api/2/issue/OPS-24/comment", {"body": "Failing again"}),
    ]


@responses.activate
def test_a_workflow_without_the_named_transition_is_a_permanent_error_naming_what_it_offers(
    tmp_path: Path,
) -> None:
    responses.get(
        f"{CLOUD}/rest/api/2/issue/OPS-24/transitions",
        json={"transitions": [{"id": "5", "name": "Triage"}]},
    )
    with pytest.raises(PermanentError, match="offers: Triage"):
        cloud(tmp_path).resolve(TicketRef("OPS-24"), content())


@responses.activate
def test_status_reads_the_category_and_the_assignee(tmp_path: Path) -> None:
    url = f"{CLOUD}/rest/api/2/issue/OPS-24"
    responses.get(
        url,
        json={
            "key": "OPS-24",
            "fields": {
                "status": {"name": "Open", "statusCategory": {"key": "new"}},
                "assignee": None,
            },
        },
    )
    responses.get(
        url,
        json={
            "key": "OPS-24",
            "fields": {
                "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
                "assignee": {"accountId": "5b10a", "displayName": "Asha Rao"},
            },
        },
    )
    jira = cloud(tmp_path)
    first, second = jira.status(TicketRef("OPS-24")), jira.status(TicketRef("OPS-24"))
    assert (first.state, first.taken) == ("new", False)
    assert (second.state, second.taken, second.owner) == ("open", True, "Asha Rao")


@responses.activate
def test_a_rejected_token_is_permanent_and_surfaces(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - jira: "
            + json.dumps(
                {
                    "url": CLOUD,
                    "project": "OPS",
                    "user": "w@acme.example",
                    "token": "revoked-token-1",
                }
            ),
        ),
    )
    responses.get(
        f"{CLOUD}/rest/api/2/search/jql",
        status=401,
        json={
            "errorMessages": [
                "You are not authenticated. Authentication required to perform this operation."
            ],
            "errors": {},
        },
    )
    try:
        site.smtp_refused()
        site.deliver()
        (row,) = site.store.outbox()
        assert (
            row.state == "failed"
            and "HTTP 401" in (row.last_error or "")
            and "not authenticated" in (row.last_error or "")
        )
        assert site.metrics.outbox_failures.labels("tickets/jira", "permanent")._value.get() == 1
    finally:
        site.close()


@responses.activate
def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after(tmp_path: Path) -> None:
    site = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - jira: "
            + json.dumps(
                {"url": CLOUD, "project": "OPS", "user": "w@acme.example", "token": "jira-token-2"}
            ),
        ),
    )
    responses.get(f"{CLOUD}/rest/api/2/search/jql", json={"issues": []})
    responses.add_callback(
        responses.POST,
        f"{CLOUD}/rest/api/2/issue",
        callback=replies(
            (429, {"errorMessages": ["Rate limit exceeded"]}, {"Retry-After": "90"}),
            (503, "<html>Service Unavailable</html>", None),
            (201, {"id": "10001", "key": "OPS-25", "self": "x"}, None),
        ),
    )
    try:
        site.smtp_refused()
        site.deliver()
        (row,) = site.store.outbox()
        assert row.state == "pending" and row.attempts == 1
        assert row.due_at - site.clock().timestamp() >= 90  # Retry-After, not the 5 s backoff
        site.advance(seconds=89)
        site.deliver()
        assert site.store.outbox()[0].attempts == 1  # not before Retry-After
        site.advance(seconds=2)
        site.deliver()
        (row,) = site.store.outbox()
        assert row.state == "pending" and row.attempts == 2 and "HTTP 503" in (row.last_error or "")
        wait = row.due_at - site.clock().timestamp()
        assert 8 <= wait <= 12  # base 5 s doubled, jittered by 20%
        site.advance(seconds=13)
        site.deliver()
        assert [(r.action, r.state, r.attempts) for r in site.store.outbox()] == [
            ("open", "done", 3)
        ]
        assert site.store.ticket(site.incident().id, "tickets/jira") == (
            "OPS-25",
            f"{CLOUD}/browse/OPS-25",
        )
        assert len([c for c in responses.calls if c.request.method == "POST"]) == 3
    finally:
        site.close()


def test_a_network_failure_is_transient(tmp_path: Path) -> None:
    jira = build(
        tmp_path,
        "jira",
        {"url": "http://127.0.0.1:9", "project": "OPS", "token": "t0k3n-abc", "timeout": "2s"},
    )
    with pytest.raises(TransientError, match="ConnectionError"):
        jira.find(KEY)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"project": "OPS", "token": "x"}, "'url' is required"),
        ({"url": CLOUD, "token": "x"}, "'project' is required"),
        (
            {
                "url": CLOUD,
                "project": "OPS",
                "token": "x",
                "fingerprint_field": "Watcher Fingerprint",
            },
            "customfield_10050",
        ),
        (
            {"url": CLOUD, "project": "OPS", "token": "x", "priorities": {"urgent": "Highest"}},
            "not a watcher priority",
        ),
        (
            {"url": CLOUD, "project": "OPS", "token": "x", "labels": ["two words"]},
            "cannot contain spaces",
        ),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    from watcher.config.models import ConfigError

    with pytest.raises(ConfigError, match=message):
        build(tmp_path, "jira", options)
