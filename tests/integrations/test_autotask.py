"""autotask against the Autotask REST API's documented payloads (``responses``)."""

from __future__ import annotations

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

AT = "https://webservices5.autotask.net"
TICKETS = f"{AT}/ATServicesRest/V1.0/Tickets"
KEY = "w0123456789abcdef01234567"
OPTIONS = {
    "url": AT,
    "user": "watcher-api@acme.example",
    "secret": "${AUTOTASK_SECRET}",
    "integration_code": "${AUTOTASK_CODE}",
    "company_id": 0,
    "queue_id": 29682833,
}
ENV = {"AUTOTASK_SECRET": "at-secret-J7mW", "AUTOTASK_CODE": "AT-TRACK-9K2"}


def autotask(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(tmp_path, "autotask", {**OPTIONS, **extra}, environ=ENV)


def item(status: int = 1, resource: int | None = None) -> dict[str, object]:
    return {
        "id": 7542,
        "ticketNumber": "T20261204.0003",
        "title": "[P2][acme] mail1: SMTP port not answering",
        "companyID": 0,
        "queueID": 29682833,
        "status": status,
        "priority": 1,
        "assignedResourceID": resource,
        "userDefinedFields": [{"name": "Watcher Fingerprint", "value": KEY}],
    }


@responses.activate
def test_it_creates_a_ticket_in_the_queue_with_the_fingerprint_udf(tmp_path: Path) -> None:
    responses.post(TICKETS, json={"itemId": 7542})
    assert autotask(tmp_path, ticket_type=5).open(content(priority="P1")) == TicketRef("7542")
    (call,) = responses.calls
    fields = body_of(call)
    assert (fields["companyID"], fields["queueID"], fields["status"]) == (0, 29682833, 1)
    assert fields["priority"] == 4 and fields["ticketType"] == 5  # 4: Critical
    assert fields["userDefinedFields"] == [{"name": "Watcher Fingerprint", "value": KEY}]
    headers = call.request.headers
    assert (headers["UserName"], headers["Secret"], headers["ApiIntegrationCode"]) == (
        "watcher-api@acme.example",
        "at-secret-J7mW",
        "AT-TRACK-9K2",
    )


@responses.activate
def test_find_queries_tickets_not_complete_by_the_udf(tmp_path: Path) -> None:
    page = {"count": 2, "requestCount": 5, "prevPageUrl": None, "nextPageUrl": None}
    responses.post(
        f"{TICKETS}/query",
        json={"items": [{"id": 7601, "status": 8}, {"id": 7542, "status": 1}], "pageDetails": page},
    )
    responses.post(f"{TICKETS}/query", json={"items": [], "pageDetails": {**page, "count": 0}})
    at = autotask(tmp_path)
    assert at.find(KEY) == TicketRef("7542")
    assert at.find(KEY) is None
    assert body_of(responses.calls[0])["filter"] == [
        {"op": "eq", "field": "Watcher Fingerprint", "udf": True, "value": KEY},
        {"op": "noteq", "field": "status", "value": 5},
    ]


@responses.activate
def test_updates_are_ticket_notes_and_patches(tmp_path: Path) -> None:
    responses.post(f"{TICKETS}/7542/Notes", json={"itemId": 31337})
    responses.patch(TICKETS, json={"itemId": 7542})
    at = autotask(tmp_path)
    ref = TicketRef("7542")
    at.comment(ref, content(text="Now: 97% full"))
    at.set_priority(ref, content(priority="P3", text=""))
    at.resolve(ref, content(text="Recovered"))
    at.reopen(ref, content(text=""))
    note = {"title": "watcher", "noteType": 1, "publish": 1}
    path = "/ATServicesRest/V1.0/Tickets"
    assert sent() == [
        ("POST", f"{path}/7542/Notes", {**note, "description": "Now: 97% full"}),
        ("PATCH", path, {"id": 7542, "priority": 2}),
        ("POST", f"{path}/7542/Notes", {**note, "description": "Recovered"}),
        ("PATCH", path, {"id": 7542, "status": 5}),
        ("PATCH", path, {"id": 7542, "status": 1, "priority": 1}),
    ]


@responses.activate
def test_status_reads_the_status_and_the_assigned_resource(tmp_path: Path) -> None:
    for answer in (item(), item(8, 29682885), item(5, 29682885), None):
        responses.get(f"{TICKETS}/7542", json={"item": answer})
    at = autotask(tmp_path)
    new, taken, complete, gone = (at.status(TicketRef("7542")) for _ in range(4))
    assert new is not None and (new.state, new.taken) == ("new", False)
    assert taken is not None and (taken.state, taken.owner) == ("open", "29682885")
    assert complete is not None and complete.state == "resolved"
    assert gone is None


REFUSALS = [
    (401, "", None, PermanentError),
    (403, {"errors": ["Forbidden: the API user's security level does not allow editing Tickets."]}, None, PermanentError),
    (404, "", None, PermanentError),
    # a deleted ticket, and a business rule: Autotask says so with 500 and an errors list
    (500, {"errors": ["Cannot find the Ticket with the id: 7542"]}, None, PermanentError),
    (500, {"errors": ["Ticket: The value of status is not valid for this ticket's category."]}, None, PermanentError),
    (500, "<html><body>Internal Server Error</body></html>", None, TransientError),
    (429, {"errors": ["The thread limit of 3 for this integration was exceeded."]}, {"Retry-After": "30"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    at = autotask(tmp_path)
    refusal("PATCH", TICKETS, case, lambda: at.resolve(TicketRef("7542"), content(text="")))


@responses.activate
def test_a_refused_secret_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "autotask",
        {**OPTIONS, "secret": "at-secret-J7mW", "integration_code": "AT-TRACK-9K2"},
        "at-secret-J7mW",
        ("POST", f"{TICKETS}/query"),
        {"errors": ["User watcher-api@acme.example with secret at-secret-J7mW is not valid"]},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({k: v for k, v in OPTIONS.items() if k != "queue_id"}, "'queue_id' is required"),
        ({k: v for k, v in OPTIONS.items() if k != "integration_code"}, "'integration_code' is required"),
        ({**OPTIONS, "queue_id": "Monitoring"}, "queue_id"),
        ({**OPTIONS, "priorities": {"P1": "Critical"}}, "'Critical' is not a number"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "autotask", options, message, ENV)
