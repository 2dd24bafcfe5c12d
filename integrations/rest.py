"""What the HTTP helpdesks and pagers share: base config, priority maps, one request helper.

Not an integration itself. Every call goes through ``call()``, which turns network
failures into ``TransientError`` and HTTP answers into the right ``DeliveryError``
(``error_for_status``: 401/403/400 permanent, 408/429/5xx transient with Retry-After).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import requests
from pydantic import Field, field_validator

from integrations.base import (
    Integration,
    IntegrationConfig,
    PermanentError,
    TicketContent,
    TicketRef,
    TicketState,
    TicketStatus,
    TransientError,
    error_for_status,
)
from watcher.core.secret import protect_url
from watcher.core.types import Duration
from watcher.delivery.httpclient import new_session

__all__ = [
    "HelpdeskConfig",
    "HttpConfig",
    "NumberedHelpdeskConfig",
    "RestHelpdesk",
    "call",
    "json_of",
    "mapped_priority",
    "session_for",
]

_PRIORITY = re.compile(r"^P[1-9]$")


class HttpConfig(IntegrationConfig):
    """Options of every integration that speaks HTTP."""

    timeout: Duration = timedelta(seconds=10)
    tls_verify: bool = True
    ca_file: str | None = None

    @property
    def verify(self) -> bool | str:
        if not self.tls_verify:
            return False
        return self.ca_file or True


class HelpdeskConfig(HttpConfig):
    """A ticketing system: where it lives, how watcher's priorities map onto its own, and
    how often watcher asks whether someone took a ticket (``poll_every: 0`` turns that off)."""

    url: str
    priorities: dict[str, str | int] = Field(default_factory=dict)
    poll_every: Duration = timedelta(minutes=2)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return protect_url(value).rstrip("/")

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for name in value:
            if not _PRIORITY.match(name):
                raise ValueError(f"{name!r} is not a watcher priority; map P1, P2, P3 and P4")
        return value


class NumberedHelpdeskConfig(HelpdeskConfig):
    """A helpdesk whose priorities are ids: each one a number, checked at load."""

    @field_validator("priorities")
    @classmethod
    def _numbered(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for name, number in value.items():
            if not str(number).isdigit():
                raise ValueError(
                    f"{name}: {number!r} is not a number (this helpdesk's priority id)"
                )
        return {name: int(number) for name, number in value.items()}


def mapped_priority(
    priorities: Mapping[str, str | int], defaults: Mapping[str, str | int], priority: str
) -> str | int:
    """The helpdesk's value for a watcher priority: the config's map, then the defaults,
    then the nearest less urgent priority that has a value (P5 maps like P4)."""
    merged = {**defaults, **priorities}
    if priority in merged:
        return merged[priority]
    rank = int(priority[1:])
    known = sorted((int(p[1:]), v) for p, v in merged.items())
    below = [v for r, v in known if r <= rank]
    return below[-1] if below else known[0][1]


def session_for(config: HttpConfig, env: Any) -> requests.Session:
    return new_session(
        timeout=config.timeout.total_seconds(), verify=config.verify, clients=env.http
    )


def call(
    session: requests.Session, method: str, url: str, what: str, **kwargs: Any
) -> requests.Response:
    """One HTTP request; raises TransientError or PermanentError when it did not succeed."""
    try:
        response = session.request(method, url, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise PermanentError(
            f"{what}: TLS failed ({_reason(exc)}); set ca_file or fix the certificate"
        ) from None
    except requests.exceptions.InvalidURL as exc:
        raise PermanentError(f"{what}: invalid URL ({exc})") from None
    except requests.RequestException as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {_reason(exc)}") from None
    error_for_status(response, what)
    return response


def json_of(response: requests.Response, what: str) -> Any:
    """The JSON body of a successful answer; a body that is not JSON is the service's fault."""
    try:
        return response.json()
    except ValueError:
        body = " ".join((response.text or "").split())[:200]
        raise TransientError(f"{what}: expected JSON, got {body!r}") from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    # urllib3 nests the useful part deep inside; keep the end, where the reason is.
    return text[-200:] if len(text) > 200 else text


