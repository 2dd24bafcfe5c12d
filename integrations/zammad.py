"""``zammad``: tickets in Zammad through its REST API (tickets, tags, articles).

The fingerprint is a tag on the ticket, set in the same request that creates it, so
``find()`` can look it up (``tags:<fingerprint>`` in Zammad's search) after a crash.
Updates are internal notes (articles of type ``note``). Resolve closes the ticket;
a reopen sets it back to ``new``, so that an agent opening or taking it acknowledges.

    - zammad:
        url: https://helpdesk.acme.example
        token: ${ZAMMAD_TOKEN}             # an access token with ticket.agent
        group: Users
        customer: monitoring@acme.example  # tickets are filed for this customer
        priorities: {P1: "3 high", P2: "3 high", P3: "2 normal", P4: "1 low"}
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from pydantic import model_validator

from integrations.base import (
    Integration,
    PermanentError,
    TicketContent,
    TicketRef,
    TicketStatus,
)
from integrations.rest import HelpdeskConfig, call, json_of, mapped_priority, session_for
from watcher.core.secret import Secret, protect_basic_auth

__all__ = ["ZammadConfig", "ZammadIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {
    "P1": "3 high",
    "P2": "3 high",
    "P3": "2 normal",
    "P4": "1 low",
}
NOBODY = 1  # Zammad's placeholder user "-": an unowned ticket
CLOSED = {"closed", "merged", "removed"}


class ZammadConfig(HelpdeskConfig):
    token: Secret | None = None
    user: str | None = None
    password: Secret | None = None
    group: str = "Users"
    customer: str
    tags: list[str] = ["watcher"]
    resolved_state: str = "closed"
    reopen_state: str = "new"

    @model_validator(mode="after")
    def _auth(self) -> ZammadConfig:
        if self.token is None and (self.user is None or self.password is None):
            raise ValueError("set token: (a Zammad access token) or both user: and password:")
        return self


class ZammadIntegration(Integration):
    kind = "zammad"
    Config = ZammadConfig
    roles = frozenset({"tickets"})
    config: ZammadConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        if self.config.token is not None:
            self._session.headers["Authorization"] = f"Token token={self.config.token.reveal()}"
        else:
            assert self.config.user is not None and self.config.password is not None
            self._session.auth = (self.config.user, self.config.password.reveal())
            protect_basic_auth(self.config.user, self.config.password.reveal())
        self._api = f"{self.config.url}/api/v1"

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = call(
            self._session, method, self._api + path, f"Zammad {self.name}: {what}", **kwargs
        )
        return json_of(response, f"Zammad {self.name}: {what}") if response.content else None

    def _url(self, ticket_id: str) -> str:
        return f"{self.config.url}/#ticket/zoom/{ticket_id}"

    def _priority(self, ticket: TicketContent) -> str | int:
        return mapped_priority(self.config.priorities, DEFAULT_PRIORITIES, ticket.priority)

    @staticmethod
    def _note(subject: str, text: str) -> dict[str, Any]:
        return {
            "subject": subject,
            "body": text,
            "type": "note",
            "internal": True,
            "content_type": "text/plain",
        }

    def open(self, ticket: TicketContent) -> TicketRef:
        customer = self.config.customer
        payload = {
            "title": ticket.subject,
            "group": self.config.group,
            "customer_id": customer
            if customer.startswith("guess:") or customer.isdigit()
            else f"guess:{customer}",
            "state": "new",
            "priority": self._priority(ticket),
            "tags": ",".join([*self.config.tags, ticket.fingerprint]),
            "article": self._note(ticket.subject, ticket.body),
        }
        answer = self._call("POST", "/tickets", "create ticket", json=payload) or {}
        ticket_id = str(answer.get("id") or "")
        if not ticket_id:
            raise PermanentError(
                f"Zammad {self.name}: create answered without a ticket id: {answer!r}"[:300]
            )
        return TicketRef(id=ticket_id, url=self._url(ticket_id))

    def _update(
        self, ref: TicketRef, fields: dict[str, Any], what: str, ticket: TicketContent
    ) -> None:
        if ticket.text:
            fields["article"] = self._note(ticket.subject, ticket.text)
        self._call("PUT", f"/tickets/{ref.id}", what, json=fields)

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        note = {
            "ticket_id": int(ref.id) if ref.id.isdigit() else ref.id,
            **self._note(ticket.subject, ticket.text or ticket.body),
        }
        self._call("POST", "/ticket_articles", "add note", json=note)

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(ref, {"priority": self._priority(ticket)}, "set priority", ticket)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(ref, {"state": self.config.resolved_state}, "close", ticket)

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(
            ref,
            {"state": self.config.reopen_state, "priority": self._priority(ticket)},
            "reopen",
            ticket,
        )

    def find(self, fingerprint: str) -> TicketRef | None:
        params = urllib.parse.urlencode(
            {
                "query": f'tags:"{fingerprint}"',
                "expand": "true",
                "limit": 20,
                "sort_by": "id",
                "order_by": "asc",
            }
        )
        answer = self._call("GET", f"/tickets/search?{params}", "search tickets") or []
        tickets = (
            answer
            if isinstance(answer, list)
            else list(((answer.get("assets") or {}).get("Ticket") or {}).values())
        )
        for item in sorted(tickets, key=lambda t: int(t.get("id") or 0)):
            if str(item.get("state") or "") not in CLOSED:
                ticket_id = str(item["id"])
                return TicketRef(id=ticket_id, url=self._url(ticket_id))
        return None

    def status(self, ref: TicketRef) -> TicketStatus | None:
        data = self._call("GET", f"/tickets/{ref.id}?expand=true", "read ticket") or {}
        state = str(data.get("state") or "")
        owner_id = data.get("owner_id")
        taken = owner_id not in (None, NOBODY, str(NOBODY))
        owner = str(data.get("owner") or owner_id) if taken else None
        mapped = (
            "new"
            if state == "new"
            else "resolved"
            if state in CLOSED
            else "open"
            if state
            else "other"
        )
        return TicketStatus(state=mapped, taken=taken, owner=owner)  # type: ignore[arg-type]

    def close(self) -> None:
        self._session.close()
