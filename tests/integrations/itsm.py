"""What the tests of the ITSM helpdesks (ServiceNow, Jira Service Management, Zendesk,
Freshservice, HaloPSA, ConnectWise, Autotask) share: the calls an integration sent, a
refusal played back, and a whole watcher meeting a refused credential."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from integrations.base import DeliveryError
from tests.integrations.hosted import build, responses
from tests.integrations.site import Site, site_config, unique_site


def sent() -> list[tuple[str, str, Any]]:
    """(method, path with query, body) of every call ``responses`` saw; a JSON body
    decoded, a form body as its fields."""
    calls = []
    for c in responses.calls:
        parts = urllib.parse.urlsplit(c.request.url)
        path = parts.path + (f"?{urllib.parse.unquote_plus(parts.query)}" if parts.query else "")
        body: Any = c.request.body
        if body and "json" in c.request.headers.get("Content-Type", ""):
            body = json.loads(body)
        elif body:
            body = dict(urllib.parse.parse_qsl(body if isinstance(body, str) else body.decode()))
        calls.append((c.request.method, path, body or None))
    return calls


Refusal = tuple[int, Any, "dict[str, str] | None", type]  # status, body, headers, error


def refusal(method: str, url: Any, case: Refusal, action: Callable[[], object]) -> DeliveryError:
    """What ``action`` raises when the service answers as ``case`` says; checked to be
    the error the contract names, carrying the status, the service's own words and any
    Retry-After."""
    status, body, headers, error = case
    text = body if isinstance(body, str) else json.dumps(body)
    responses.add(
        responses.Response(
            method, url, status=status, body=text, headers=headers, content_type="application/json"
        )
    )
    with pytest.raises(DeliveryError) as caught:
        action()
    raised = caught.value
    assert type(raised) is error and raised.status == status
    assert f"HTTP {status}" in str(raised) and " ".join(text.split())[:60] in str(raised)
    wait = (headers or {}).get("Retry-After")
    assert raised.retry_after == (float(wait) if wait else None)
    return raised


def refused_at_load(
    tmp_path: Path, kind: str, options: dict[str, Any], message: str, environ: dict[str, str]
) -> None:
    """A config the integration's model refuses, with ``message`` in the error."""
    from watcher.config.models import ConfigError

    with pytest.raises(ConfigError, match=message):
        build(tmp_path, kind, options, environ=environ)


def check_a_refused_credential(
    tmp_path: Path,
    kind: str,
    options: dict[str, Any],
    secret: str,
    refuse: tuple[str, Any],
    body: Any,
) -> None:
    """A watcher whose credential the helpdesk refuses (its answer echoing the secret, as
    some do) fails the delivery at once, permanently, and shows the secret nowhere."""
    site = Site(
        tmp_path, site_config(unique_site(), f"  tickets:\n    - {kind}: {json.dumps(options)}")
    )
    method, url = refuse
    text = body if isinstance(body, str) else json.dumps(body)
    responses.add(
        responses.Response(method, url, status=401, body=text, content_type="application/json")
    )
    try:
        site.smtp_refused()
        site.deliver()
        (row,) = site.store.outbox()
        assert row.state == "failed" and "HTTP 401" in (row.last_error or "")
        assert secret not in (row.last_error or "")
        assert site.metrics.outbox_failures.labels(f"tickets/{kind}", "permanent")._value.get() == 1
        (integration,) = site.integrations.values()
        assert secret not in repr(integration.config) and secret not in str(integration.config)
    finally:
        site.close()


__all__ = ["Refusal", "check_a_refused_credential", "refusal", "refused_at_load", "sent"]
