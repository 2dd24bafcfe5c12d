"""servicenow against the Table API's documented payloads (``responses``)."""

from __future__ import annotations

import base64
import json
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
from tests.integrations.site import Site, site_config, unique_site

SN = "https://acme.service-now.com"
TABLE = f"{SN}/api/now/table/incident"
KEY = "w0123456789abcdef01234567"
SYS_ID = "a9e30c7dc61122760116894de7bcc7bd"
OPTIONS = {"url": SN, "user": "watcher.integration", "password": "${SN_PASSWORD}"}


def servicenow(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path, "servicenow", {**OPTIONS, **extra}, environ={"SN_PASSWORD": "sn-pass-8842"}
    )


@responses.activate
def test_it_creates_an_incident_with_impact_urgency_and_the_fingerprint_as_correlation_id(
    tmp_path: Path,
) -> None:
    responses.post(TABLE, status=201, json={"result": {"sys_id": SYS_ID, "number": "INC0010002"}})
    ref = servicenow(tmp_path, assignment_group="Service Desk").open(content(priority="P1"))
    assert ref == TicketRef(SYS_ID, f"{SN}/nav_to.do?uri=incident.do?sys_id={SYS_ID}")
    (call,) = responses.calls
    record = body_of(call)
    assert record["correlation_id"] == KEY and record["correlation_display"] == "watcher"
    assert (record["impact"], record["urgency"]) == ("1", "1")  # priority 1 - Critical
    assert record["assignment_group"] == "Service Desk"
    assert record["short_description"].startswith("[P2][acme] mail1:")
    assert "Evidence (probe output)" in record["description"]
    assert (
        call.request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"watcher.integration:sn-pass-8842").decode()
    )


@responses.activate
def test_find_asks_for_an_active_incident_carrying_the_correlation_id(tmp_path: Path) -> None:
    responses.get(TABLE, json={"result": [{"sys_id": SYS_ID, "number": "INC0010002"}]})
    responses.get(TABLE, json={"result": []})
    sn = servicenow(tmp_path)
    assert sn.find(KEY) == TicketRef(SYS_ID, f"{SN}/nav_to.do?uri=incident.do?sys_id={SYS_ID}")
    assert sn.find(KEY) is None
    path = sent()[0][1]
    assert f"sysparm_query=correlation_id={KEY}^active=true^ORDERBYsys_created_on" in path


@responses.activate
def test_updates_are_work_notes_and_resolve_carries_the_close_code(tmp_path: Path) -> None:
    responses.patch(f"{TABLE}/{SYS_ID}", json={"result": {"sys_id": SYS_ID}})
    sn = servicenow(tmp_path, priorities={"P3": "2/3"})
    ref = TicketRef(SYS_ID)
    sn.comment(ref, content(text="Now: 97% full"))
    sn.set_priority(ref, content(priority="P3", text="Priority lowered to P3"))
    sn.resolve(ref, content(text="Recovered: SMTP answers"))
    sn.reopen(ref, content(priority="P2", text="Failing again"))
    assert [body for _, _, body in sent()] == [
        {"work_notes": "Now: 97% full"},
        {"impact": "2", "urgency": "3", "work_notes": "Priority lowered to P3"},
        {"state": "6", "close_code": "Solution provided", "close_notes": "Recovered: SMTP answers"},
        {"state": "2", "impact": "1", "urgency": "2", "work_notes": "Failing again"},
    ]
    assert {method for method, _, _ in sent()} == {"PATCH"}


@responses.activate
def test_status_reads_the_state_and_whether_someone_is_assigned(tmp_path: Path) -> None:
    url = f"{TABLE}/{SYS_ID}"
    unassigned = {"display_value": "", "value": ""}
    responses.get(
        url,
        json={
            "result": {"state": {"display_value": "New", "value": "1"}, "assigned_to": unassigned}
        },
    )
    assigned = {"display_value": "Beth Anglin", "value": "46d44a23a9fe19810012d100cca80666"}
    responses.get(
        url,
        json={
            "result": {
                "state": {"display_value": "In Progress", "value": "2"},
                "assigned_to": assigned,
            }
        },
    )
    responses.get(
        url,
        json={
            "result": {
                "state": {"display_value": "Resolved", "value": "6"},
                "assigned_to": assigned,
            }
        },
    )
    sn = servicenow(tmp_path)
    new, taken, resolved = (sn.status(TicketRef(SYS_ID)) for _ in range(3))
    assert (new.state, new.taken) == ("new", False)
    assert (taken.state, taken.taken, taken.owner) == ("open", True, "Beth Anglin")
    assert resolved.state == "resolved"
    assert "sysparm_display_value=all" in sent()[0][1]


