"""``email``: tickets by mail to a helpdesk's intake address, and emergency mail to the hotline.

Most helpdesks open a ticket from a mail and thread replies on In-Reply-To, so updates
are sent as replies to the opening mail. As a pager it writes ``[Emergency]`` in the
subject, as the support policy asks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from integrations.base import (
    Integration,
    IntegrationConfig,
    PageContent,
    PermanentError,
    TicketContent,
    TicketRef,
)
from watcher.config.models import SmtpSettings
from watcher.delivery.mail import build_message, send_mail

__all__ = ["EmailIntegration", "EmailConfig"]


class EmailConfig(IntegrationConfig):
    to: list[str] | Literal["hotline", "managers", "escalation"]
    cc: list[str] = []
    smtp: SmtpSettings | None = None
    emergency_tag: str = "[Emergency]"

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: object) -> object:
        if isinstance(value, str) and value not in ("hotline", "managers", "escalation"):
            return [value]
        return value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            for address in value:
                if "@" not in address:
                    raise ValueError(f"{address!r} is not a mail address (or write to: hotline)")
        return value


class EmailIntegration(Integration):
    kind = "email"
    Config = EmailConfig
    roles = frozenset({"tickets", "paging"})
    config: EmailConfig

    def _recipients(self) -> list[str]:
        to = self.config.to
        if isinstance(to, list):
            return to
        contacts = getattr(self.env.contacts, to)
        addresses = [c.email for c in contacts if c.email]
        if not addresses:
            raise PermanentError(f"email to {to}: no contact in contacts.{to} has an email address")
        return addresses

    def _smtp(self) -> SmtpSettings:
        settings = self.config.smtp or self.env.smtp
        if settings is None:
            raise PermanentError(
                "email: no smtp: relay configured (top-level smtp: or on the integration)"
            )
        return settings

    def _send(
        self,
        subject: str,
        body: str,
        ticket: TicketContent,
        *,
        reply_to: str | None = None,
        message_id: str | None = None,
    ) -> str:
        smtp = self._smtp()
        headers = {
            "X-Watcher-Fingerprint": ticket.fingerprint,
            "X-Watcher-Incident": str(ticket.incident_id),
            "X-Watcher-Priority": ticket.priority,
        }
        if ticket.delivery_id:  # the same on a repeat after a crash: receivers can drop it
            headers["X-Watcher-Delivery"] = str(ticket.delivery_id)
        if ticket.priority == "P1":
            headers["X-Priority"] = "1"
            headers["Importance"] = "high"
        if reply_to:
            headers["In-Reply-To"] = reply_to
            headers["References"] = reply_to
        if self.config.cc:
            headers["Cc"] = ", ".join(self.config.cc)
        message = build_message(
            sender=smtp.sender,
            to=[*self._recipients(), *self.config.cc],
            subject=subject,
            text=body,
            headers=headers,
            message_id=message_id,
        )
        send_mail(smtp, message, self.env.http)
        return str(message["Message-ID"])

    # --- tickets: the first mail opens the ticket, replies thread onto it ---------
    def open(self, ticket: TicketContent) -> TicketRef:
        message_id = f"<incident-{ticket.incident_id}.{ticket.fingerprint}@{ticket.site}.watcher>"
        self._send(ticket.subject, ticket.body, ticket, message_id=message_id)
        return TicketRef(id=message_id)

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._send(f"Re: {ticket.subject}", ticket.text or ticket.body, ticket, reply_to=ref.id)

    # --- paging -------------------------------------------------------------------
    def page(self, page: PageContent) -> str | None:
        subject = (
            page.subject
            if self.config.emergency_tag in page.subject
            else f"{self.config.emergency_tag} {page.subject}"
        )
        return self._send(subject, page.body, page)  # the body starts with this action's note

    def page_resolve(self, page: PageContent) -> None:
        self._send(f"[Resolved] {page.subject}", page.text or "Recovered.", page)
