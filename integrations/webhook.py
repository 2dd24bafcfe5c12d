"""``webhook``: a signed JSON POST per incident event, for anything with an HTTP endpoint.

Payload (version 1)::

    {"version": 1, "event": "ticket.open", "delivery_id": 17, "sent_at": "...",
     "incident": {"incident_id": 3, "fingerprint": "...", "site": "...", "target": "...",
                  "priority": "P2", "summary": "...", "subject": "...", "body": "...",
                  "state": "open", "text": "...", ...}}

Events: ticket.open, ticket.comment, ticket.priority, ticket.resolve, ticket.reopen,
page.trigger, page.acknowledge, page.resolve. With ``secret`` set, the header
``X-Watcher-Signature: sha256=<hex>`` is the HMAC-SHA256 of the raw body with that secret.
``X-Watcher-Delivery`` is unique per delivery, so a receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from pydantic import field_validator

from integrations.base import (
    Integration,
    IntegrationConfig,
    PageContent,
    TicketContent,
    TicketRef,
    TransientError,
    error_for_status,
)
from watcher.core.secret import Secret, protect_url
from watcher.core.types import Duration
from watcher.delivery.httpclient import new_session

__all__ = ["WebhookIntegration", "WebhookConfig", "sign"]


class WebhookConfig(IntegrationConfig):
    url: str
    secret: Secret | None = None
    headers: dict[str, Secret] = {}
    timeout: Duration = timedelta(seconds=10)
    tls_verify: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return protect_url(value, path_tokens=True)  # hook URLs often carry their token in the path


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookIntegration(Integration):
    kind = "webhook"
    Config = WebhookConfig
    roles = frozenset({"tickets", "paging"})
    config: WebhookConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = new_session(
            timeout=self.config.timeout.total_seconds(),
            verify=self.config.tls_verify,
            clients=self.env.http,
        )

    def _post(self, event: str, content: TicketContent) -> dict[str, Any]:
        payload = {
            "version": 1,
            "event": event,
            "delivery_id": content.delivery_id,
            "sent_at": datetime.now(UTC).isoformat(),
            "incident": content.to_dict(),
        }
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Watcher-Event": event,
            "X-Watcher-Delivery": str(content.delivery_id),
        }
        headers.update({k: v.reveal() for k, v in self.config.headers.items()})
        if self.config.secret:
            headers["X-Watcher-Signature"] = sign(self.config.secret.reveal(), body)
        try:
            response = self._session.post(self.config.url, data=body, headers=headers)
        except requests.RequestException as exc:
            raise TransientError(f"webhook {self.name}: {type(exc).__name__}: {exc}") from None
        error_for_status(response, f"webhook {self.name}")
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def open(self, ticket: TicketContent) -> TicketRef:
        answer = self._post("ticket.open", ticket)
        return TicketRef(id=str(answer.get("id") or ticket.fingerprint), url=answer.get("url"))

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._post("ticket.comment", ticket)

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._post("ticket.priority", ticket)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._post("ticket.resolve", ticket)

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._post("ticket.reopen", ticket)

    def page(self, page: PageContent) -> str | None:
        self._post("page.trigger", page)
        return page.fingerprint

    def page_acknowledge(self, page: PageContent) -> None:
        self._post("page.acknowledge", page)

    def page_resolve(self, page: PageContent) -> None:
        self._post("page.resolve", page)

    def close(self) -> None:
        self._session.close()
