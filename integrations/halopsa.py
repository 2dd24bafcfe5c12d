"""``halopsa``: tickets in HaloPSA through its REST API (``/api/Tickets``, ``/api/Actions``).

Watcher signs in with an API application's client ID and secret (OAuth client
credentials, scope ``all``) and keeps the token until shortly before it expires. The
fingerprint goes into a text custom field (``fingerprint_field_id``); Halo's ticket list
cannot filter on custom fields, so ``find()`` searches open tickets for the fingerprint
(it is in the details too) and keeps the one whose field holds it. Updates are private
notes (actions hidden from the user). Resolve sets status 9 (Closed); reopen sets 1
(New). An agent assigned acknowledges. Halo's search looks at summaries and details,
where watcher's body names the fingerprint too.

    - halopsa:
        url: https://acme.halopsa.com         # the resource server; the API is under /api
        client_id: 3f2b8c4e-watcher
        client_secret: ${HALO_SECRET}
        tenant: acme                           # hosted Halo only
        customer_id: 12                        # the Halo client tickets are logged for
        fingerprint_field_id: 150
        priorities: {P1: 1, P2: 2, P3: 3, P4: 4}
"""

from __future__ import annotations

import html
import time
import urllib.parse
from typing import Any

import requests
from pydantic import field_validator

from integrations.base import PermanentError, TicketContent, TicketRef, TicketStatus
from integrations.rest import NumberedHelpdeskConfig, RestHelpdesk, call, json_of
from watcher.core.secret import Secret, protect_url

__all__ = ["HaloPSAConfig", "HaloPSAIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
TOKEN_MARGIN_S = 60.0  # renew this long before the token expires, not after a refusal


class HaloPSAConfig(NumberedHelpdeskConfig):
    auth_url: str | None = None  # default: <url>/auth
    client_id: str
    client_secret: Secret
    tenant: str | None = None
    customer_id: int
    site_id: int | None = None
    ticket_type_id: int | None = None
    team: str | None = None
    fingerprint_field_id: int
    note_outcome: str = "Private Note"
    resolved_status: int = 9  # Closed
    reopen_status: int = 1  # New

    @field_validator("auth_url")
    @classmethod
    def _auth_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return None if value is None else protect_url(value).rstrip("/")


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


class HaloPSAIntegration(RestHelpdesk):
    kind = "halopsa"
    vendor = "HaloPSA"
    api_path = "/api"
    status_field = "status_id"
    Config = HaloPSAConfig
    default_priorities = DEFAULT_PRIORITIES
    config: HaloPSAConfig

    def _authenticate(self, session: requests.Session) -> None:
        self._token_until = 0.0

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        if time.monotonic() >= self._token_until:
            self._sign_in()
        try:
            return super()._call(method, path, what, **kwargs)
        except PermanentError as exc:
            if exc.status != 401:
                raise
        self._sign_in()  # the token was revoked before it expired: one new one, one retry
        return super()._call(method, path, what, **kwargs)

    def _sign_in(self) -> None:
        url = (self.config.auth_url or f"{self.config.url}/auth") + "/token"
        if self.config.tenant:
            url += "?" + urllib.parse.urlencode({"tenant": self.config.tenant})
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.reveal(),
            "scope": "all",
        }
        what = self._what("sign in (client credentials)")
        answer = json_of(call(self._session, "POST", url, what, data=form), what) or {}
        token = answer.get("access_token")
        if not token:
            raise PermanentError(f"{what}: the answer carries no access_token")
        self._session.headers["Authorization"] = f"Bearer {Secret(str(token)).reveal()}"
        expires = float(answer.get("expires_in") or 3600)
        self._token_until = time.monotonic() + max(0.0, expires - TOKEN_MARGIN_S)

    def _web_url(self, ticket_id: str) -> str:
        return f"{self.config.url}/ticket?id={ticket_id}"

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        return {"priority_id": int(self._mapped(ticket))}

    def open(self, ticket: TicketContent) -> TicketRef:
        fields: dict[str, Any] = {
            "summary": " ".join(ticket.subject.split()),
            "details": _html(ticket.body),
            "client_id": self.config.customer_id,
            "customfields": [{"id": self.config.fingerprint_field_id, "value": ticket.fingerprint}],
            **self._priority_fields(ticket),
        }
        for field, value in (
            ("site_id", self.config.site_id),
            ("tickettype_id", self.config.ticket_type_id),
            ("team", self.config.team),
        ):
            if value is not None:
                fields[field] = value
        answer = self._call("POST", "/Tickets", "create ticket", json=[fields])
        created = answer[0] if isinstance(answer, list) and answer else answer
        return self._ref((created or {}).get("id"), answer)

    def _note(self, ref: TicketRef, text: str) -> None:
        action = {
            "ticket_id": int(ref.id),
            "outcome": self.config.note_outcome,
            "note": _html(text),
            "hiddenfromuser": True,
        }
        self._call("POST", "/Actions", "add note", json=[action])

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        self._call("POST", "/Tickets", what, json=[{"id": int(ref.id), **fields}])

    def _ticket(self, ticket_id: str) -> dict[str, Any]:
        return self._call("GET", f"/Tickets/{ticket_id}", "read ticket") or {}

    def find(self, fingerprint: str) -> TicketRef | None:
        query = {"search": fingerprint, "open_only": "true", "pageinate": "true", "page_size": 5}
        found = self._call("GET", f"/Tickets?{urllib.parse.urlencode(query)}", "search tickets")
        for candidate in sorted((found or {}).get("tickets") or [], key=lambda t: int(t["id"])):
            fields = self._ticket(str(candidate["id"])).get("customfields") or []
            if any(
                f.get("id") == self.config.fingerprint_field_id and f.get("value") == fingerprint
                for f in fields
            ):
                return TicketRef(id=str(candidate["id"]), url=self._web_url(str(candidate["id"])))
        return None

    def status(self, ref: TicketRef) -> TicketStatus | None:
        ticket = self._ticket(ref.id)
        agent, name = ticket.get("agent_id") or None, str(ticket.get("agent_name") or "")
        # no agent is 0 or null, or, where the API names it, the agent "Unassigned"
        owner = None if not agent or name.casefold() == "unassigned" else name or agent
        return self._status(ticket.get("status_id") == self.config.resolved_status, owner)
