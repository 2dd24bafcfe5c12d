"""``jira_service_management``: requests in Jira Service Management (Cloud or Data Center).

A request is raised through the Service Management API (``/rest/servicedeskapi/request``)
with its request type, so the portal, SLAs and queues treat it as any other; the
priority and the fingerprint are then set through the platform API, since request types
rarely put those on their form. The fingerprint is a label (default) or a text custom
field, both searchable by JQL, which ``find()`` uses as ``jira`` does. Updates are
internal comments (``public: false``: the customer is not mailed); resolve and reopen run
workflow transitions chosen by name. Everything after the request is ``jira``'s.

    - jira_service_management:
        url: https://acme.atlassian.net
        project: IT                           # the service project's key
        request_type: Report a system problem  # a name, or the request type's id
        user: watcher@acme.example
        token: ${JSM_TOKEN}
        priorities: {P1: Highest, P2: High, P3: Medium, P4: Low}
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from integrations.base import DeliveryError, PermanentError, TicketContent, TicketRef
from integrations.jira import DESCRIPTION_MAX, SUMMARY_MAX, JiraConfig, JiraIntegration, _cut
from integrations.rest import call, json_of

__all__ = ["JiraServiceManagementConfig", "JiraServiceManagementIntegration"]

log = logging.getLogger("watcher.integrations.jira_service_management")

MAX_PAGES = 20  # of 50 service desks each: far more than any site has


class JiraServiceManagementConfig(JiraConfig):
    request_type: str
    service_desk_id: int | None = None  # found from the project when left out
    resolve_transitions: list[str] = [
        "Resolve this issue",
        "Resolve",
        "Resolved",
        "Done",
        "Close",
        "Closed",
    ]
    reopen_transitions: list[str] = ["Reopen", "Reopen issue", "Back to open", "Open"]


class JiraServiceManagementIntegration(JiraIntegration):
    kind = "jira_service_management"
    Config = JiraServiceManagementConfig  # type: ignore[assignment]
    config: JiraServiceManagementConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._desk: str | None = (
            str(self.config.service_desk_id) if self.config.service_desk_id else None
        )
        self._request_type: str | None = (
            self.config.request_type if self.config.request_type.isdigit() else None
        )

    def _sd(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        what = f"Jira Service Management {self.name}: {what}"
        url = f"{self.config.url}/rest/servicedeskapi{path}"
        response = call(self._session, method, url, what, **kwargs)
        return json_of(response, what) if response.content.strip() else None

    def _service_desk(self) -> str:
        if self._desk is None:
            for page in range(MAX_PAGES):
                answer = (
                    self._sd(
                        "GET", f"/servicedesk?start={page * 50}&limit=50", "list service desks"
                    )
                    or {}
                )
                for desk in answer.get("values") or []:
                    if str(desk.get("projectKey", "")).upper() == self.config.project.upper():
                        self._desk = str(desk["id"])
                        return self._desk
                if answer.get("isLastPage", True):
                    break
            raise PermanentError(
                f"Jira Service Management {self.name}: project {self.config.project} is no"
                " service desk this user can see; check project: or set service_desk_id:"
            )
        return self._desk

    def _request_type_id(self, desk: str) -> str:
        if self._request_type is None:
            query = urllib.parse.urlencode({"searchQuery": self.config.request_type, "limit": 50})
            answer = (
                self._sd("GET", f"/servicedesk/{desk}/requesttype?{query}", "find the request type")
                or {}
            )
            offered = answer.get("values") or []
            for kind in offered:
                if str(kind.get("name", "")).casefold() == self.config.request_type.casefold():
                    self._request_type = str(kind["id"])
                    return self._request_type
            names = ", ".join(str(k.get("name")) for k in offered) or "none that match"
            raise PermanentError(
                f"Jira Service Management {self.name}: service desk {desk} has no request type"
                f" named {self.config.request_type!r} (found: {names}); set request_type:"
            )
        return self._request_type

    def open(self, ticket: TicketContent) -> TicketRef:
        desk = self._service_desk()
        request = {
            "serviceDeskId": desk,
            "requestTypeId": self._request_type_id(desk),
            "requestFieldValues": {
                "summary": _cut(" ".join(ticket.subject.split()), SUMMARY_MAX),
                "description": _cut(ticket.body, DESCRIPTION_MAX),
            },
        }
        answer = self._sd("POST", "/request", "raise request", json=request) or {}
        key = str(answer.get("issueKey") or "")
        if not key:
            raise PermanentError(
                f"Jira Service Management {self.name}: create answered without an issue key:"
                f" {answer!r}"[:300]
            )
        self._mark(key, ticket)
        return TicketRef(id=key, url=self._url(key))

    def _mark(self, key: str, ticket: TicketContent) -> None:
        """Sets the priority and the fingerprint on the new request. A failure is logged,
        never raised: the request exists, and retrying the delivery would raise another."""
        fields: dict[str, Any] = {"priority": self._priority(ticket)}
        labels = list(self.config.labels)
        if self.config.fingerprint_field:
            fields[self.config.fingerprint_field] = ticket.fingerprint
        else:
            labels.append(ticket.fingerprint)
        update = {"labels": [{"add": label} for label in labels]}
        try:
            self._call(
                "PUT",
                f"/issue/{key}",
                "label the request",
                json={"fields": fields, "update": update},
            )
        except DeliveryError as exc:
            log.error(
                "Jira Service Management %s: request %s was raised, but its priority and"
                " fingerprint could not be set (a watcher restarted now may raise a second): %s",
                self.name,
                key,
                exc,
            )

    def _comment(self, ref: TicketRef, text: str) -> None:
        body = {"body": _cut(text, DESCRIPTION_MAX), "public": False}
        self._sd("POST", f"/request/{ref.id}/comment", "comment", json=body)
