"""zendesk against the Zendesk Support Tickets API's documented payloads (``responses``)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from integrations.base import PermanentError, TicketRef, TransientError
from tests.integrations.hosted import body_of, build, content, responses
from tests.integrations.itsm import (
    Refusal,
    check_a_refused_credential,
    refusal,
    refused_at_load,
    sent,
)

ZD = "https://acme.zendesk.com"
KEY = "w0123456789abcdef01234567"
OPTIONS = {"url": ZD, "email": "watcher@acme.example", "token": "${ZENDESK_TOKEN}"}


def zendesk(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path, "zendesk", {**OPTIONS, **extra}, environ={"ZENDESK_TOKEN": "zd-token-6Wk2"}
    )


def ticket(ticket_id: int, status: str, assignee: int | None = None) -> dict[str, object]:
    return {
        "url": f"{ZD}/api/v2/tickets/{ticket_id}.json",
        "id": ticket_id,
        "external_id": KEY,
        "type": "incident",
        "subject": "[P2][acme] mail1: SMTP port not answering",
        "priority": "high",
        "status": status,
        "requester_id": 20978392,
        "assignee_id": assignee,
        "group_id": 98738,
        "tags": ["watcher"],
    }


@responses.activate
def test_it_creates_a_ticket_with_a_private_comment_and_the_fingerprint_as_external_id(
    tmp_path: Path,
) -> None:
    responses.post(f"{ZD}/api/v2/tickets.json", status=201, json={"ticket": ticket(35436, "new")})
    ref = zendesk(tmp_path, group_id=98738).open(content(priority="P1"))
    assert ref == TicketRef("35436", f"{ZD}/agent/tickets/35436")
    (call,) = responses.calls
    fields = body_of(call)["ticket"]
    assert fields["external_id"] == KEY and fields["priority"] == "urgent"
    assert fields["comment"]["public"] is False and "Evidence" in fields["comment"]["body"]
    assert (fields["type"], fields["group_id"], fields["tags"]) == ("incident", 98738, ["watcher"])
    assert (
        call.request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"watcher@acme.example/token:zd-token-6Wk2").decode()
    )


@responses.activate
def test_find_lists_tickets_by_external_id_and_skips_solved_ones(tmp_path: Path) -> None:
    url = f"{ZD}/api/v2/tickets.json"
    page = {"next_page": None, "previous_page": None}
    responses.get(
        url,
        json={"tickets": [ticket(35001, "solved"), ticket(35436, "open")], "count": 2, **page},
    )
    responses.get(url, json={"tickets": [ticket(35001, "closed")], "count": 1, **page})
    zd = zendesk(tmp_path)
    assert zd.find(KEY) == TicketRef("35436", f"{ZD}/agent/tickets/35436")
    assert zd.find(KEY) is None
    assert sent()[0][1] == f"/api/v2/tickets.json?external_id={KEY}"


@responses.activate
def test_each_update_is_one_request_with_its_private_comment(tmp_path: Path) -> None:
    responses.put(f"{ZD}/api/v2/tickets/35436.json", json={"ticket": ticket(35436, "open")})
    zd = zendesk(tmp_path)
    ref = TicketRef("35436")
    zd.comment(ref, content(text="Now: 97% full"))
    zd.set_priority(ref, content(priority="P1", text="Raised to P1"))
    zd.resolve(ref, content(text="Recovered"))
    zd.reopen(ref, content(text="Failing again"))

    def note(text: str) -> dict[str, object]:
        return {"comment": {"body": text, "public": False}}

    assert [body["ticket"] for _, _, body in sent()] == [
        note("Now: 97% full"),
        {"priority": "urgent", **note("Raised to P1")},
        {"status": "solved", **note("Recovered")},
        {"status": "open", "priority": "high", **note("Failing again")},
    ]


@responses.activate
def test_status_reads_the_status_and_the_assignee(tmp_path: Path) -> None:
    url = f"{ZD}/api/v2/tickets/35436.json"
    for answer in (ticket(35436, "new"), ticket(35436, "open", 235323), ticket(35436, "solved")):
        responses.get(url, json={"ticket": answer})
    zd = zendesk(tmp_path)
    new, taken, solved = (zd.status(TicketRef("35436")) for _ in range(3))
    assert (new.state, new.taken) == ("new", False)
    assert (taken.state, taken.taken, taken.owner) == ("open", True, "235323")
    assert solved.state == "resolved"


REFUSALS = [
    (401, {"error": "Couldn't authenticate you"}, None, PermanentError),
    (403, {"error": "Forbidden", "description": "You do not have access to this page. Please contact the account owner of this help desk for further help."}, None, PermanentError),
    (404, {"error": "RecordNotFound", "description": "Not found"}, None, PermanentError),
    (422, {"error": "RecordInvalid", "description": "Record validation errors", "details": {"status": [{"description": "Status: closed prevents ticket update", "error": "InvalidValue"}]}}, None, PermanentError),
    (429, {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}, {"Retry-After": "53"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    zd = zendesk(tmp_path)
    refusal(
        "PUT",
        f"{ZD}/api/v2/tickets/35436.json",
        case,
        lambda: zd.resolve(TicketRef("35436"), content(text="Recovered")),
    )


@responses.activate
def test_a_refused_token_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "zendesk",
        {**OPTIONS, "token": "zd-token-6Wk2"},
        "zd-token-6Wk2",
        ("GET", f"{ZD}/api/v2/tickets.json"),
        {"error": "Couldn't authenticate you", "token": "zd-token-6Wk2"},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": ZD, "token": "x"}, "'email' is required"),
        ({"url": ZD, "email": "w@acme.example"}, "'token' is required"),
        ({**OPTIONS, "group_id": "Support"}, "group_id"),
        ({**OPTIONS, "url": "acme.zendesk.com"}, "http:// or https://"),
        ({**OPTIONS, "priorities": {"P1": "critical"}}, "none of Zendesk's: urgent, high"),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "zendesk", options, message, {"ZENDESK_TOKEN": "x"})
