"""``freshservice``: tickets in Freshservice through API v2 (``/api/v2/tickets``).

The fingerprint is a tag on the ticket, which ``find()`` looks up with the tickets filter
query (``tag:'<fingerprint>'``: Freshservice's filter cannot search text custom fields). Watcher's priority sets
both the ticket's priority (1 low - 4 urgent) and its urgency (1 low - 3 high). Updates
are private notes. Resolve sets status 4 (Resolved); reopen sets 2 (Open), the status a
new ticket has too, so an agent assigned (the ticket's responder) acknowledges.

    - freshservice:
        url: https://acme.freshservice.com
        api_key: ${FRESHSERVICE_KEY}          # an agent's API key (Profile settings)
        requester: monitoring@acme.example    # tickets are raised for this requester
        group_id: 14000012345                 # optional: the agent group
        priorities: {P1: 4, P2: 3, P3: 2, P4: 1}
        urgencies: {P1: 3, P2: 3, P3: 2, P4: 1}
"""

from __future__ import annotations

import html
import re
import urllib.parse
from typing import Any

import requests
from pydantic import field_validator

from integrations.base import TicketContent, TicketRef, TicketStatus
from integrations.rest import NumberedHelpdeskConfig, RestHelpdesk, mapped_priority
from watcher.core.secret import Secret

__all__ = ["FreshserviceConfig", "FreshserviceIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}
DEFAULT_URGENCIES: dict[str, str | int] = {"P1": 3, "P2": 3, "P3": 2, "P4": 1}
_PRIORITY = re.compile(r"^P[1-9]$")
OPEN, RESOLVED = 2, {4, 5}  # 2 Open, 3 Pending, 4 Resolved, 5 Closed


class FreshserviceConfig(NumberedHelpdeskConfig):
    api_key: Secret
    requester: str
    group_id: int | None = None
    workspace_id: int | None = None
    source: int = 2  # Portal
    urgencies: dict[str, int] = {}
    tags: list[str] = ["watcher"]
    resolved_status: int = 4
    reopen_status: int = OPEN

    @field_validator("urgencies")
    @classmethod
    def _urgencies(cls, value: dict[str, int]) -> dict[str, int]:
        for name in value:
            if not _PRIORITY.match(name):
                raise ValueError(f"{name!r} is not a watcher priority; map P1, P2, P3 and P4")
        return value


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class FreshserviceIntegration(RestHelpdesk):
    kind = "freshservice"
    vendor = "Freshservice"
    api_path = "/api/v2"
    Config = FreshserviceConfig
    default_priorities = DEFAULT_PRIORITIES
    config: FreshserviceConfig

    def _authenticate(self, session: requests.Session) -> None:
        session.auth = (self.config.api_key.reveal(), "X")

    def _web_url(self, ticket_id: str) -> str:
        return f"{self.config.url}/a/tickets/{ticket_id}"

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        urgency = mapped_priority(self.config.urgencies, DEFAULT_URGENCIES, ticket.priority)
        return {"priority": int(self._mapped(ticket)), "urgency": int(urgency)}

    def open(self, ticket: TicketContent) -> TicketRef:
        fields: dict[str, Any] = {
            "subject": " ".join(ticket.subject.split()),
            "description": _html(ticket.body),
            "email": self.config.requester,
            "status": OPEN,
            "source": self.config.source,
            "tags": [*self.config.tags, ticket.fingerprint],
            **self._priority_fields(ticket),
        }
        for name in ("group_id", "workspace_id"):
            if getattr(self.config, name) is not None:
                fields[name] = getattr(self.config, name)
        answer = self._call("POST", "/tickets", "create ticket", json=fields)
        return self._ref(((answer or {}).get("ticket") or {}).get("id"), answer)

    def _note(self, ref: TicketRef, text: str) -> None:
        note = {"body": _html(text), "private": True}
        self._call("POST", f"/tickets/{ref.id}/notes", "add note", json=note)

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        self._call("PUT", f"/tickets/{ref.id}", what, json=fields)

    def find(self, fingerprint: str) -> TicketRef | None:
        query = f'"tag:{_quoted(fingerprint)} AND (status:2 OR status:3)"'
        answer = self._call(
            "GET", f"/tickets/filter?{urllib.parse.urlencode({'query': query})}", "search tickets"
        )
        tickets = sorted((answer or {}).get("tickets") or [], key=lambda t: int(t["id"]))
        if not tickets:
            return None
        return TicketRef(id=str(tickets[0]["id"]), url=self._web_url(str(tickets[0]["id"])))

    def status(self, ref: TicketRef) -> TicketStatus | None:
        ticket = (self._call("GET", f"/tickets/{ref.id}", "read ticket") or {}).get("ticket") or {}
        return self._status(ticket.get("status") in RESOLVED, ticket.get("responder_id"))