FAILURE = "failure"
REFUSALS = [
    (401, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": FAILURE}, None, PermanentError),
    (403, {"error": {"message": "Operation Failed", "detail": "ACL Exception Update Failed due to security constraints"}, "status": FAILURE}, None, PermanentError),
    (404, {"error": {"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": FAILURE}, None, PermanentError),
    (429, {"error": {"message": "Rate limit exceeded", "detail": "Rate limit of 1000 requests per hour exceeded"}, "status": FAILURE}, {"Retry-After": "37"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    sn = servicenow(tmp_path)
    refusal(
        "PATCH", f"{TABLE}/{SYS_ID}", case, lambda: sn.comment(TicketRef(SYS_ID), content(text="x"))
    )


@responses.activate
def test_a_refused_password_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "servicenow",
        {**OPTIONS, "password": "sn-pass-8842"},
        "sn-pass-8842",
        ("GET", TABLE),
        {"error": {"message": "User Not Authenticated", "detail": "password sn-pass-8842"}},
    )


def test_an_oauth_token_is_sent_as_bearer(tmp_path: Path) -> None:
    sn = build(tmp_path, "servicenow", {"url": SN, "token": "oauth-tok-991"})
    assert sn._session.headers["Authorization"] == "Bearer oauth-tok-991"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": SN}, "token: .* or both user: and password:"),
        ({**OPTIONS, "priorities": {"P1": "critical"}}, 'not "impact/urgency"'),
        ({**OPTIONS, "priorities": {"P1": "4/1"}}, "impact/urgency"),
        ({**OPTIONS, "impact": 1}, "impact"),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "servicenow", options, message, {"SN_PASSWORD": "x"})


@responses.activate
def test_a_watcher_opens_sees_the_assignment_and_resolves_with_the_close_code(
    tmp_path: Path,
) -> None:
    responses.get(TABLE, json={"result": []})
    responses.post(TABLE, status=201, json={"result": {"sys_id": SYS_ID, "number": "INC0010002"}})
    new = {"state": {"display_value": "New", "value": "1"}}
    nobody = {"display_value": "", "value": ""}
    beth = {"display_value": "Beth Anglin", "value": "46d44a23a9fe19810012d100cca80666"}
    responses.get(f"{TABLE}/{SYS_ID}", json={"result": {**new, "assigned_to": nobody}})
    responses.get(f"{TABLE}/{SYS_ID}", json={"result": {**new, "assigned_to": beth}})
    responses.patch(f"{TABLE}/{SYS_ID}", json={"result": {"sys_id": SYS_ID}})
    options = {**OPTIONS, "password": "sn-pass-8842"}
    site = Site(
        tmp_path, site_config(unique_site(), f"  tickets:\n    - servicenow: {json.dumps(options)}")
    )
    try:
        site.smtp_refused()
        site.deliver()
        assert site.store.ticket(site.incident().id, "tickets/servicenow")[0] == SYS_ID
        assert site.poller.poll(force=True) == []  # nobody assigned yet
        assert site.poller.poll(force=True) == [site.incident().id]
        assert site.incident().acknowledged_by == "Beth Anglin"
        site.smtp_ok()
        site.advance(minutes=1)
        site.smtp_ok()  # resolve_after: 2
        site.deliver()
        assert site.incident().state == "resolved"
        assert [(a, s) for _, a, s in site.actions()][-1] == ("resolve", "done")
        resolve = sent()[-1][2]
        assert (resolve["state"], resolve["close_code"]) == ("6", "Solution provided")
        assert resolve["close_notes"]
    finally:
        site.close()