class RestHelpdesk(Integration):
    """A helpdesk behind one JSON REST API, in the shape every such integration shares.

    A subclass says how it authenticates and where its API lives (``api_path``), and
    writes ``_note`` (an internal note), ``_update`` (change fields), ``open``, ``find``
    and ``status`` for its API; the fields a priority, a resolve and a reopen set come
    from ``_priority_fields`` and ``_state_fields``. Comment, priority, resolve and reopen
    are then the same everywhere: a resolve notes before it closes (some helpdesks refuse
    notes on closed tickets), a reopen after it reopens.
    """

    vendor: ClassVar[str]
    api_path: ClassVar[str] = ""
    status_field: ClassVar[str] = "status"
    default_priorities: ClassVar[Mapping[str, str | int]] = {}
    roles = frozenset({"tickets"})
    config: HelpdeskConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        self._session.headers["Accept"] = "application/json"
        self._authenticate(self._session)
        self._api = self.config.url + self.api_path

    def _authenticate(self, session: requests.Session) -> None:
        raise NotImplementedError

    def _what(self, what: str) -> str:
        return f"{self.vendor} {self.name}: {what}"

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """The JSON answer of one API call (None when empty), or a DeliveryError."""
        response = call(self._session, method, self._api + path, self._what(what), **kwargs)
        return json_of(response, self._what(what)) if response.content.strip() else None

    def _mapped(self, ticket: TicketContent) -> str | int:
        return mapped_priority(self.config.priorities, self.default_priorities, ticket.priority)

    def _ref(self, ticket_id: Any, answer: Any) -> TicketRef:
        """The reference of a ticket just created; an answer without its id is refused."""
        if ticket_id in (None, ""):
            raise PermanentError(
                self._what(f"create answered without a ticket id: {answer!r}")[:300]
            )
        return TicketRef(id=str(ticket_id), url=self._web_url(str(ticket_id)))

    def _web_url(self, ticket_id: str) -> str | None:
        return None

    @staticmethod
    def _status(resolved: bool, owner: Any) -> TicketStatus:
        """A ticket is taken (acknowledged) once an engineer is assigned to it; these
        helpdesks have no state that says "someone looked" without one."""
        owner = str(owner) if owner not in (None, "", 0) else None
        state: TicketState = "resolved" if resolved else "open" if owner else "new"
        return TicketStatus(state=state, taken=owner is not None, owner=owner)

    # ------------------------------------------------------------- the mapping
    def _note(self, ref: TicketRef, text: str) -> None:
        raise NotImplementedError

    def _update(self, ref: TicketRef, fields: dict[str, Any], what: str) -> None:
        raise NotImplementedError

    def _priority_fields(self, ticket: TicketContent) -> dict[str, Any]:
        raise NotImplementedError

    def _state_fields(self, resolved: bool) -> dict[str, Any]:
        """The fields that resolve (True) or reopen (False) a ticket: by default the
        config's ``resolved_status`` or ``reopen_status``, set in ``status_field``."""
        name = "resolved_status" if resolved else "reopen_status"
        return {self.status_field: getattr(self.config, name)}

    def _change(
        self, ref: TicketRef, fields: dict[str, Any], note: str, what: str, *, note_first: bool
    ) -> None:
        """Sets ``fields`` and adds ``note``; helpdesks that take both in one request
        override this."""
        if note and note_first:
            self._note(ref, note)
        if fields:
            self._update(ref, fields, what)
        if note and not note_first:
            self._note(ref, note)

    # ------------------------------------------------------------ the contract
    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._change(ref, {}, ticket.text or ticket.body, "add note", note_first=True)

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        fields = self._priority_fields(ticket)
        self._change(ref, fields, ticket.text, "set priority", note_first=False)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._change(ref, self._state_fields(True), ticket.text, "resolve", note_first=True)

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        fields = {**self._state_fields(False), **self._priority_fields(ticket)}
        self._change(ref, fields, ticket.text, "reopen", note_first=False)

    def close(self) -> None:
        self._session.close()
