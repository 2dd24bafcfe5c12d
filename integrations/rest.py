"""What the HTTP helpdesks and pagers share: base config, priority maps, one request helper.

Not an integration itself. Every call goes through ``call()``, which turns network
failures into ``TransientError`` and HTTP answers into the right ``DeliveryError``
(``error_for_status``: 401/403/400 permanent, 408/429/5xx transient with Retry-After).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

import requests
from pydantic import Field, PlainValidator, field_validator

from integrations.base import IntegrationConfig, PermanentError, TransientError, error_for_status
from watcher.durations import parse_duration
from watcher.httpclient import new_session
from watcher.secret import protect_url

__all__ = [
    "HelpdeskConfig",
    "HttpConfig",
    "call",
    "json_of",
    "mapped_priority",
    "session_for",
]

Duration = Annotated[timedelta, PlainValidator(parse_duration)]
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
