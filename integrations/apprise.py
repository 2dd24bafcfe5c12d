"""``apprise``: pages to the long tail (Slack, Teams, Telegram, ntfy, Matrix, ...) through
apprise URLs (https://github.com/caronc/apprise/wiki). Needs the ``apprise`` extra.

    - apprise:
        urls:
          - ${SLACK_URL}        # slack://TokenA/TokenB/TokenC/#ops
          - ntfy://ntfy.sh/acme-hotline

URLs carry tokens, so they are secrets: masked in every printable form, and their
token-like parts (user, password, path and query pieces) are scrubbed from log lines
too, since apprise logs URLs in its own words. Each URL is notified on its own; a
retried delivery skips the services that already took it. Apprise does not say
whether a failure is lasting, so every failure counts as one a retry can help.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from typing import Any

from pydantic import Field, field_validator

from integrations.base import (
    Integration,
    IntegrationConfig,
    PageContent,
    PermanentError,
    TransientError,
)
from watcher.core.secret import Secret

__all__ = ["AppriseConfig", "AppriseIntegration"]

log = logging.getLogger("watcher.integrations.apprise")

_TOKENISH = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[^\s]{8,}$")


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        raise PermanentError("apprise is not installed: pip install 'watcher[apprise]'") from None
    logging.getLogger("apprise").setLevel(logging.WARNING)  # its debug lines spell out whole URLs
    return apprise


def _protect(url: str) -> None:
    """Registers the token-like parts of an apprise URL as secrets, for log redaction."""
    parts = urllib.parse.urlsplit(url)
    pieces = [parts.username or "", parts.password or "", parts.hostname or ""]
    pieces += [p for p in parts.path.split("/") if p]
    pieces += [v for _, v in urllib.parse.parse_qsl(parts.query)]
    for piece in pieces:
        piece = urllib.parse.unquote(piece)
        if piece and (piece in (parts.password or "",) or _TOKENISH.match(piece)):
            Secret(piece)


class AppriseConfig(IntegrationConfig):
    urls: list[Secret] = Field(min_length=1)
    notify_resolve: bool = True
    notify_acknowledge: bool = False

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[Secret]) -> list[Secret]:
        module = _apprise_or_none()
        for index, url in enumerate(value):
            _protect(url.reveal())
            if (
                module is not None
                and module.Apprise.instantiate(url.reveal(), suppress_exceptions=True) is None
            ):
                raise ValueError(
                    f"urls[{index}] is not a URL apprise understands (the URL is not shown: it is a secret)"
                )
        return value


def _apprise_or_none() -> Any:
    try:
        return _apprise()
    except PermanentError:
        return None  # the integration says so when it is used


class AppriseIntegration(Integration):
    kind = "apprise"
    Config = AppriseConfig
    roles = frozenset({"paging"})
    config: AppriseConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._done: set[tuple[int, str, int]] = set()
        self._lock = threading.Lock()

    def _notify(self, page: PageContent, event: str, title: str, body: str, kind: str) -> None:
        apprise = _apprise()
        failed = []
        for index, url in enumerate(self.config.urls):
            key = (page.delivery_id, event, index)
            with self._lock:
                if page.delivery_id and key in self._done:
                    continue
            service = apprise.Apprise()
            if not service.add(url.reveal()):
                raise PermanentError(
                    f"apprise {self.name}: urls[{index}] is not a URL apprise understands"
                )
            if service.notify(title=title, body=body, notify_type=kind):
                with self._lock:
                    if page.delivery_id:
                        self._done.add(key)
            else:
                failed.append(f"urls[{index}]")
        if failed:
            raise TransientError(
                f"apprise {self.name}: {', '.join(failed)} did not take the notification"
            )

    def page(self, page: PageContent) -> str | None:
        body = (
            f"{page.text}\n\n{page.body}" if page.text and page.text not in page.body else page.body
        )
        self._notify(page, "page", page.subject, body[:4000], "failure")
        return None

    def page_acknowledge(self, page: PageContent) -> None:
        if self.config.notify_acknowledge:
            self._notify(
                page, "ack", f"[Acknowledged] {page.subject}", page.text or "Acknowledged.", "info"
            )

    def page_resolve(self, page: PageContent) -> None:
        if self.config.notify_resolve:
            self._notify(
                page, "resolve", f"[Resolved] {page.subject}", page.text or "Recovered.", "success"
            )
