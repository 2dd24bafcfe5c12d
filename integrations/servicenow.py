"""``servicenow``: incidents in ServiceNow through the Table API (``/api/now/table/incident``).

The fingerprint is the incident's ``correlation_id``, the field ServiceNow keeps for an
external tool's own id, so ``find()`` asks for ``correlation_id=<fingerprint>^active=true``.
ServiceNow computes an incident's priority from impact and urgency, so watcher's
priorities map onto those two (``"impact/urgency"``; the defaults give priorities 1 to 4
in ServiceNow's stock matrix). Updates are work notes; resolve sets the Resolved state
with a close code and close notes (both mandatory there); reopen sets In Progress, as
ServiceNow's own "Reopen Incident" does. An engineer assigned acknowledges.

    - servicenow:
        url: https://acme.service-now.com
        user: watcher.integration          # or token: (an OAuth access token)
        password: ${SERVICENOW_PASSWORD}
        assignment_group: Service Desk      # a name or a sys_id
        priorities: {P1: "1/1", P2: "1/2", P3: "2/2", P4: "3/2"}
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import requests
from pydantic import field_validator, model_validator

from integrations.base import TicketContent, TicketRef, TicketStatus
from integrations.rest import HelpdeskConfig, RestHelpdesk
from watcher.core.secret import Secret

__all__ = ["ServiceNowConfig", "ServiceNowIntegration"]

# impact/urgency: 1/1 is priority 1 Critical, 1/2 2 High, 2/2 3 Moderate, 3/2 4 Low
DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": "1/1", "P2": "1/2", "P3": "2/2", "P4": "3/2"}
_IMPACT_URGENCY = re.compile(r"^([123])/([123])$")
RESOLVED = {"6", "7", "8"}  # Resolved, Closed, Canceled


class ServiceNowConfig(HelpdeskConfig):
    user: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    table: str = "incident"
    assignment_group: str | None = None
    caller: str | None = None
    category: str | None = None
    close_code: str = "Solution provided"  # before Tokyo: "Solved (Permanently)"
    resolved_state: int = 6
    reopen_state: int = 2

    @field_validator("priorities")
    @classmethod
    def _impact_urgency(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for name, pair in value.items():
            if not _IMPACT_URGENCY.match(str(pair)):
                raise ValueError(
                    f'{name}: {pair!r} is not "impact/urgency"; write e.g. {name}: "1/2" (1 high - 3 low)'
                )
        return value

    @model_validator(mode="after")
    def _auth(self) -> ServiceNowConfig:
        if self.token is None and (self.user is None or self.password is None):
            raise ValueError("set token: (an OAuth access token) or both user: and password:")
        return self


class ServiceNowIntegration(RestHelpdesk):
    kind = "servicenow"
    vendor = "ServiceNow"
    api_path = "/api/now/table"
    Config = ServiceNowConfig
    default_priorities = DEFAULT_PRIORITIES
    config: ServiceNowConfig

    def _authenticate(self, session: requests.Session) -> None:
        if self.config.token is not None:
            session.headers["Authorization"] = f"Bearer {self.config.token.reveal()}"
        else:
            assert self.config.user is not None and self.config.password is not None
            session.auth = (self.config.user, self.config.password.reveal())

    def _web_url(self, ticket_id: str) -> str:
        return f"{self.config.url}/nav_to.do?uri={self.config.table}.do?sys_id={ticket_id}"

    def _path(self, query: dict[str, Any], ticket_id: str = "") -> str:
        record = f"/{ticket_id}" if ticket_id else ""
        return f"/{self.config.table}{record}?{urllib.parse.urlencode(query)}"

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        impact, urgency = str(self._mapped(ticket)).split("/")
        return {"impact": impact, "urgency": urgency}

    def _state_fields(self, resolved: bool) -> dict[str, Any]:
        if resolved:
            return {"state": str(self.config.resolved_state), "close_code": self.config.close_code}
        return {"state": str(self.config.reopen_state)}

    def open(self, ticket: TicketContent) -> TicketRef:
        record: dict[str, Any] = {
            "short_description": " ".join(ticket.subject.split())[:160],
            "description": ticket.body,
            "correlation_id": ticket.fingerprint,
            "correlation_display": "watcher",
            **self._priority_fields(ticket),
        }
        for field, value in (
            ("assignment_group", self.config.assignment_group),
            ("caller_id", self.config.caller),
            ("category", self.config.category),
        ):
            if value:
                record[field] = value
        query = {"sysparm_fields": "sys_id,number", "sysparm_exclude_reference_link": "true"}
        answer = self._call("POST", self._path(query), "create incident", json=record) or {}
        return self._ref((answer.get("result") or {}).get("sys_id"), answer)

    def _change(
        self, ref: TicketRef, fields: dict[str, Any], note: str, what: str, *, note_first: bool
    ) -> None:
        # one PATCH carries the fields and the work note together
        record = {**fields, **({"work_notes": note} if note else {})}
        self._update(ref, record, what)

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        query = {"sysparm_fields": "sys_id", "sysparm_exclude_reference_link": "true"}
        self._call("PATCH", self._path(query, ref.id), what, json=fields)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        notes = ticket.text or "Resolved by watcher: the check recovered."
        self._update(ref, {**self._state_fields(True), "close_notes": notes}, "resolve")

    def find(self, fingerprint: str) -> TicketRef | None:
        query = {
            "sysparm_query": f"correlation_id={fingerprint}^active=true^ORDERBYsys_created_on",
            "sysparm_fields": "sys_id,number",
            "sysparm_limit": 1,
        }
        found = (self._call("GET", self._path(query), "search incidents") or {}).get("result")
        if not found:
            return None
        sys_id = str(found[0]["sys_id"])
        return TicketRef(id=sys_id, url=self._web_url(sys_id))

    def status(self, ref: TicketRef) -> TicketStatus | None:
        query = {"sysparm_fields": "state,assigned_to", "sysparm_display_value": "all"}
        record = (self._call("GET", self._path(query, ref.id), "read incident") or {}).get(
            "result"
        ) or {}
        state = record.get("state") or {}
        assignee = record.get("assigned_to") or {}
        owner = assignee.get("display_value") or assignee.get("value")
        return self._status(str(state.get("value")) in RESOLVED, owner)
