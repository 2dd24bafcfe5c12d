"""``watcher test-integration NAME`` for each hosted integration: a clearly marked test
ticket or page goes out, and the command says what happened (and fails loudly)."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest

from tests.integrations.hosted import CONTACTS, responses
from watcher.cli import main

SID = "AC" + "0123456789abcdef" * 2
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
}


def _config(tmp_path: Path, kind: str, options: dict[str, object]) -> Path:
    role = "paging" if kind in ("pagerduty", "opsgenie", "twilio") else "tickets"
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
    assert expected in capsys.readouterr().out
    body = responses.calls[0].request.body
    text = urllib.parse.unquote_plus(body.decode() if isinstance(body, bytes) else body)
    assert "[TEST][acme] watcher: integration test, please ignore" in text


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
