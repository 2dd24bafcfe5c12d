"""``request_tracker``: tickets in Request Tracker 4.4 or 5 through its REST 2 API.

A ticket is created in ``queue`` with the incident's fingerprint in a custom field
(``fingerprint_field``, default "Watcher Fingerprint"; it must be applied to the queue),
so ``find()`` can look it up with TicketSQL after a crash. Updates are comments, not
replies: a reply mails the requestors and moves a new ticket to ``open``, which
watcher reads as someone having taken it. Resolve sets the status to ``resolved``; a
reopen sets it back to ``new``, so that a person opening or taking it acknowledges.

    - request_tracker:
        url: https://rt.example.org
        queue: General
        user: watcher
        password: ${RT_PASSWORD}      # or token: ${RT_TOKEN} (an RT auth token)
        priorities: {P1: 100, P2: 75, P3: 50, P4: 25}
"""

from __future__ import annotations

import logging
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

__all__ = ["RequestTrackerConfig", "RequestTrackerIntegration"]

log = logging.getLogger("watcher.integrations.request_tracker")

DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": 100, "P2": 75, "P3": 50, "P4": 25}
ACTIVE = {"new": "new", "open": "open", "stalled": "open"}


class RequestTrackerConfig(HelpdeskConfig):
    queue: str = "General"
    user: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    fingerprint_field: str = "Watcher Fingerprint"
    resolved_status: str = "resolved"
    reopen_status: str = "new"

    @model_validator(mode="after")
    def _auth(self) -> RequestTrackerConfig:
        if self.token is None and (self.user is None or self.password is None):
            raise ValueError("set token: (an RT auth token) or both user: and password:")
        return self


def _quote(value: str) -> str:
    """A TicketSQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RequestTrackerIntegration(Integration):
    kind = "request_tracker"
    Config = RequestTrackerConfig
    roles = frozenset({"tickets"})
    config: RequestTrackerConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        if self.config.token is not None:
            self._session.headers["Authorization"] = f"token {self.config.token.reveal()}"
        else:
            assert self.config.user is not None and self.config.password is not None
            self._session.auth = (self.config.user, self.config.password.reveal())
            protect_basic_auth(self.config.user, self.config.password.reveal())
        self._session.headers["Content-Type"] = "application/json"
        self._api = f"{self.config.url}/REST/2.0"
        self._checked_field = False

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = call(
            self._session, method, self._api + path, f"RT {self.name}: {what}", **kwargs
        )
        return json_of(response, f"RT {self.name}: {what}") if response.content else None

    def _priority(self, ticket: TicketContent) -> str | int:
        return mapped_priority(self.config.priorities, DEFAULT_PRIORITIES, ticket.priority)

    def _url(self, ticket_id: str) -> str:
        return f"{self.config.url}/Ticket/Display.html?id={ticket_id}"

    # ------------------------------------------------------------------- tickets

    def open(self, ticket: TicketContent) -> TicketRef:
        payload = {
            "Queue": self.config.queue,
            "Subject": ticket.subject,
            "Content": ticket.body,
            "ContentType": "text/plain",
            "Priority": self._priority(ticket),
            "CustomFields": {self.config.fingerprint_field: ticket.fingerprint},
        }
        answer = self._call("POST", "/ticket", "create ticket", json=payload)
        ticket_id = str(answer.get("id") or "") if isinstance(answer, dict) else ""
        if not ticket_id:
            raise PermanentError(
                f"RT {self.name}: create answered without a ticket id: {answer!r}"[:300]
            )
        self._check_fingerprint(ticket_id, ticket.fingerprint)
        return TicketRef(id=ticket_id, url=self._url(ticket_id))

    def _check_fingerprint(self, ticket_id: str, fingerprint: str) -> None:
        """Reads the first ticket back and says loudly when RT dropped the fingerprint:
        without it a restarted watcher cannot find the ticket again. Never fails the
        delivery (a retry would open a second ticket)."""
        if self._checked_field:
            return
        try:
            stored = self.fingerprint_of(ticket_id)
        except Exception as exc:  # the ticket exists; a failed check must not undo that
            log.debug("RT %s: could not read back ticket %s: %s", self.name, ticket_id, exc)
            return
        self._checked_field = True
        if stored == fingerprint:
            return
        log.error(
            "RT %s: ticket %s has no %r value: apply that custom field to queue %r, or a watcher"
            " restarted mid-delivery may open a duplicate ticket",
            self.name,
            ticket_id,
            self.config.fingerprint_field,
            self.config.queue,
        )

    def fingerprint_of(self, ticket_id: str) -> str | None:
        data = self._call("GET", f"/ticket/{ticket_id}", "read ticket")
        for field in (data or {}).get("CustomFields") or []:
            if field.get("name") == self.config.fingerprint_field:
                values = field.get("values") or []
                return str(values[0]) if values else None
        return None

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._comment(ref, ticket.text or ticket.body)

    def _comment(self, ref: TicketRef, text: str) -> None:
        self._call(
            "POST",
            f"/ticket/{ref.id}/comment",
            "comment",
            json={"Content": text, "ContentType": "text/plain"},
        )

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        """PUT answers 200 with one message per field, also when RT refused the change."""
        messages = self._call("PUT", f"/ticket/{ref.id}", what, json=fields) or []
        for message in messages if isinstance(messages, list) else [messages]:
            text = str(message)
            if "changed" in text or "already the current value" in text:
                continue
            raise PermanentError(f"RT {self.name}: {what} on ticket {ref.id} refused: {text}"[:300])

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(ref, {"Priority": self._priority(ticket)}, "set priority")
        if ticket.text:
            self._comment(ref, ticket.text)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        if ticket.text:
            self._comment(ref, ticket.text)
        self._update(ref, {"Status": self.config.resolved_status}, "resolve")

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._update(
            ref, {"Status": self.config.reopen_status, "Priority": self._priority(ticket)}, "reopen"
        )
        if ticket.text:
            self._comment(ref, ticket.text)

    def find(self, fingerprint: str) -> TicketRef | None:
        query = (
            f"Queue = {_quote(self.config.queue)} AND CF.{{{self.config.fingerprint_field}}} = {_quote(fingerprint)}"
            " AND Status = '__Active__'"
        )
        params = urllib.parse.urlencode(
            {"query": query, "orderby": "id", "order": "ASC", "per_page": 5}
        )
        answer = self._call("GET", f"/tickets?{params}", "search tickets")
        items = (answer or {}).get("items") or []
        if not items:
            return None
        ticket_id = str(items[0]["id"])
        return TicketRef(id=ticket_id, url=self._url(ticket_id))

    def status(self, ref: TicketRef) -> TicketStatus | None:
        data = self._call("GET", f"/ticket/{ref.id}", "read ticket") or {}
        status = str(data.get("Status") or "")
        owner = data.get("Owner") or {}
        owner_id = str(owner.get("id") or "Nobody") if isinstance(owner, dict) else str(owner)
        taken = owner_id not in ("", "Nobody", "6")  # 6 is Nobody's id on a stock RT
        state = ACTIVE.get(
            status, "resolved" if status in ("resolved", "rejected", "deleted") else "other"
        )
        return TicketStatus(state=state, taken=taken, owner=owner_id if taken else None)  # type: ignore[arg-type]

    def close(self) -> None:
        self._session.close()
