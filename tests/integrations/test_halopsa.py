"""halopsa against HaloPSA's documented OAuth and API payloads (``responses``)."""

from __future__ import annotations

import urllib.parse
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

HALO = "https://acme.halopsa.com"
TOKEN = f"{HALO}/auth/token"
KEY = "w0123456789abcdef01234567"
OPTIONS = {
    "url": HALO,
    "client_id": "3f2b8c4e-watcher",
    "client_secret": "${HALO_SECRET}",
    "tenant": "acme",
    "customer_id": 12,
    "fingerprint_field_id": 150,
}
GRANT = {"access_token": "eyJhbGciOiJSUzI1NiJ9.halo-1", "token_type": "Bearer", "expires_in": 3600}


def halo(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path, "halopsa", {**OPTIONS, **extra}, environ={"HALO_SECRET": "halo-secret-77Qa"}
    )


def ticket(
    ticket_id: int, status_id: int = 1, agent_id: int = 0, fingerprint: str = KEY
) -> dict[str, object]:
    return {
        "id": ticket_id,
        "summary": "[P2][acme] mail1: SMTP port not answering",
        "client_id": 12,
        "status_id": status_id,
        "priority_id": 2,
        "agent_id": agent_id,
        "agent_name": "Asha Rao" if agent_id else "",
        "customfields": [{"id": 150, "name": "CFWatcherFingerprint", "value": fingerprint}],
    }


@responses.activate
def test_it_signs_in_once_and_creates_a_ticket_with_the_fingerprint_custom_field(
    tmp_path: Path,
) -> None:
    responses.post(TOKEN, json=GRANT)
    responses.post(f"{HALO}/api/Tickets", status=201, json=ticket(2051))
    h = halo(tmp_path, ticket_type_id=3, team="Service Desk")
    assert h.open(content(priority="P1")) == TicketRef("2051", f"{HALO}/ticket?id=2051")
    assert h.open(content()).id == "2051"
    token_call, create, _ = responses.calls
    assert urllib.parse.urlsplit(token_call.request.url).query == "tenant=acme"
    assert urllib.parse.parse_qs(token_call.request.body) == {
        "grant_type": ["client_credentials"],
        "client_id": ["3f2b8c4e-watcher"],
        "client_secret": ["halo-secret-77Qa"],
        "scope": ["all"],
    }
    (fields,) = body_of(create)
    assert fields["customfields"] == [{"id": 150, "value": KEY}]
    assert (fields["client_id"], fields["priority_id"], fields["tickettype_id"]) == (12, 1, 3)
    assert (
        fields["team"] == "Service Desk" and "<br>Evidence (probe output)<br>" in fields["details"]
    )
    assert create.request.headers["Authorization"] == "Bearer eyJhbGciOiJSUzI1NiJ9.halo-1"


@responses.activate
def test_find_searches_open_tickets_and_keeps_the_one_whose_field_holds_the_fingerprint(
    tmp_path: Path,
) -> None:
    responses.post(TOKEN, json=GRANT)
    listing = {"page_no": 1, "page_size": 5, "record_count": 2}
    responses.get(f"{HALO}/api/Tickets", json={**listing, "tickets": [{"id": 2060}, {"id": 2051}]})
    responses.get(f"{HALO}/api/Tickets/2051", json=ticket(2051, fingerprint="w-another-incident"))
    responses.get(f"{HALO}/api/Tickets/2060", json=ticket(2060))
    assert halo(tmp_path).find(KEY) == TicketRef("2060", f"{HALO}/ticket?id=2060")
    search = sent()[1][1]
    assert search.startswith(f"/api/Tickets?search={KEY}&open_only=true")


@responses.activate
def test_updates_are_private_actions_and_ticket_posts(tmp_path: Path) -> None:
    responses.post(TOKEN, json=GRANT)
    responses.post(f"{HALO}/api/Actions", status=201, json=[{"id": 9, "ticket_id": 2051}])
    responses.post(f"{HALO}/api/Tickets", status=201, json=ticket(2051))
    h = halo(tmp_path)
    ref = TicketRef("2051")
    h.comment(ref, content(text="Now: 97% full"))
    h.resolve(ref, content(text="Recovered"))
    h.reopen(ref, content(text=""))

    def note(text: str) -> list[dict[str, object]]:
        return [
            {"ticket_id": 2051, "outcome": "Private Note", "note": text, "hiddenfromuser": True}
        ]

    assert sent()[1:] == [
        ("POST", "/api/Actions", note("Now: 97% full")),
        ("POST", "/api/Actions", note("Recovered")),
        ("POST", "/api/Tickets", [{"id": 2051, "status_id": 9}]),
        ("POST", "/api/Tickets", [{"id": 2051, "status_id": 1, "priority_id": 2}]),
    ]


@responses.activate
def test_status_reads_the_status_and_the_agent(tmp_path: Path) -> None:
    responses.post(TOKEN, json=GRANT)
    unassigned = {**ticket(2051), "agent_id": 1, "agent_name": "Unassigned"}
    for answer in (ticket(2051), unassigned, ticket(2051, 2, 7), ticket(2051, 9, 7)):
        responses.get(f"{HALO}/api/Tickets/2051", json=answer)
    h = halo(tmp_path)
    new, unassigned_status, taken, closed = (h.status(TicketRef("2051")) for _ in range(4))
    assert (new.state, new.taken) == ("new", False)
    assert (unassigned_status.state, unassigned_status.taken) == ("new", False)
    assert (taken.state, taken.owner) == ("open", "Asha Rao")
    assert closed.state == "resolved"


@responses.activate
def test_a_token_revoked_before_it_expires_is_renewed_once(tmp_path: Path) -> None:
    responses.post(TOKEN, json=GRANT)
    responses.post(TOKEN, json={**GRANT, "access_token": "eyJhbGciOiJSUzI1NiJ9.halo-2"})
    responses.post(f"{HALO}/api/Actions", status=401, body="")
    responses.post(f"{HALO}/api/Actions", status=201, json=[{"id": 10}])
    halo(tmp_path).comment(TicketRef("2051"), content(text="x"))
    assert [m for m, _, _ in sent()] == ["POST"] * 4
    assert responses.calls[3].request.headers["Authorization"].endswith("halo-2")


REFUSALS = [
    (401, "", None, PermanentError),
    (403, {"message": "You do not have permission to perform this action."}, None, PermanentError),
    (404, {"message": "Ticket 2051 not found"}, None, PermanentError),
    (429, {"message": "Too many requests"}, {"Retry-After": "12"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    responses.post(TOKEN, json=GRANT)
    h = halo(tmp_path)
    refusal(
        "POST", f"{HALO}/api/Tickets", case, lambda: h.resolve(TicketRef("2051"), content(text=""))
    )


@responses.activate
def test_a_refused_client_secret_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "halopsa",
        {**OPTIONS, "client_secret": "halo-secret-77Qa"},
        "halo-secret-77Qa",
        ("POST", f"{TOKEN}?tenant=acme"),
        {"error": "invalid_client", "error_description": "bad secret halo-secret-77Qa"},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({k: v for k, v in OPTIONS.items() if k != "fingerprint_field_id"}, "'fingerprint_field_id' is required"),
        ({k: v for k, v in OPTIONS.items() if k != "client_secret"}, "'client_secret' is required"),
        ({**OPTIONS, "auth_url": "auth.halopsa.com"}, "http:// or https://"),
        ({**OPTIONS, "customer_id": "Acme"}, "customer_id"),
        ({**OPTIONS, "priorities": {"P1": "Critical"}}, "'Critical' is not a number"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "halopsa", options, message, {"HALO_SECRET": "x"})
