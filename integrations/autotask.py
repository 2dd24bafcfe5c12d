"""``autotask``: tickets in Datto Autotask PSA through its REST API (``/ATServicesRest/V1.0``).

The fingerprint goes into a ticket user-defined field (``fingerprint_field``, a text UDF),
which ``find()`` queries (``"udf": true``) among tickets not yet complete. Queue, status
and priority are picklist ids (Admin, Features & Settings, or
``/Tickets/entityInformation/fields``). Updates are ticket notes. Resolve sets status 5
(Complete); reopen sets 1 (New). A resource assigned acknowledges.

Autotask answers a request its business rules refuse (a wrong queue id, a missing
required field) with HTTP 500 and an ``errors`` list; watcher reads that as permanent:
repeating it cannot help. A 500 without that list stays transient.

    - autotask:
        url: https://webservices5.autotask.net   # your zone (GET /zoneInformation?user=...)
        user: watcher-api@acme.example
        secret: ${AUTOTASK_SECRET}
        integration_code: ${AUTOTASK_INTEGRATION_CODE}
        company_id: 0                             # the account tickets are for (0: your own)
        queue_id: 29682833
        priorities: {P1: 4, P2: 1, P3: 2, P4: 3}   # Critical, High, Medium, Low
"""

from __future__ import annotations

import re
from typing import Any

import requests

from integrations.base import PermanentError, TicketContent, TicketRef, TicketStatus, TransientError
from integrations.rest import NumberedHelpdeskConfig, RestHelpdesk
from watcher.core.secret import Secret

__all__ = ["AutotaskConfig", "AutotaskIntegration"]

# Autotask's stock priority picklist: 1 High, 2 Medium, 3 Low, 4 Critical
DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": 4, "P2": 1, "P3": 2, "P4": 3}
TITLE_MAX, DESCRIPTION_MAX = 255, 8000
_REFUSED = re.compile(r'"errors"\s*:\s*\[\s*["{]')


class AutotaskConfig(NumberedHelpdeskConfig):
    user: str
    secret: Secret
    integration_code: Secret
    company_id: int
    queue_id: int
    new_status: int = 1  # New
    resolved_status: int = 5  # Complete
    reopen_status: int = 1
    ticket_type: int | None = None
    fingerprint_field: str = "Watcher Fingerprint"
    note_type: int = 1
    note_publish: int = 1  # All Autotask Users (not the customer)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n[... cut by watcher]"


class AutotaskIntegration(RestHelpdesk):
    kind = "autotask"
    vendor = "Autotask"
    api_path = "/ATServicesRest/V1.0/Tickets"
    Config = AutotaskConfig
    default_priorities = DEFAULT_PRIORITIES
    config: AutotaskConfig

    def _authenticate(self, session: requests.Session) -> None:
        session.headers["UserName"] = self.config.user
        session.headers["Secret"] = self.config.secret.reveal()
        session.headers["ApiIntegrationCode"] = self.config.integration_code.reveal()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            return super()._call(method, path, what, **kwargs)
        except TransientError as exc:
            if exc.status == 500 and _REFUSED.search(str(exc)):
                raise PermanentError(str(exc), status=500) from None
            raise

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        return {"priority": int(self._mapped(ticket))}

    def open(self, ticket: TicketContent) -> TicketRef:
        fields: dict[str, Any] = {
            "companyID": self.config.company_id,
            "queueID": self.config.queue_id,
            "title": _cut(" ".join(ticket.subject.split()), TITLE_MAX),
            "description": _cut(ticket.body, DESCRIPTION_MAX),
            "status": self.config.new_status,
            "userDefinedFields": [
                {"name": self.config.fingerprint_field, "value": ticket.fingerprint}
            ],
            **self._priority_fields(ticket),
        }
        if self.config.ticket_type is not None:
            fields["ticketType"] = self.config.ticket_type
        answer = self._call("POST", "", "create ticket", json=fields)
        return self._ref((answer or {}).get("itemId"), answer)

    def _note(self, ref: TicketRef, text: str) -> None:
        note = {
            "title": "watcher",
            "description": _cut(text, DESCRIPTION_MAX),
            "noteType": self.config.note_type,
            "publish": self.config.note_publish,
        }
        self._call("POST", f"/{ref.id}/Notes", "add note", json=note)

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        self._call("PATCH", "", what, json={"id": int(ref.id), **fields})

    def find(self, fingerprint: str) -> TicketRef | None:
        query = {
            "MaxRecords": 5,
            "IncludeFields": ["id", "status"],
            "filter": [
                {
                    "op": "eq",
                    "field": self.config.fingerprint_field,
                    "udf": True,
                    "value": fingerprint,
                },
                {"op": "noteq", "field": "status", "value": self.config.resolved_status},
            ],
        }
        found = (self._call("POST", "/query", "search tickets", json=query) or {}).get("items")
        if not found:
            return None
        return TicketRef(id=str(min(int(item["id"]) for item in found)))

    def status(self, ref: TicketRef) -> TicketStatus | None:
        item = (self._call("GET", f"/{ref.id}", "read ticket") or {}).get("item")
        if not item:
            return None  # Autotask answers {"item": null} for a ticket that is gone
        resolved = item.get("status") == self.config.resolved_status
        return self._status(resolved, item.get("assignedResourceID"))
