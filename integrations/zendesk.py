"""``zendesk``: tickets in Zendesk Support through the Tickets API (``/api/v2/tickets``).

The fingerprint is the ticket's ``external_id``, which the tickets list filters on
(``?external_id=``), so ``find()`` needs no search index. Updates are private comments
(``public: false``: the requester gets no mail). Resolve sets ``solved``; reopen sets
``open`` (a solved ticket can be reopened; once Zendesk closes it, about four days
later, it cannot, and a recurrence opens a new ticket). An agent assigned acknowledges.

    - zendesk:
        url: https://acme.zendesk.com
        email: watcher@acme.example          # the agent the API token belongs to
        token: ${ZENDESK_TOKEN}              # an API token (Admin Center, Apps and integrations)
        group_id: 360001234567               # optional: the group that gets the tickets
        priorities: {P1: urgent, P2: high, P3: normal, P4: low}
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import requests
from pydantic import field_validator

from integrations.base import TicketContent, TicketRef, TicketStatus
from integrations.rest import HelpdeskConfig, RestHelpdesk
from watcher.core.secret import Secret

__all__ = ["ZendeskConfig", "ZendeskIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {
    "P1": "urgent",
    "P2": "high",
    "P3": "normal",
    "P4": "low",
}
ZENDESK_PRIORITIES = ("urgent", "high", "normal", "low")
RESOLVED = {"solved", "closed"}


class ZendeskConfig(HelpdeskConfig):
    email: str
    token: Secret
    group_id: int | None = None
    ticket_type: str = "incident"
    tags: list[str] = ["watcher"]

    @field_validator("priorities")
    @classmethod
    def _zendesk_priorities(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for name, priority in value.items():
            if priority not in ZENDESK_PRIORITIES:
                raise ValueError(
                    f"{name}: {priority!r} is none of Zendesk's: urgent, high, normal, low"
                )
        return value


class ZendeskIntegration(RestHelpdesk):
    kind = "zendesk"
    vendor = "Zendesk"
    api_path = "/api/v2"
    Config = ZendeskConfig
    default_priorities = DEFAULT_PRIORITIES
    config: ZendeskConfig

    def _authenticate(self, session: requests.Session) -> None:
        session.auth = (f"{self.config.email}/token", self.config.token.reveal())

    def _web_url(self, ticket_id: str) -> str:
        return f"{self.config.url}/agent/tickets/{ticket_id}"

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        return {"priority": self._mapped(ticket)}

    def _state_fields(self, resolved: bool) -> dict[str, Any]:
        return {"status": "solved" if resolved else "open"}

    def open(self, ticket: TicketContent) -> TicketRef:
        fields: dict[str, Any] = {
            "subject": " ".join(ticket.subject.split()),
            "comment": {"body": ticket.body, "public": False},
            "type": self.config.ticket_type,
            "external_id": ticket.fingerprint,
            "tags": list(self.config.tags),
            **self._priority_fields(ticket),
        }
        if self.config.group_id is not None:
            fields["group_id"] = self.config.group_id
        answer = self._call("POST", "/tickets.json", "create ticket", json={"ticket": fields})
        return self._ref(((answer or {}).get("ticket") or {}).get("id"), answer)

    def _change(
        self, ref: TicketRef, fields: dict[str, Any], note: str, what: str, *, note_first: bool
    ) -> None:
        # a comment rides on the same update as the fields
        self._update(
            ref, {**fields, **({"comment": {"body": note, "public": False}} if note else {})}, what
        )

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        self._call("PUT", f"/tickets/{ref.id}.json", what, json={"ticket": fields})

    def find(self, fingerprint: str) -> TicketRef | None:
        query = urllib.parse.urlencode({"external_id": fingerprint})
        answer = self._call("GET", f"/tickets.json?{query}", "search tickets") or {}
        for ticket in answer.get("tickets") or []:
            if ticket.get("status") not in RESOLVED:
                return TicketRef(id=str(ticket["id"]), url=self._web_url(str(ticket["id"])))
        return None

    def status(self, ref: TicketRef) -> TicketStatus | None:
        ticket = (self._call("GET", f"/tickets/{ref.id}.json", "read ticket") or {}).get(
            "ticket"
        ) or {}
        return self._status(ticket.get("status") in RESOLVED, ticket.get("assignee_id"))
