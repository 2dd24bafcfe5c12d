"""``alertmanager``: watcher's incidents as alerts in Prometheus Alertmanager (``/api/v2/alerts``).

    integrations:
      tickets:
        - alertmanager: {url: "http://127.0.0.1:9093", ends_after: 15m}

Each incident is one alert with the labels ``alertname="WatcherIncident"``, ``site``,
``target``, ``check``, ``priority``, ``severity`` (P1 critical, P2 error, P3 warning, P4
info) and ``watcher_fingerprint``, and the annotations ``summary``, ``description``,
``runbook_url`` and ``watcher_url``. An alert posted with ``endsAt`` resolves itself
then, so every live alert is posted again each ``repost_every`` (a third of
``ends_after`` unless set) with ``endsAt`` moved on; recovery posts it with
``endsAt`` = now. After a restart the live alerts are read back from Alertmanager (by
``site`` and ``watcher_fingerprint``) and kept posted. A priority change resolves the
alert of the old priority (labels are an alert's identity in Alertmanager).

watcher refuses alerts carrying ``watcher_fingerprint`` at its own ``/api/alertmanager``,
so an Alertmanager that routes everything back to watcher makes no loop.
"""

from __future__ import annotations

import logging
import threading
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
from watcher.core.types import Duration, OptionalDuration
from watcher.delivery.httpclient import new_session

__all__ = ["AlertmanagerIntegration", "AlertmanagerIntegrationConfig", "FINGERPRINT_LABEL"]

log = logging.getLogger("watcher.integrations.alertmanager")

FINGERPRINT_LABEL = "watcher_fingerprint"
ALERTNAME = "WatcherIncident"
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}


class AlertmanagerIntegrationConfig(IntegrationConfig):
    url: str
    token: Secret | None = None
    ends_after: Duration = timedelta(minutes=15)
    repost_every: OptionalDuration = None
    labels: dict[str, str] = {}
    timeout: Duration = timedelta(seconds=10)
    tls_verify: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                "expected Alertmanager's http:// or https:// URL, e.g. http://127.0.0.1:9093"
            )
        return protect_url(value.rstrip("/"))

    @field_validator("ends_after")
    @classmethod
    def _ends_after(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=3):
            raise ValueError(
                "ends_after must be at least 3s (alerts are re-posted every third of it)"
            )
        return value

    @property
    def every(self) -> float:
        return (self.repost_every or self.ends_after / 3).total_seconds()


def alert_labels(content: TicketContent, extra: dict[str, str]) -> dict[str, str]:
    labels = {
        **extra,
        "alertname": ALERTNAME,
        "site": content.site,
        "target": content.target,
        "priority": content.priority,
        "severity": SEVERITY.get(content.priority, "info"),
        FINGERPRINT_LABEL: content.fingerprint,
    }
    if content.check:
        labels["check"] = content.check
    return labels


