"""``opsgenie``: pages through Opsgenie's Alert API v2; the alias is the fingerprint.

A repage of an open alert is deduplicated by Opsgenie (same alias); acknowledge and
close address the alert by alias. Opsgenie answers 202 and processes requests
asynchronously, so each request's status is then asked for (a few times within about
two seconds): an alert Opsgenie refused to create is a permanent delivery failure,
surfaced like any other, not a page that silently never rang.

    - opsgenie:
        api_key: ${OPSGENIE_KEY}        # the key of an API integration
        url: https://api.eu.opsgenie.com  # for EU accounts; default api.opsgenie.com
        responders: [{type: team, name: Ops}]
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

import requests
from pydantic import field_validator

from integrations.base import Integration, PageContent, PermanentError
from integrations.rest import HttpConfig, call, mapped_priority, session_for
from watcher.core.secret import Secret

__all__ = ["OpsgenieConfig", "OpsgenieIntegration"]

DEFAULT_PRIORITIES: dict[str, str | int] = {"P1": "P1", "P2": "P2", "P3": "P3", "P4": "P4"}
MESSAGE_MAX = 130
DESCRIPTION_MAX = 15000
# Waits before each status request: Opsgenie usually processes a request within a second.
CONFIRM_WAITS = (0.2, 0.4, 0.6, 0.8)

log = logging.getLogger("watcher.integrations.opsgenie")


class OpsgenieConfig(HttpConfig):
    api_key: Secret
    url: str = "https://api.opsgenie.com"
    priorities: dict[str, str] = {}
    responders: list[dict[str, str]] = []
    tags: list[str] = ["watcher"]

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, value: dict[str, str]) -> dict[str, str]:
        for name, level in value.items():
            if level not in ("P1", "P2", "P3", "P4", "P5"):
                raise ValueError(f"{name}: {level!r} is not an Opsgenie priority (P1 to P5)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an https:// URL, e.g. https://api.eu.opsgenie.com")
        return value.rstrip("/")


class OpsgenieIntegration(Integration):
    kind = "opsgenie"
    Config = OpsgenieConfig
    roles = frozenset({"paging"})
    config: OpsgenieConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)
        self._session.headers["Authorization"] = f"GenieKey {self.config.api_key.reveal()}"

    def _post(
        self, path: str, what: str, body: dict[str, Any], *, must_apply: bool = False
    ) -> None:
        label = f"Opsgenie {self.name}: {what}"
        response = call(
            self._session, "POST", f"{self.config.url}/v2/alerts{path}", label, json=body
        )
        try:
            request_id = response.json().get("requestId")
        except (ValueError, AttributeError):
            request_id = None
        if isinstance(request_id, str) and request_id:
            self._confirm(request_id, label, must_apply)

    def _confirm(self, request_id: str, label: str, must_apply: bool) -> None:
        """Asks how Opsgenie applied an accepted request. A refusal of what must apply (an
        alert's creation) raises; other refusals (closing an alert closed by hand) are
        logged. Not knowing within the waits is not a failure: the request was accepted."""
        url = f"{self.config.url}/v2/alerts/requests/{urllib.parse.quote(request_id, safe='')}"
        for wait in CONFIRM_WAITS:
            time.sleep(wait)
            try:
                response = self._session.get(url)
            except requests.RequestException as exc:
                log.info("%s: cannot ask for its status (%s)", label, type(exc).__name__)
                return
            if response.status_code == 404:  # "might not be processed, yet"
                continue
            if response.status_code != 200:
                log.info("%s: its status answered HTTP %d", label, response.status_code)
                return
            try:
                data = response.json().get("data") or {}
            except (ValueError, AttributeError):
                return
            if data.get("isSuccess") is False:
                status = " ".join(str(data.get("status") or "no reason given").split())[:200]
                if must_apply:
                    raise PermanentError(f"{label}: accepted, then refused by Opsgenie: {status}")
                log.warning("%s: accepted, then not applied by Opsgenie: %s", label, status)
            return
        log.info("%s: accepted; not processed by Opsgenie within %.0f s", label, sum(CONFIRM_WAITS))

    def _by_alias(self, page: PageContent, verb: str) -> str:
        alias = urllib.parse.quote(page.fingerprint, safe="")
        return f"/{alias}/{verb}?identifierType=alias"

    def page(self, page: PageContent) -> str | None:
        message = " ".join(page.subject.split())
        body: dict[str, Any] = {
            "message": message
            if len(message) <= MESSAGE_MAX
            else message[: MESSAGE_MAX - 3] + "...",
            "alias": page.fingerprint,
            "description": page.body[:DESCRIPTION_MAX],
            "priority": mapped_priority(self.config.priorities, DEFAULT_PRIORITIES, page.priority),
            "entity": page.target,
            "source": f"watcher ({page.site})",
            "tags": [*self.config.tags, page.priority, page.site],
            "details": {
                "site": page.site,
                "target": page.target,
                "fingerprint": page.fingerprint,
                "incident": str(page.incident_id),
                **{f"label.{k}": v for k, v in page.labels.items()},
            },
        }
        if page.text:
            body["note"] = page.text[:25000]
        if self.config.responders:
            body["responders"] = self.config.responders
        self._post("", "create alert", body, must_apply=True)
        return page.fingerprint

    def page_acknowledge(self, page: PageContent) -> None:
        self._post(
            self._by_alias(page, "acknowledge"),
            "acknowledge alert",
            {"source": "watcher", "user": "watcher", "note": page.text or "Acknowledged"},
        )

    def page_resolve(self, page: PageContent) -> None:
        self._post(
            self._by_alias(page, "close"),
            "close alert",
            {"source": "watcher", "user": "watcher", "note": page.text or "Recovered"},
        )

    def close(self) -> None:
        self._session.close()
