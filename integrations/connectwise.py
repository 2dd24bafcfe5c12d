"""``connectwise``: service tickets in ConnectWise Manage (PSA) through its REST API 3.0.

The fingerprint goes into a text custom field on the ticket (``fingerprint_field_id``,
named ``fingerprint_field``), which ``find()`` searches with ``customFieldConditions``
among the board's open tickets. Board, status and priority are named as they read in
Manage. Updates are internal notes (Internal Analysis). Resolve and reopen set the
statuses named in the config. A member assigned (the ticket's owner) acknowledges.

    - connectwise:
        url: https://api-na.myconnectwise.net   # your Manage API host
        company: acme                            # the company id you log in with
        public_key: Xk2Lq8RwT4vN
        private_key: ${CW_PRIVATE_KEY}
        client_id: 6f3a2c1e-cw-watcher            # from developer.connectwise.com
        board: Help Desk
        customer: AcmeCorp                        # the company identifier tickets are for
        fingerprint_field_id: 12
        resolved_status: Closed (resolved)
        reopen_status: New
        priorities: {P1: Priority 1 - Emergency Response, P2: Priority 2 - Quick Response}
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import requests

from integrations.base import TicketContent, TicketRef, TicketStatus
from integrations.rest import HelpdeskConfig, RestHelpdesk
from watcher.core.secret import Secret

__all__ = ["ConnectWiseConfig", "ConnectWiseIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {
    "P1": "Priority 1 - Emergency Response",
    "P2": "Priority 2 - Quick Response",
    "P3": "Priority 3 - Normal Response",
    "P4": "Priority 4 - Schedule Maintenance",
}
SUMMARY_MAX = 100  # Manage refuses a longer summary


class ConnectWiseConfig(HelpdeskConfig):
    company: str
    public_key: str
    private_key: Secret
    client_id: str
    board: str
    customer: str
    status: str = "New"
    resolved_status: str = "Closed (resolved)"
    reopen_status: str = "New"
    fingerprint_field_id: int
    fingerprint_field: str = "Watcher Fingerprint"


def _literal(value: str) -> str:
    """A string in Manage's conditions language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ConnectWiseIntegration(RestHelpdesk):
    kind = "connectwise"
    vendor = "ConnectWise"
    api_path = "/v4_6_release/apis/3.0/service/tickets"
    Config = ConnectWiseConfig
    default_priorities = DEFAULT_PRIORITIES
    config: ConnectWiseConfig

    def _authenticate(self, session: requests.Session) -> None:
        user = f"{self.config.company}+{self.config.public_key}"
        session.auth = (user, self.config.private_key.reveal())
        session.headers["clientId"] = self.config.client_id

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        value = self._mapped(ticket)
        return {"priority": {"id": value} if isinstance(value, int) else {"name": value}}

    def _state_fields(self, resolved: bool) -> dict[str, Any]:
        name = self.config.resolved_status if resolved else self.config.reopen_status
        return {"status": {"name": name}}

    def open(self, ticket: TicketContent) -> TicketRef:
        summary = " ".join(ticket.subject.split())
        if len(summary) > SUMMARY_MAX:
            summary = summary[: SUMMARY_MAX - 3] + "..."
        fields: dict[str, Any] = {
            "summary": summary,
            "board": {"name": self.config.board},
            "company": {"identifier": self.config.customer},
            "status": {"name": self.config.status},
            "initialDescription": ticket.body,
            "customFields": [
                {
                    "id": self.config.fingerprint_field_id,
                    "caption": self.config.fingerprint_field,
                    "type": "Text",
                    "entryMethod": "EntryField",
                    "numberOfDecimals": 0,
                    "value": ticket.fingerprint,
                }
            ],
            **self._priority_fields(ticket),
        }
        answer = self._call("POST", "", "create ticket", json=fields)
        return self._ref((answer or {}).get("id"), answer)

    def _note(self, ref: TicketRef, text: str) -> None:
        note = {"text": text, "internalAnalysisFlag": True, "detailDescriptionFlag": False}
        self._call("POST", f"/{ref.id}/notes", "add note", json=note)

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        patch = [{"op": "replace", "path": name, "value": value} for name, value in fields.items()]
        self._call("PATCH", f"/{ref.id}", what, json=patch)

    def find(self, fingerprint: str) -> TicketRef | None:
        query = {
            "conditions": f"board/name={_literal(self.config.board)} AND closedFlag=false",
            "customFieldConditions": f"caption={_literal(self.config.fingerprint_field)}"
            f" AND value={_literal(fingerprint)}",
            "orderBy": "id asc",
            "fields": "id",
            "pageSize": 5,
        }
        found = self._call("GET", "?" + urllib.parse.urlencode(query), "search tickets") or []
        if not found:
            return None
        return TicketRef(id=str(found[0]["id"]))

    def status(self, ref: TicketRef) -> TicketStatus | None:
        query = urllib.parse.urlencode({"fields": "id,closedFlag,owner,resources"})
        ticket = self._call("GET", f"/{ref.id}?{query}", "read ticket") or {}
        owner = (ticket.get("owner") or {}).get("identifier") or ticket.get("resources")
        return self._status(bool(ticket.get("closedFlag")), owner)
