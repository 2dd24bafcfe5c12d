"""jira_service_management against the documented Service Management REST payloads
(``/rest/servicedeskapi``) and the platform's (``responses``)."""

from __future__ import annotations

import base64
import logging
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

JSM = "https://acme.atlassian.net"
SD = f"{JSM}/rest/servicedeskapi"
KEY = "w0123456789abcdef01234567"
OPTIONS = {
    "url": JSM,
    "project": "IT",
    "request_type": "Report a system problem",
    "user": "watcher@acme.example",
    "token": "${JSM_TOKEN}",
}
PAGE = {"_expands": [], "start": 0, "limit": 50, "isLastPage": True, "_links": {}}
DESKS = {
    **PAGE,
    "size": 2,
    "values": [
        {"id": "4", "projectId": "10400", "projectName": "HR Help", "projectKey": "HR"},
        {"id": "10", "projectId": "11001", "projectName": "IT Help Desk", "projectKey": "IT"},
    ],
}
TYPES = {
    **PAGE,
    "size": 2,
    "values": [
        {"id": "24", "name": "Report a system problem or outage", "serviceDeskId": "10"},
        {"id": "25", "name": "Report a system problem", "serviceDeskId": "10"},
    ],
}
RAISED = {
    "issueId": "107001",
    "issueKey": "IT-128",
    "requestTypeId": "25",
    "serviceDeskId": "10",
    "currentStatus": {"status": "Waiting for support", "statusCategory": "NEW"},
    "_links": {"web": f"{JSM}/servicedesk/customer/portal/10/IT-128"},
}


def jsm(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return build(
        tmp_path,
        "jira_service_management",
        {**OPTIONS, **extra},
        environ={"JSM_TOKEN": "jsm-token-4Pq9"},
    )


@responses.activate
def test_it_raises_a_request_of_the_named_type_then_sets_priority_and_fingerprint_label(
    tmp_path: Path,
) -> None:
    responses.get(f"{SD}/servicedesk", json=DESKS)
    responses.get(f"{SD}/servicedesk/10/requesttype", json=TYPES)
    responses.post(f"{SD}/request", status=201, json=RAISED)
    responses.put(f"{JSM}/rest/api/2/issue/IT-128", status=204)
    j = jsm(tmp_path)
    assert j.open(content(priority="P1")) == TicketRef("IT-128", f"{JSM}/browse/IT-128")
    j.open(content())  # the desk and the request type are looked up once
    methods = [(m, p.split("?")[0]) for m, p, _ in sent()]
    assert methods[:4] == [
        ("GET", "/rest/servicedeskapi/servicedesk"),
        ("GET", "/rest/servicedeskapi/servicedesk/10/requesttype"),
        ("POST", "/rest/servicedeskapi/request"),
        ("PUT", "/rest/api/2/issue/IT-128"),
    ]
    assert methods[4:] == methods[2:4]
    request = body_of(responses.calls[2])
    assert (request["serviceDeskId"], request["requestTypeId"]) == ("10", "25")
    assert request["requestFieldValues"]["summary"].startswith("[P2][acme] mail1:")
    assert body_of(responses.calls[3]) == {
        "fields": {"priority": {"name": "Highest"}},
        "update": {"labels": [{"add": "watcher"}, {"add": KEY}]},
    }
    assert (
        responses.calls[2].request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"watcher@acme.example:jsm-token-4Pq9").decode()
    )


@responses.activate
def test_configured_ids_skip_the_lookups_and_a_custom_field_can_carry_the_fingerprint(
    tmp_path: Path,
) -> None:
    responses.post(f"{SD}/request", status=201, json=RAISED)
    responses.put(f"{JSM}/rest/api/2/issue/IT-128", status=204)
    jsm(
        tmp_path, service_desk_id=10, request_type="25", fingerprint_field="customfield_10050"
    ).open(content())
    assert [m for m, _, _ in sent()] == ["POST", "PUT"]
    assert body_of(responses.calls[1])["fields"]["customfield_10050"] == KEY


@responses.activate
def test_a_request_type_the_desk_lacks_is_a_permanent_error_naming_what_it_offers(
    tmp_path: Path,
) -> None:
    responses.get(f"{SD}/servicedesk/10/requesttype", json={**PAGE, "size": 0, "values": []})
    with pytest.raises(PermanentError, match="no request type named 'Report a system problem'"):
        jsm(tmp_path, service_desk_id=10).open(content())


