"""freshservice against the Freshservice API v2's documented payloads (``responses``)."""

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

FS = "https://acme.freshservice.com"
API = f"{FS}/api/v2"
KEY = "w0123456789abcdef01234567"
OPTIONS = {"url": FS, "api_key": "${FS_KEY}", "requester": "monitoring@acme.example"}


def freshservice(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path, "freshservice", {**OPTIONS, **extra}, environ={"FS_KEY": "fs-key-Qm81zT"}
    )


def ticket(ticket_id: int, status: int, responder: int | None = None) -> dict[str, object]:
    return {
        "id": ticket_id,
        "subject": "[P2][acme] mail1: SMTP port not answering",
        "status": status,
        "priority": 3,
        "urgency": 3,
        "impact": 1,
        "source": 2,
        "requester_id": 14000012345,
        "responder_id": responder,
        "group_id": None,
        "tags": ["watcher", KEY],
        "custom_fields": {},
    }


@responses.activate
def test_it_creates_a_ticket_with_priority_urgency_and_the_fingerprint_tag(
    tmp_path: Path,
) -> None:
    responses.post(f"{API}/tickets", status=201, json={"ticket": ticket(128, 2)})
    ref = freshservice(tmp_path, group_id=14000004321).open(content(priority="P1"))
    assert ref == TicketRef("128", f"{FS}/a/tickets/128")
    (call,) = responses.calls
    fields = body_of(call)
    assert (fields["priority"], fields["urgency"], fields["status"]) == (4, 3, 2)
    assert fields["tags"] == ["watcher", KEY] and fields["email"] == "monitoring@acme.example"
    assert fields["group_id"] == 14000004321
    # the description is HTML: the evidence keeps its lines, and nothing in it becomes markup
    assert "<br>Evidence (probe output)<br>" in fields["description"]
    assert (
        call.request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"fs-key-Qm81zT:X").decode()
    )


@responses.activate
def test_find_filters_open_and_pending_tickets_by_the_tag(tmp_path: Path) -> None:
    responses.get(
        f"{API}/tickets/filter", json={"tickets": [ticket(131, 3), ticket(128, 2)], "total": 2}
    )
    responses.get(f"{API}/tickets/filter", json={"tickets": [], "total": 0})
    fs = freshservice(tmp_path)
    assert fs.find(KEY) == TicketRef("128", f"{FS}/a/tickets/128")  # the oldest
    assert fs.find(KEY) is None
    assert (
        sent()[0][1] == f"/api/v2/tickets/filter?query=\"tag:'{KEY}' AND (status:2 OR status:3)\""
    )


@responses.activate
def test_updates_are_private_notes_beside_field_changes(tmp_path: Path) -> None:
    responses.post(
        f"{API}/tickets/128/notes",
        status=201,
        json={"conversation": {"id": 14000098765, "private": True, "ticket_id": 128}},
    )
    responses.put(f"{API}/tickets/128", json={"ticket": ticket(128, 2)})
    fs = freshservice(tmp_path, urgencies={"P3": 1})
    ref = TicketRef("128")
    fs.comment(ref, content(text="Now: 97% <full>"))
    fs.set_priority(ref, content(priority="P3", text=""))
    fs.resolve(ref, content(text="Recovered"))
    fs.reopen(ref, content(text="Failing again"))
    assert sent() == [
        ("POST", "/api/v2/tickets/128/notes", {"body": "Now: 97% &lt;full&gt;", "private": True}),
        ("PUT", "/api/v2/tickets/128", {"priority": 2, "urgency": 1}),
        ("POST", "/api/v2/tickets/128/notes", {"body": "Recovered", "private": True}),
        ("PUT", "/api/v2/tickets/128", {"status": 4}),
        ("PUT", "/api/v2/tickets/128", {"status": 2, "priority": 3, "urgency": 3}),
        ("POST", "/api/v2/tickets/128/notes", {"body": "Failing again", "private": True}),
    ]


@responses.activate
def test_status_reads_the_status_and_the_responder(tmp_path: Path) -> None:
    for answer in (ticket(128, 2), ticket(128, 3, 14000000777), ticket(128, 5)):
        responses.get(f"{API}/tickets/128", json={"ticket": answer})
    fs = freshservice(tmp_path)
    new, taken, closed = (fs.status(TicketRef("128")) for _ in range(3))
    assert (new.state, new.taken) == ("new", False)  # Open is also where every ticket starts
    assert (taken.state, taken.owner) == ("open", "14000000777")
    assert closed.state == "resolved"


REFUSALS = [
    (400, {"description": "Validation failed", "errors": [{"field": "email", "message": "There is no contact matching the given email", "code": "invalid_value"}]}, None, PermanentError),
    (401, {"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}, None, PermanentError),
    (403, {"code": "access_denied", "message": "You are not authorized to perform this action."}, None, PermanentError),
    (404, "", None, PermanentError),
    (429, {"message": "You have exceeded the limit of requests per minute"}, {"Retry-After": "21"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    fs = freshservice(tmp_path)
    refusal(
        "POST",
        f"{API}/tickets/128/notes",
        case,
        lambda: fs.comment(TicketRef("128"), content(text="x")),
    )


@responses.activate
def test_a_refused_api_key_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "freshservice",
        {**OPTIONS, "api_key": "fs-key-Qm81zT"},
        "fs-key-Qm81zT",
        ("GET", f"{API}/tickets/filter"),
        {"code": "invalid_credentials", "message": "fs-key-Qm81zT is not a valid key"},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": FS, "api_key": "x"}, "'requester' is required"),
        ({**OPTIONS, "urgencies": {"P1": "high"}}, "urgencies.P1: Input should be a valid integer"),
        ({**OPTIONS, "urgencies": {"urgent": 3}}, "not a watcher priority"),
        ({**OPTIONS, "priorities": {"P1": "Urgent"}}, "not a number"),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "freshservice", options, message, {"FS_KEY": "x"})
