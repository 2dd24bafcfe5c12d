"""The integration contract: ticketers and pagers, and errors that say whether to retry.

Every action toward a helpdesk or pager goes through the outbox, which calls these
methods and retries transient errors with backoff. An integration is a short transport:
it maps watcher's content onto one API and raises ``TransientError`` (retry can help:
timeout, 5xx, 429, connection refused) or ``PermanentError`` (it cannot: 401, 400, a
configuration the service rejects), never anything else on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from watcher.core.secret import redact

if TYPE_CHECKING:
    from watcher.config.models import Contacts, SmtpSettings, WatcherConfig
    from watcher.delivery.httpclient import HttpClients

__all__ = [
    "DeliveryError",
    "Integration",
    "IntegrationConfig",
    "IntegrationEnv",
    "PageContent",
    "PermanentError",
    "Role",
    "TicketContent",
    "TicketRef",
    "TicketStatus",
    "TransientError",
    "error_for_status",
]

Role = Literal["tickets", "paging", "escalation"]
TicketState = Literal["new", "open", "resolved", "other"]


class DeliveryError(Exception):
    retry: ClassVar[bool] = False

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status  # the HTTP status the service answered, when it answered


class TransientError(DeliveryError):
    """Trying again later can help: the service is down, slow, or asked us to wait."""

    retry = True


class PermanentError(DeliveryError):
    """Trying again will not help until someone changes the config or the service."""

    retry = False


def error_for_status(response: Any, what: str) -> None:
    """Raises the right DeliveryError for a failed ``requests`` response, else nothing."""
    status = response.status_code
    if status < 400:
        return
    retry_after = _retry_after(response.headers.get("Retry-After"))
    # masked before it is cut: a cut through a secret would leave a piece no mask matches
    body = " ".join(redact(response.text or "").split())[:300]
    message = f"{what}: HTTP {status} {body}".strip()
    if status in (408, 425, 429) or status >= 500:
        raise TransientError(message, retry_after=retry_after, status=status)
    raise PermanentError(message, status=status)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class TicketRef:
    """Where a ticket lives in the helpdesk."""

    id: str
    url: str | None = None


@dataclass(frozen=True)
class TicketStatus:
    """What the helpdesk says of a ticket; ``taken`` means an engineer has it."""

    state: TicketState
    taken: bool = False
    owner: str | None = None


@dataclass(frozen=True)
class TicketContent:
    """A snapshot of an incident, rendered when the action was queued."""

    incident_id: int
    fingerprint: str
    site: str
    target: str
    host: str | None
    priority: str
    priority_name: str
    summary: str
    subject: str
    body: str
    state: str
    labels: Mapping[str, str] = field(default_factory=dict)
    runbook: str | None = None
    url: str | None = None
    text: str = ""  # the comment, recovery note or escalation note for this action
    action: str = ""  # what this delivery does: open, comment, resolve, page, ...
    delivery_id: int = 0  # the outbox row, unique per delivery: receivers can dedup on it
    escalation: int = 0  # escalation steps notified so far (an ``escalate`` action: its step)
    check: str = ""  # the check that found it: probe and item (``disk /var``)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = dict(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TicketContent:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


PageContent = TicketContent


class IntegrationConfig(BaseModel):
    """Options every integration accepts beside its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str | None = None


@dataclass
class IntegrationEnv:
    """What the pipeline lends an integration: the site's name, its mail relay and contact
    lists, and shared HTTP clients; no integration needs, or sees, the rest of the config."""

    site: str
    smtp: SmtpSettings | None
    contacts: Contacts
    http: HttpClients

    @classmethod
    def of(cls, config: WatcherConfig, http: HttpClients) -> IntegrationEnv:
        """The parts of a loaded config an integration may read."""
        return cls(site=config.site, smtp=config.smtp, contacts=config.contacts, http=http)


class Integration:
    """A helpdesk (``tickets`` role), a pager (``paging`` role), or both.

    Ticket methods take the external reference returned by ``open``; pager methods
    are keyed by the incident fingerprint, which every paging service dedups on.
    """

    kind: ClassVar[str]
    Config: ClassVar[type[IntegrationConfig]] = IntegrationConfig
    roles: ClassVar[frozenset[Role]] = frozenset()

    def __init__(self, config: IntegrationConfig, env: IntegrationEnv, role: Role) -> None:
        self.config = config
        self.env = env
        self.role = role
        self.name = config.name or self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.role})>"

    # --- tickets -----------------------------------------------------------------
    def open(self, ticket: TicketContent) -> TicketRef:
        raise PermanentError(f"{self.kind} cannot open tickets")

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        raise PermanentError(f"{self.kind} cannot comment on tickets")

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self.comment(ref, ticket)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        self.comment(ref, ticket)

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        self.comment(ref, ticket)

    def find(self, fingerprint: str) -> TicketRef | None:
        """An open ticket carrying this fingerprint, or None (also when search is impossible)."""
        return None

    @property
    def searchable(self) -> bool:
        """True if ``find`` asks the helpdesk: a ticket opened by a watcher killed before it
        recorded it is adopted, not opened again."""
        return type(self).find is not Integration.find

    def status(self, ref: TicketRef) -> TicketStatus | None:
        """The ticket's state in the helpdesk, or None when it cannot be read."""
        return None

    # --- paging ------------------------------------------------------------------
    def page(self, page: PageContent) -> str | None:
        raise PermanentError(f"{self.kind} cannot page")

    def page_acknowledge(self, page: PageContent) -> None:
        """Tells the pager someone took it; most pagers need nothing."""

    def page_resolve(self, page: PageContent) -> None:
        """Tells the pager the incident is over; mail-like pagers send nothing."""

    def close(self) -> None:
        pass