@responses.activate
def test_a_request_whose_label_cannot_be_set_is_kept_and_the_failure_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    responses.post(f"{SD}/request", status=201, json=RAISED)
    responses.put(
        f"{JSM}/rest/api/2/issue/IT-128",
        status=400,
        json={"errorMessages": [], "errors": {"priority": "Field 'priority' cannot be set."}},
    )
    with caplog.at_level(logging.ERROR):
        ref = jsm(tmp_path, service_desk_id=10, request_type="25").open(content())
    assert ref.id == "IT-128"
    assert "IT-128 was raised, but its priority and fingerprint could not be set" in caplog.text


@responses.activate
def test_comments_are_internal_and_transitions_are_jira_s(tmp_path: Path) -> None:
    responses.post(f"{SD}/request/IT-128/comment", status=201, json={"id": "1000", "public": False})
    responses.get(
        f"{JSM}/rest/api/2/issue/IT-128/transitions",
        json={
            "transitions": [{"id": "761", "name": "Resolve this issue", "to": {"name": "Resolved"}}]
        },
    )
    responses.post(f"{JSM}/rest/api/2/issue/IT-128/transitions", status=204)
    j = jsm(tmp_path)
    j.comment(TicketRef("IT-128"), content(text="Now: 97% full"))
    j.resolve(TicketRef("IT-128"), content(text="Recovered"))
    assert sent() == [
        ("POST", "/rest/servicedeskapi/request/IT-128/comment", {"body": "Now: 97% full", "public": False}),
        ("POST", "/rest/servicedeskapi/request/IT-128/comment", {"body": "Recovered", "public": False}),
        ("GET", "/rest/api/2/issue/IT-128/transitions", None),
        ("POST", "/rest/api/2/issue/IT-128/transitions", {"transition": {"id": "761"}}),
    ]  # fmt: skip


@responses.activate
def test_find_and_status_search_and_read_like_jira(tmp_path: Path) -> None:
    responses.get(
        f"{JSM}/rest/api/2/search/jql", json={"issues": [{"id": "107001", "key": "IT-128"}]}
    )
    responses.get(
        f"{JSM}/rest/api/2/issue/IT-128",
        json={
            "key": "IT-128",
            "fields": {
                "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
                "assignee": {"accountId": "5b10a", "displayName": "Asha Rao"},
            },
        },
    )
    j = jsm(tmp_path)
    assert j.find(KEY) == TicketRef("IT-128", f"{JSM}/browse/IT-128")
    assert f'project = "IT" AND labels = "{KEY}"' in sent()[0][1]
    status = j.status(TicketRef("IT-128"))
    assert status is not None and (status.state, status.owner) == ("open", "Asha Rao")


REFUSALS = [
    (401, "Client must be authenticated to access this resource.", None, PermanentError),
    (403, {"errorMessage": "You do not have permission to create requests in this service desk.", "i18nErrorMessage": {"i18nKey": "sd.request.create.error.permission", "parameters": []}}, None, PermanentError),
    (404, {"errorMessage": "The request type you are trying to use does not exist.", "i18nErrorMessage": {"i18nKey": "sd.request.type.not.found", "parameters": []}}, None, PermanentError),
    (429, "Rate limit exceeded.", {"Retry-After": "45"}, TransientError),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@responses.activate
def test_each_refusal_is_permanent_or_transient_as_the_contract_says(
    tmp_path: Path, case: Refusal
) -> None:
    j = jsm(tmp_path, service_desk_id=10, request_type="25")
    refusal("POST", f"{SD}/request", case, lambda: j.open(content()))


@responses.activate
def test_a_comment_on_a_deleted_request_is_a_permanent_error(tmp_path: Path) -> None:
    j = jsm(tmp_path)
    gone = {"errorMessage": "Issue does not exist or you do not have permission to see it."}
    comment = lambda: j.comment(TicketRef("IT-128"), content(text="x"))  # noqa: E731
    refusal("POST", f"{SD}/request/IT-128/comment", (404, gone, None, PermanentError), comment)


@responses.activate
def test_a_refused_token_fails_at_once_and_is_never_shown(tmp_path: Path) -> None:
    check_a_refused_credential(
        tmp_path,
        "jira_service_management",
        {**OPTIONS, "token": "jsm-token-4Pq9"},
        "jsm-token-4Pq9",
        ("GET", f"{JSM}/rest/api/2/search/jql"),
        {"errorMessages": ["Token jsm-token-4Pq9 is not valid"], "errors": {}},
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({k: v for k, v in OPTIONS.items() if k != "request_type"}, "'request_type' is required"),
        ({**OPTIONS, "service_desk_id": "IT"}, "service_desk_id"),
        ({**OPTIONS, "fingerprint_field": "Fingerprint"}, "customfield_10050"),
    ],
)
def test_bad_configs_are_refused_at_load(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    refused_at_load(tmp_path, "jira_service_management", options, message, {"JSM_TOKEN": "x"})