def alert_annotations(content: TicketContent) -> dict[str, str]:
    annotations = {"summary": content.summary, "description": content.subject}
    if content.runbook:
        annotations["runbook_url"] = content.runbook
    if content.url:
        annotations["watcher_url"] = content.url
    return annotations


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AlertmanagerIntegration(Integration):
    kind = "alertmanager"
    Config = AlertmanagerIntegrationConfig
    roles = frozenset({"tickets", "paging"})
    config: AlertmanagerIntegrationConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = new_session(
            timeout=self.config.timeout.total_seconds(),
            verify=self.config.tls_verify,
            clients=self.env.http,
        )
        if self.config.token:
            self._session.headers["Authorization"] = f"Bearer {self.config.token.reveal()}"
        self._lock = threading.Lock()
        # fingerprint -> (labels, annotations, startsAt): what is kept posted
        self._live: dict[str, tuple[dict[str, str], dict[str, str], str]] = {}
        self._stop = threading.Event()
        self._adopted = False
        self._thread = threading.Thread(
            target=self._loop, name=f"alertmanager-{self.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ transport

    def _send(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        try:
            with self._lock:
                response = self._session.post(f"{self.config.url}/api/v2/alerts", json=alerts)
        except requests.RequestException as exc:
            raise TransientError(f"alertmanager {self.name}: {type(exc).__name__}: {exc}") from None
        error_for_status(response, f"alertmanager {self.name}")

    def _alert(
        self, labels: dict[str, str], annotations: dict[str, str], starts: str, ends: datetime
    ) -> dict[str, Any]:
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts,
            "endsAt": _iso(ends),
        }
        if annotations.get("watcher_url"):
            alert["generatorURL"] = annotations["watcher_url"]
        return alert

    def _fire(self, content: TicketContent) -> TicketRef:
        now = datetime.now(UTC)
        labels = alert_labels(content, self.config.labels)
        annotations = alert_annotations(content)
        previous = self._live.get(content.fingerprint)
        starts = previous[2] if previous else _iso(now)
        alerts = [self._alert(labels, annotations, starts, now + self.config.ends_after)]
        if previous and previous[0] != labels:
            alerts.append(self._alert(previous[0], previous[1], previous[2], now))
        self._send(alerts)
        self._live[content.fingerprint] = (labels, annotations, starts)
        return TicketRef(id=content.fingerprint, url=f"{self.config.url}/#/alerts")

    def _end(self, content: TicketContent) -> None:
        now = datetime.now(UTC)
        previous = self._live.get(content.fingerprint)
        labels = previous[0] if previous else alert_labels(content, self.config.labels)
        annotations = previous[1] if previous else alert_annotations(content)
        starts = previous[2] if previous else _iso(now - timedelta(seconds=1))
        self._send([self._alert(labels, annotations, starts, now)])
        self._live.pop(content.fingerprint, None)

    # ------------------------------------------------------------------ keeping alive

    def _loop(self) -> None:
        every = self.config.every
        # A short first wait: a copy built only to be closed again (a reload, a test
        # command) asks Alertmanager nothing.
        wait = min(1.0, every)
        while not self._stop.wait(wait):
            wait = every
            try:
                if not self._adopted:
                    self._adopt()
                self.repost()
            except Exception as exc:  # the next round tries again; deliveries go on meanwhile
                log.warning("alertmanager %s: could not re-post alerts: %s", self.name, exc)
                wait = min(every, 5.0)

    def _adopt(self) -> None:
        """Reads back this site's live alerts, posted before a restart, to keep them posted."""
        site = self.env.site
        try:
            with self._lock:
                response = self._session.get(
                    f"{self.config.url}/api/v2/alerts",
                    params={
                        "filter": [f'site="{site}"', f'alertname="{ALERTNAME}"'],
                        "silenced": "true",
                        "inhibited": "true",
                    },
                )
        except requests.RequestException as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        error_for_status(response, f"alertmanager {self.name}")
        for alert in response.json() or []:
            labels = dict(alert.get("labels") or {})
            fingerprint = labels.get(FINGERPRINT_LABEL)
            state = (alert.get("status") or {}).get("state")
            if fingerprint and state != "unprocessed" and fingerprint not in self._live:
                self._live[fingerprint] = (
                    labels,
                    dict(alert.get("annotations") or {}),
                    alert.get("startsAt") or _iso(datetime.now(UTC)),
                )
        self._adopted = True

    def repost(self) -> int:
        """Posts every live alert again with its ``endsAt`` moved on; how many."""
        ends = datetime.now(UTC) + self.config.ends_after
        live = list(self._live.values())
        self._send([self._alert(labels, notes, starts, ends) for labels, notes, starts in live])
        return len(live)

    # ------------------------------------------------------------------ contract

    def open(self, ticket: TicketContent) -> TicketRef:
        return self._fire(ticket)

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._fire(ticket)

    def set_priority(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._fire(ticket)

    def reopen(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._fire(ticket)

    def resolve(self, ref: TicketRef, ticket: TicketContent) -> None:
        self._end(ticket)

    def page(self, page: PageContent) -> str | None:
        self._fire(page)
        return page.fingerprint

    def page_resolve(self, page: PageContent) -> None:
        self._end(page)

    def close(self) -> None:
        self._stop.set()
        self._session.close()
