"""Builders for the tests of hosted services (Jira Cloud, PagerDuty, Opsgenie, Twilio, ...)
that run against ``responses`` replaying their documented payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses

from integrations import integration_class
from integrations.base import Integration, IntegrationEnv, TicketContent
from tests.support.helpers import config_from
from watcher.delivery.httpclient import HttpClients

CONTACTS = """
contacts:
  hotline:
    - {name: L2 on call, phone: "+91 20 3045 8306", email: emergency@support.example}
    - {name: Backup, phone: "+1-646-688-3041"}
"""


def build(
    tmp_path: Path,
    kind: str,
    options: dict[str, Any],
    *,
    role: str = "tickets",
    environ: dict[str, str] | None = None,
) -> Integration:
    """One integration from a real config file (so its Config validates as at load)."""
    text = f"site: acme\nlisten: null\n{CONTACTS}\nintegrations:\n  {role}:\n    - {kind}: {json.dumps(options)}\n"
    config = config_from(tmp_path, text, environ=environ)
    ((_, _, cfg),) = config.model.integrations.entries()
    return integration_class(kind)(cfg, IntegrationEnv.of(config.model, HttpClients()), role)  # type: ignore[arg-type]


def content(**overrides: Any) -> TicketContent:
    values: dict[str, Any] = {
        "incident_id": 7,
        "fingerprint": "w0123456789abcdef01234567",
        "site": "acme",
        "target": "mail1",
        "host": "127.0.0.15",
        "priority": "P2",
        "priority_name": "High",
        "summary": "SMTP port not answering (connection refused)",
        "subject": "[P2][acme] mail1: SMTP port not answering (connection refused)",
        "body": "SMTP port not answering\n\nSite:          acme\nEvidence (probe output)\n  connection refused",
        "state": "open",
        "labels": {"role": "mail"},
        "runbook": "https://wiki.acme.example/smtp",
        "delivery_id": 1,
    }
    values.update(overrides)
    return TicketContent(**values)


def body_of(call: Any) -> Any:
    """The JSON body a ``responses`` call carried."""
    return json.loads(call.request.body)


def form_of(call: Any) -> dict[str, str]:
    from urllib.parse import parse_qsl

    body = call.request.body
    return dict(parse_qsl(body if isinstance(body, str) else body.decode()))


def replies(*answers: tuple[int, Any, dict[str, str] | None]) -> Any:
    """A ``responses`` callback answering in turn (the last answer repeats)."""
    queue = list(answers)

    def callback(request: Any) -> tuple[int, dict[str, str], str]:
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        text = body if isinstance(body, str) else json.dumps(body)
        return status, {"Content-Type": "application/json", **(headers or {})}, text

    return callback


__all__ = ["CONTACTS", "body_of", "build", "content", "form_of", "replies", "responses"]
