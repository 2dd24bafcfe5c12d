"""``watcher test-integration NAME`` for each hosted integration: a clearly marked test
ticket or page goes out, and the command says what happened (and fails loudly)."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest

from tests.integrations.hosted import CONTACTS, responses
from watcher.cli.main import main

SID = "AC" + "0123456789abcdef" * 2
CW_TICKETS = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/service/tickets"
AT_TICKETS = "https://webservices5.autotask.net/ATServicesRest/V1.0/Tickets"
CASES = {
    "jira": (
        {
            "url": "https://acme.atlassian.net",
            "project": "OPS",
            "user": "w@acme.example",
            "token": "tok-1",
        },
        [
            (
                "POST",
                "https://acme.atlassian.net/rest/api/2/issue",
                201,
                {"id": "1", "key": "OPS-1", "self": "x"},
            ),
            ("POST", "https://acme.atlassian.net/rest/api/2/issue/OPS-1/comment", 201, {"id": "2"}),
            (
                "GET",
                "https://acme.atlassian.net/rest/api/2/issue/OPS-1/transitions",
                200,
                {"transitions": [{"id": "31", "name": "Done"}]},
            ),
            ("POST", "https://acme.atlassian.net/rest/api/2/issue/OPS-1/transitions", 204, None),
        ],
        "tickets/jira: test ticket created: OPS-1",
    ),
    "zammad": (
        {"url": "https://hd.acme.example", "token": "tok-2", "customer": "m@acme.example"},
        [
            ("POST", "https://hd.acme.example/api/v1/tickets", 201, {"id": 19}),
            ("PUT", "https://hd.acme.example/api/v1/tickets/19", 200, {"id": 19}),
        ],
        "tickets/zammad: test ticket created: 19",
    ),
    "redmine": (
        {
            "url": "https://rm.acme.example",
            "api_key": "tok-3",
            "project": "ops",
            "fingerprint_field_id": 4,
        },
        [
            ("POST", "https://rm.acme.example/issues.json", 201, {"issue": {"id": 42}}),
            ("PUT", "https://rm.acme.example/issues/42.json", 204, None),
            (  # the resolve is read back: Redmine drops what a workflow forbids
                "GET",
                "https://rm.acme.example/issues/42.json",
                200,
                {"issue": {"id": 42, "status": {"id": 3, "name": "Resolved"}}},
            ),
        ],
        "tickets/redmine: test ticket created: 42",
    ),
    "pagerduty": (
        {"routing_key": "R" * 32},
        [
            (
                "POST",
                "https://events.pagerduty.com/v2/enqueue",
                202,
                {"status": "success", "message": "Event processed"},
            )
        ],
        "paging/pagerduty: test page sent",
    ),
    "opsgenie": (
        {"api_key": "tok-4"},
        [
            (
                "POST",
                "https://api.opsgenie.com/v2/alerts",
                202,
                {"result": "Request will be processed", "requestId": "r"},
            ),
            (
                "POST",
                "https://api.opsgenie.com/v2/alerts/{fp}/close",
                202,
                {"result": "Request will be processed", "requestId": "r"},
            ),
        ],
        "paging/opsgenie: test page sent",
    ),
    "twilio": (
        {"account_sid": SID, "auth_token": "tok-5", "from": "+14155550100"},
        [
            (
                "POST",
                f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json",
                201,
                {"sid": "SM1"},
            )
        ],
        "paging/twilio: test page sent",
    ),
    "servicenow": (
        {"url": "https://acme.service-now.com", "user": "watcher", "password": "tok-6"},
        [
            (
                "POST",
                "https://acme.service-now.com/api/now/table/incident",
                201,
                {"result": {"sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010009"}},
            ),
            (
                "PATCH",
                "https://acme.service-now.com/api/now/table/incident/9d385017c611228701d22104cc95c371",
                200,
                {"result": {"sys_id": "9d385017c611228701d22104cc95c371"}},
            ),
        ],
        "tickets/servicenow: test ticket created: 9d385017c611228701d22104cc95c371",
    ),
    "jira_service_management": (
        {
            "url": "https://acme.atlassian.net",
            "project": "IT",
            "service_desk_id": 10,
            "request_type": "25",
            "user": "w@acme.example",
            "token": "tok-7",
        },
        [
            (
                "POST",
                "https://acme.atlassian.net/rest/servicedeskapi/request",
                201,
                {"issueId": "107001", "issueKey": "IT-1", "requestTypeId": "25"},
            ),
            ("PUT", "https://acme.atlassian.net/rest/api/2/issue/IT-1", 204, None),
            (
                "POST",
                "https://acme.atlassian.net/rest/servicedeskapi/request/IT-1/comment",
                201,
                {"id": "1000", "public": False},
            ),
            (
                "GET",
                "https://acme.atlassian.net/rest/api/2/issue/IT-1/transitions",
                200,
                {"transitions": [{"id": "761", "name": "Resolve this issue"}]},
            ),
            ("POST", "https://acme.atlassian.net/rest/api/2/issue/IT-1/transitions", 204, None),
        ],
        "tickets/jira_service_management: test ticket created: IT-1",
    ),
    "zendesk": (
        {"url": "https://acme.zendesk.com", "email": "w@acme.example", "token": "tok-8"},
        [
            ("POST", "https://acme.zendesk.com/api/v2/tickets.json", 201, {"ticket": {"id": 35}}),
            ("PUT", "https://acme.zendesk.com/api/v2/tickets/35.json", 200, {"ticket": {"id": 35}}),
        ],
        "tickets/zendesk: test ticket created: 35",
    ),
    "freshservice": (
        {"url": "https://acme.freshservice.com", "api_key": "tok-9", "requester": "m@acme.example"},
        [
            ("POST", "https://acme.freshservice.com/api/v2/tickets", 201, {"ticket": {"id": 128}}),
            (
                "POST",
                "https://acme.freshservice.com/api/v2/tickets/128/notes",
                201,
                {"conversation": {"id": 1}},
            ),
            (
                "PUT",
                "https://acme.freshservice.com/api/v2/tickets/128",
                200,
                {"ticket": {"id": 128}},
            ),
        ],
        "tickets/freshservice: test ticket created: 128",
    ),
    "halopsa": (
        {
            "url": "https://acme.halopsa.com",
            "client_id": "c-1",
            "client_secret": "tok-10",
            "customer_id": 12,
            "fingerprint_field_id": 150,
        },
        [
            (
                "POST",
                "https://acme.halopsa.com/auth/token",
                200,
                {"access_token": "eyJ.halo", "token_type": "Bearer", "expires_in": 3600},
            ),
            ("POST", "https://acme.halopsa.com/api/Tickets", 201, {"id": 2051}),
            ("POST", "https://acme.halopsa.com/api/Actions", 201, [{"id": 9}]),
        ],
        "tickets/halopsa: test ticket created: 2051",
    ),
    "connectwise": (
        {
            "url": "https://api-na.myconnectwise.net",
            "company": "acme",
            "public_key": "pub-1",
            "private_key": "tok-11",
            "client_id": "client-1",
            "board": "Help Desk",
            "customer": "AcmeCorp",
            "fingerprint_field_id": 12,
        },
        [
            ("POST", f"{CW_TICKETS}", 201, {"id": 86421}),
            ("POST", f"{CW_TICKETS}/86421/notes", 201, {"id": 4411}),
            ("PATCH", f"{CW_TICKETS}/86421", 200, {"id": 86421}),
        ],
        "tickets/connectwise: test ticket created: 86421",
    ),
    "autotask": (
        {
            "url": "https://webservices5.autotask.net",
            "user": "api@acme.example",
            "secret": "tok-12",
            "integration_code": "code-1",
            "company_id": 0,
            "queue_id": 8,
        },
        [
            ("POST", f"{AT_TICKETS}", 200, {"itemId": 7542}),
            ("POST", f"{AT_TICKETS}/7542/Notes", 200, {"itemId": 31337}),
            ("PATCH", f"{AT_TICKETS}", 200, {"itemId": 7542}),
        ],
        "tickets/autotask: test ticket created: 7542",
    ),
}
PAGERS = ("pagerduty", "opsgenie", "twilio")
SECRET_OPTIONS = {"password", "token", "api_key", "client_secret", "private_key", "secret"}


def _config(tmp_path: Path, kind: str, options: dict[str, object]) -> Path:
    role = "paging" if kind in PAGERS else "tickets"
    path = tmp_path / "watcher.yml"
    path.write_text(
        f"site: acme\nlisten: null\n{CONTACTS}\nintegrations:\n  {role}:\n    - {kind}: {json.dumps(options)}\n"
    )
    return path


@pytest.mark.parametrize("kind", sorted(CASES))
@responses.activate
def test_it_sends_a_marked_test_and_reports_it(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options, answers, expected = CASES[kind]
    for method, url, status, body in answers:
        target = (
            re.compile(re.escape(url).replace(re.escape("{fp}"), r"wtest\d+"))
            if "{fp}" in url
            else url
        )
        responses.add(responses.Response(method, target, status=status, json=body))
    assert main(["test-integration", kind, "-c", str(_config(tmp_path, kind, options))]) == 0
    out = capsys.readouterr().out
    assert expected in out
    assert kind in PAGERS or f"tickets/{kind}: test ticket resolved" in out
    bodies = [c.request.body for c in responses.calls if c.request.body]
    texts = [urllib.parse.unquote_plus(b.decode() if isinstance(b, bytes) else b) for b in bodies]
    assert any("[TEST][acme] watcher: integration test, please ignore" in t for t in texts)


REFUSED = [
    ("servicenow", 401, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"}, "wrong credentials"),
    ("jira_service_management", 403, {"errorMessage": "You do not have permission to create requests in this service desk."}, "permission denied"),
    ("zendesk", 422, {"error": "RecordInvalid", "description": "Record validation errors", "details": {"group": [{"description": "Group: is invalid"}]}}, "refused as invalid"),
    ("freshservice", 400, {"description": "Validation failed", "errors": [{"field": "email", "message": "There is no contact matching the given email", "code": "invalid_value"}]}, "a required field is missing"),
    ("halopsa", 401, {"error": "invalid_client"}, "wrong credentials"),
    ("connectwise", 403, {"code": "Forbidden", "message": "You do not have permission to perform this action on Service Tickets."}, "permission denied"),
    ("autotask", 401, "", "wrong credentials"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "status", "body", "meaning"), REFUSED)
@responses.activate
def test_a_refusal_is_explained_in_one_line(
    kind: str,
    status: int,
    body: object,
    meaning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options, answers, _ = CASES[kind]
    method, url, _, _ = answers[0]
    text = body if isinstance(body, str) else json.dumps(body)
    responses.add(responses.Response(method, url, status=status, body=text))
    assert main(["test-integration", kind, "-c", str(_config(tmp_path, kind, options))]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"tickets/{kind}: FAILED (permanent): ")
    assert meaning in line and f"HTTP {status}" in line
    secrets = [v for k, v in options.items() if k in SECRET_OPTIONS]
    assert secrets and not any(secret in line for secret in secrets)


@responses.activate
def test_a_failure_is_reported_with_whether_a_retry_helps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    responses.post(
        "https://events.pagerduty.com/v2/enqueue",
        status=400,
        json={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Invalid routing key bad-key-1234"],
        },
    )
    assert (
        main(
            [
                "test-integration",
                "pagerduty",
                "-c",
                str(_config(tmp_path, "pagerduty", {"routing_key": "bad-key-1234"})),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "FAILED (permanent)" in err and "Invalid routing key" in err and "bad-key-1234" not in err
    )
