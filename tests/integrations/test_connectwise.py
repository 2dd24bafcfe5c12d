"""connectwise against ConnectWise Manage REST 3.0's documented payloads (``responses``)."""

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

CW = "https://api-na.myconnectwise.net"
TICKETS = f"{CW}/v4_6_release/apis/3.0/service/tickets"
KEY = "w0123456789abcdef01234567"
OPTIONS = {
    "url": CW,
    "company": "acme",
    "public_key": "Xk2Lq8RwT4vN",
    "private_key": "${CW_PRIVATE_KEY}",
    "client_id": "6f3a2c1e-cw-watcher",
    "board": "Help Desk",
    "customer": "AcmeCorp",
    "fingerprint_field_id": 12,
}


def connectwise(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path, "connectwise", {**OPTIONS, **extra}, environ={"CW_PRIVATE_KEY": "cw-priv-51Hd"}
    )


def ticket(closed: bool = False, owner: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "id": 86421,
        "summary": "[P2][acme] mail1: SMTP port not answering",
        "board": {"id": 1, "name": "Help Desk"},
        "status": {"id": 16, "name": "New"},
        "company": {"id": 250, "identifier": "AcmeCorp", "name": "Acme Corp"},
        "priority": {"id": 2, "name": "Priority 2 - Quick Response"},
        "closedFlag": closed,
        "owner": owner,
        "_info": {"lastUpdated": "2026-12-04T10:00:00Z"},
    }


@responses.activate
def test_it_creates_a_service_ticket_on_the_board_with_the_fingerprint_custom_field(
    tmp_path: Path,
) -> None:
    responses.post(TICKETS, status=201, json=ticket())
    ref = connectwise(tmp_path).open(content(subject="[P2][acme] " + "x" * 200))
    assert ref == TicketRef("86421")
    (call,) = responses.calls
    fields = body_of(call)
    assert fields["board"] == {"name": "Help Desk"} and fields["status"] == {"name": "New"}
    assert fields["company"] == {"identifier": "AcmeCorp"}
    assert fields["priority"] == {"name": "Priority 2 - Quick Response"}
    assert len(fields["summary"]) == 100 and fields["summary"].endswith("...")
    (custom,) = fields["customFields"]
    assert (custom["id"], custom["caption"], custom["value"]) == (12, "Watcher Fingerprint", KEY)
    assert call.request.headers["clientId"] == "6f3a2c1e-cw-watcher"
    assert (
        call.request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"acme+Xk2Lq8RwT4vN:cw-priv-51Hd").decode()
    )


@responses.activate
def test_find_asks_for_open_tickets_on_the_board_by_custom_field_conditions(
    tmp_path: Path,
) -> None:
    responses.get(TICKETS, json=[{"id": 86421, "_info": {}}])
    responses.get(TICKETS, json=[])
    cw = connectwise(tmp_path)
    assert cw.find(KEY) == TicketRef("86421")
    assert cw.find(KEY) is None
    query = sent()[0][1].split("?", 1)[1]
    assert 'conditions=board/name="Help Desk" AND closedFlag=false' in query
    assert f'customFieldConditions=caption="Watcher Fingerprint" AND value="{KEY}"' in query


@responses.activate
def test_updates_are_internal_notes_and_json_patches(tmp_path: Path) -> None:
    responses.post(f"{TICKETS}/86421/notes", status=201, json={"id": 4411, "ticketId": 86421})
    responses.patch(f"{TICKETS}/86421", json=ticket())
    cw = connectwise(tmp_path, priorities={"P1": 7}, resolved_status=">Closed")
    ref = TicketRef("86421")
    cw.comment(ref, content(text="Now: 97% full"))
    cw.set_priority(ref, content(priority="P1", text=""))
    cw.resolve(ref, content(text=""))
    cw.reopen(ref, content(priority="P3", text="Failing again"))
    note = {"text": "Failing again", "internalAnalysisFlag": True, "detailDescriptionFlag": False}
    assert sent() == [
        ("POST", "/v4_6_release/apis/3.0/service/tickets/86421/notes", {**note, "text": "Now: 97% full"}),
        ("PATCH", "/v4_6_release/apis/3.0/service/tickets/86421", [{"op": "replace", "path": "priority", "value": {"id": 7}}]),
        ("PATCH", "/v4_6_release/apis/3.0/service/tickets/86421", [{"op": "replace", "path": "status", "value": {"name": ">Closed"}}]),
        ("PATCH", "/v4_6_release/apis/3.0/service/tickets/86421", [
            {"op": "replace", "path": "status", "value": {"name": "New"}},
            {"op": "replace", "path": "priority", "value": {"name": "Priority 3 - Normal Response"}},
        ]),
        ("POST", "/v4_6_release/apis/3.0/service/tickets/86421/notes", note),
    ]  # fmt: skip


@responses.activate
def test_status_reads_the_closed_flag_and_the_owner(tmp_path: Path) -> None:
    owner = {"id": 149, "identifier": "arao", "name": "Asha Rao"}
    for answer in (ticket(), ticket(owner=owner), ticket(closed=True, owner=owner)):
        responses.get(f"{TICKETS}/86421", json=answer)
    cw = connectwise(tmp_path)
    new, taken, closed = (cw.status(TicketRef("86421")) for _ in range(3))
    assert (new.state, new.taken) == ("new", False)
    assert (taken.state, taken.owner) == ("open", "arao")
    assert closed.state == "resolved"


REFUSALS = [
    (400, {"code": "InvalidObject", "message": "ticket object is invalid", "errors": [{"code": "InvalidValue", "message": "The status provided is not valid for this board.", "resource": "ticket", "field": "status"}]}, None, PermanentError),
    (401, {"code": "NotAuthenticated", "message": "Authentication failed."}, None, PermanentError),
    (403, {"code": "Forbidden", "message": "You do not have permission to perform this action on Service Tickets."}, None, PermanentError),
    (404, {"code": "NotFound", "message": "Ticket with id 86421 not found"}, None, PermanentError),
    (429, {"code": "TooManyRequests", "message": "Too many requests"}, {"Retry-After": "8"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    cw = connectwise(tmp_path)
    refusal(
        "PATCH", f"{TICKETS}/86421", case, lambda: cw.resolve(TicketRef("86421"), content(text=""))
    )


@responses.activate
def test_a_refused_private_key_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "connectwise",
        {**OPTIONS, "private_key": "cw-priv-51Hd"},
        "cw-priv-51Hd",
        ("GET", TICKETS),
        {"code": "NotAuthenticated", "message": "Authentication failed for cw-priv-51Hd"},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({k: v for k, v in OPTIONS.items() if k != "board"}, "'board' is required"),
        ({k: v for k, v in OPTIONS.items() if k != "client_id"}, "'client_id' is required"),
        ({**OPTIONS, "fingerprint_field_id": "Watcher Fingerprint"}, "fingerprint_field_id"),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "connectwise", options, message, {"CW_PRIVATE_KEY": "x"})
