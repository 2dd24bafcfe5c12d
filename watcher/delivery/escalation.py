"""The escalation chain's notifier: mails the contact of the step an incident reached.

The tracker decides when a step is due (``tracker.tick``) and queues, in the same
transaction, a ticket comment and an ``escalate`` action carrying the step number. The
outbox delivers that action here, once: the step's contact from ``contacts.escalation``
gets a mail through the top-level ``smtp:`` relay, ``[Escalation]`` in its subject and
the whole ticket body below the reason. A step whose contact has no email address is
recorded on the ticket and in the timeline only.
"""

from __future__ import annotations

import logging

from integrations.base import (
    Integration,
    IntegrationConfig,
    IntegrationEnv,
    PageContent,
    PermanentError,
)
from watcher.delivery.mail import build_message, send_mail

__all__ = ["ESCALATION_ROUTE", "EscalationMailer"]

log = logging.getLogger("watcher.escalation")

ESCALATION_ROUTE = "escalation/escalation"


class EscalationMailer(Integration):
    """Built in, not configured under ``integrations:``; present when an escalation
    contact has an email address."""

    kind = "escalation"
    roles = frozenset({"escalation"})

    def __init__(self, env: IntegrationEnv) -> None:
        super().__init__(IntegrationConfig(name="escalation"), env, "escalation")

    def _recipients(self, page: PageContent) -> list[str]:
        contacts = self.env.contacts.escalation
        if page.action == "test" or page.escalation <= 0:
            return [c.email for c in contacts if c.email]
        if page.escalation > len(contacts):
            log.warning(
                "incident %s reached escalation step %d; only %d are configured",
                page.incident_id,
                page.escalation,
                len(contacts),
            )
            return []
        contact = contacts[page.escalation - 1]
        if not contact.email:
            log.info(
                "escalation step %d (%s) of incident %s has no email address: recorded on the ticket only",
                page.escalation,
                contact.label,
                page.incident_id,
            )
            return []
        return [contact.email]

    def page(self, page: PageContent) -> str | None:
        recipients = self._recipients(page)
        if not recipients:
            return None
        smtp = self.env.smtp
        if smtp is None:
            raise PermanentError(
                "escalation mail: no smtp: relay configured; add a top-level smtp: section"
            )
        headers = {
            "X-Watcher-Fingerprint": page.fingerprint,
            "X-Watcher-Incident": str(page.incident_id),
            "X-Watcher-Priority": page.priority,
            "X-Watcher-Escalation-Step": str(page.escalation),
        }
        if page.priority == "P1":
            headers["X-Priority"] = "1"
            headers["Importance"] = "high"
        tag = "[TEST]" if page.action == "test" else "[Escalation]"
        subject = page.subject if page.subject.startswith(tag) else f"{tag} {page.subject}"
        message = build_message(
            sender=smtp.sender, to=recipients, subject=subject, text=page.body, headers=headers
        )
        send_mail(smtp, message, self.env.http)
        return str(message["Message-ID"])
