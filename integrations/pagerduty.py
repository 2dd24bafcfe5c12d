"""``pagerduty``: pages through PagerDuty's Events API v2 (trigger, acknowledge, resolve).

``dedup_key`` is the incident's fingerprint, so a repage of an open alert is folded
into it by PagerDuty, and the acknowledge and resolve that follow find it.

    - pagerduty:
        routing_key: ${PD_ROUTING_KEY}   # the Events API v2 integration key of a service
        severities: {P1: critical, P2: error, P3: warning, P4: info}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import field_validator

from integrations.base import Integration, PageContent, PermanentError
from integrations.rest import HttpConfig, call, json_of, mapped_priority, session_for
from watcher.core.secret import Secret

__all__ = ["PagerDutyConfig", "PagerDutyIntegration"]

DEFAULT_SEVERITIES: dict[str, str | int] = {
    "P1": "critical",
    "P2": "error",
    "P3": "warning",
    "P4": "info",
}
SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_MAX = 1024


class PagerDutyConfig(HttpConfig):
    routing_key: Secret
    url: str = "https://events.pagerduty.com/v2/enqueue"
    severities: dict[str, Literal["critical", "error", "warning", "info"]] = {}
    component: str | None = None
    group: str | None = None

    @field_validator("severities")
    @classmethod
    def _severities(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not (len(name) == 2 and name[0] == "P" and name[1].isdigit()):
                raise ValueError(f"{name!r} is not a watcher priority; map P1, P2, P3 and P4")
        return value


class PagerDutyIntegration(Integration):
    kind = "pagerduty"
    Config = PagerDutyConfig
    roles = frozenset({"paging"})
    config: PagerDutyConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session_for(self.config, self.env)

    def _send(self, action: str, page: PageContent, payload: dict[str, Any] | None = None) -> str:
        event: dict[str, Any] = {
            "routing_key": self.config.routing_key.reveal(),
            "event_action": action,
            "dedup_key": page.fingerprint,
        }
        if payload is not None:
            event["payload"] = payload
            event["client"] = f"watcher ({page.site})"
            if page.url:
                event["client_url"] = page.url
            if page.runbook:
                event["links"] = [{"href": page.runbook, "text": "Runbook"}]
        what = f"PagerDuty {self.name}: {action}"
        answer = json_of(call(self._session, "POST", self.config.url, what, json=event), what)
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise PermanentError(f"{what}: {answer!r}"[:300])
        return str(answer.get("dedup_key") or page.fingerprint)

    def page(self, page: PageContent) -> str | None:
        severity = str(mapped_priority(self.config.severities, DEFAULT_SEVERITIES, page.priority))
        summary = page.subject if not page.text else f"{page.subject} ({page.text.splitlines()[0]})"
        payload: dict[str, Any] = {
            "summary": summary[:SUMMARY_MAX],
            "source": page.host or page.target,
            "severity": severity if severity in SEVERITIES else "critical",
            "timestamp": datetime.now(UTC).isoformat(),
            "group": self.config.group or page.site,
            "class": page.priority,
            "custom_details": {
                "site": page.site,
                "target": page.target,
                "priority": f"{page.priority} {page.priority_name}",
                "incident": page.incident_id,
                "fingerprint": page.fingerprint,
                "labels": dict(page.labels),
                "details": page.body[:8000],
            },
        }
        if self.config.component:
            payload["component"] = self.config.component
        return self._send("trigger", page, payload)

    def page_acknowledge(self, page: PageContent) -> None:
        self._send("acknowledge", page)

    def page_resolve(self, page: PageContent) -> None:
        self._send("resolve", page)

    def close(self) -> None:
        self._session.close()
