"""``alertmanager``: alerts pushed by Prometheus Alertmanager or Grafana, as results.

Nothing here reaches out. Alertmanager's webhook (or a Grafana webhook contact point)
posts to ``POST /api/alertmanager``; ``watcher.web.alertmanager_api`` checks the token and
the whole post with :func:`parse_post`, then turns each alert into a result of this
kind with :func:`alert_result`:

- the target is the alert's ``instance`` label (``target_label``), else ``job``, else
  ``default_target``; of ``host:port`` (or a URL) only the host counts, and a host that
  is a configured target's name or ``host:`` belongs to that target, so its labels,
  ``depends_on``, maintenance windows and outage groups apply;
- the check is ``alertmanager`` and its item the alert's other label values (by label
  name, so ``alertname`` usually comes first): each alert is one check, one incident;
- ``firing`` fails, ``resolved`` is ok; the message is the ``summary`` annotation (else
  ``description``, else the alert name); labels are the alert's, so rules read
  ``severity == 'critical'``; annotations, ``generatorURL``, the runbook and Grafana's
  links and values go into the evidence, which the ticket shows.

The class is registered so that rules can say ``probe: alertmanager``, and so that
``- alertmanager:`` under a target is refused with a pointer to the top-level section.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext, Result, cap_text, one_line
from watcher.core.secret import Secret, redact
from watcher.core.types import Duration

__all__ = [
    "KIND",
    "Alert",
    "AlertmanagerProbe",
    "AlertmanagerSettings",
    "PayloadError",
    "Post",
    "alert_result",
    "parse_post",
    "target_index",
    "target_of",
]

KIND = "alertmanager"
Source = Literal["alertmanager", "grafana"]
# Alertmanager's own default repeat_interval: a firing alert is sent again at least this
# often, so silence for a few of these means Alertmanager lost it.
TYPICAL_REPEAT = timedelta(hours=4)
MAX_LABELS = 64
MAX_NAME = 128
MAX_VALUE = 1024
MAX_ANNOTATION = 8 * 1024
ZERO_TIME = "0001-01-01T00:00:00Z"


class AlertmanagerSettings(BaseModel):
    """The ``alertmanager:`` section of watcher.yml: who may post, and how alerts map.

    ``resolve_silent_after`` defaults to 12h, three times Alertmanager's default
    ``repeat_interval`` (4h): a firing alert is re-sent at least that often, so two
    missed repeats in a row are a lost alert, not a slow one. Sites with a longer
    ``repeat_interval`` must raise it, sites with a shorter one may lower it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: Secret | None = None
    target_label: str = "instance"
    fallback_labels: list[str] = ["job"]
    default_target: str = "alerts"
    resolve_silent_after: Duration = 3 * TYPICAL_REPEAT
    max_alerts: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _sane(self) -> AlertmanagerSettings:
        if self.resolve_silent_after < timedelta(minutes=1):
            raise ValueError(
                "resolve_silent_after must be at least 1m, and longer than Alertmanager's "
                "repeat_interval (its default is 4h; watcher's default is 12h)"
            )
        if not self.target_label.strip() or not self.default_target.strip():
            raise ValueError("target_label and default_target must not be empty")
        return self


class AlertmanagerConfig(ProbeConfig):
    @model_validator(mode="before")
    @classmethod
    def _pushed(cls, data: Any) -> Any:
        raise ValueError(
            "alerts are pushed by Alertmanager, not probed: configure the top-level "
            'alertmanager: {token: "${ALERTMANAGER_TOKEN}"} and point a webhook_config at '
            "/api/alertmanager"
        )


class AlertmanagerProbe(Probe):
    kind = KIND
    Config = AlertmanagerConfig
    # None: the names are the alerts' labels (``severity``, ``team``), known only when
    # they arrive; ``firing_for_s`` is the one metric.
    metrics: ClassVar[frozenset[str] | None] = None

    def check(self, ctx: ProbeContext) -> Outcome:
        return Outcome.error("alerts are pushed to /api/alertmanager, never probed")


class PayloadError(ValueError):
    """A post that is refused as a whole; ``reason`` is a short word for /metrics."""

    def __init__(self, message: str, reason: str = "schema") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Alert:
    """One alert of a post, checked."""

    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    fingerprint: str
    generator_url: str = ""
    # Grafana's own fields: silenceURL, dashboardURL, panelURL, imageURL, values
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.labels["alertname"]


@dataclass(frozen=True)
class Post:
    """A whole webhook post, checked: what sent it and its alerts."""

    source: Source
    status: str
    alerts: tuple[Alert, ...]
    receiver: str = ""
    group_key: str = ""
    external_url: str = ""
    truncated: int = 0
    title: str = ""


def _text(value: Any, where: str, *, limit: int = MAX_VALUE, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise PayloadError(f"{where} is longer than {limit} characters")
    return value


def _moment(value: Any, where: str, *, required: bool) -> datetime | None:
    if value in (None, "") and not required:
        return None
    text = _text(value, where, limit=64, required=True)
    if text == ZERO_TIME or text.startswith("0001-01-01"):
        if required:
            raise PayloadError(f"{where} is the zero time; it must say when the alert began")
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"{where} is not an RFC 3339 time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise PayloadError(f"{where} has no time zone: {text[:40]!r}")
    return moment.astimezone(UTC)


def _mapping(value: Any, where: str, *, limit: int) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object of strings")
    if len(value) > MAX_LABELS:
        raise PayloadError(f"{where} has {len(value)} entries, at most {MAX_LABELS}")
    out = {}
    for key, item in value.items():
        if not key or len(key) > MAX_NAME:
            raise PayloadError(f"{where} has an empty or over-long name")
        out[key] = _text(item, f"{where}.{key[:40]}", limit=limit, required=True)
    return out


def _values(value: Any, where: str) -> dict[str, float]:
    """Grafana's ``values``: the numbers the rule's expressions gave."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_LABELS:
        raise PayloadError(f"{where} must be an object of numbers")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            continue  # a NaN or null value says nothing; it is not worth refusing the post
        out[str(key)[:MAX_NAME]] = float(item)
    return out


def _fingerprint(labels: Mapping[str, str]) -> str:
    text = "\0".join(f"{k}\0{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


GRAFANA_LINKS = ("silenceURL", "dashboardURL", "panelURL", "imageURL")


def _alert(data: Any, where: str, source: Source) -> Alert:
    if not isinstance(data, dict):
        raise PayloadError(f"{where} must be an object")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status must be firing or resolved, not {str(status)[:20]!r}")
    if "labels" not in data:
        raise PayloadError(f"{where} has no labels", "labels")
    labels = _mapping(data.get("labels"), f"{where}.labels", limit=MAX_VALUE)
    if not labels.get("alertname", "").strip():
        raise PayloadError(f"{where}.labels has no alertname", "labels")
    annotations = _mapping(data.get("annotations"), f"{where}.annotations", limit=MAX_ANNOTATION)
    starts_at = _moment(data.get("startsAt"), f"{where}.startsAt", required=True)
    assert starts_at is not None
    ends_at = _moment(data.get("endsAt"), f"{where}.endsAt", required=False)
    fingerprint = _text(data.get("fingerprint"), f"{where}.fingerprint", limit=64)
    extra: dict[str, Any] = {}
    if source == "grafana":
        for key in GRAFANA_LINKS:
            link = _text(data.get(key), f"{where}.{key}", limit=2048)
            if link:
                extra[key] = link
        extra["values"] = _values(data.get("values"), f"{where}.values")
        value_string = _text(data.get("valueString"), f"{where}.valueString", limit=2048)
        if value_string:
            extra["valueString"] = value_string
    return Alert(
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint or _fingerprint(labels),
        generator_url=_text(data.get("generatorURL"), f"{where}.generatorURL", limit=2048),
        extra=extra,
    )


def parse_post(body: bytes, *, max_alerts: int = 1000) -> Post:
    """Checks a whole webhook post; raises :class:`PayloadError` naming the first problem.

    Alertmanager sends ``version: "4"``; Grafana's webhook contact point sends the same
    shape with ``orgId``, ``title``, ``state``, ``message`` and per-alert links and values
    (its ``version`` is ``"1"``). Anything else is refused, so a payload whose meaning
    changed is never read half right.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"the body is not JSON: {exc}", "json") from None
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object (a webhook post)", "json")
    source: Source = "grafana" if "orgId" in data else "alertmanager"
    version = data.get("version")
    expected = "1" if source == "grafana" else "4"
    if version != expected:
        raise PayloadError(
            f"unsupported payload version {str(version)[:20]!r}: this endpoint reads "
            "Alertmanager's webhook version 4 and Grafana's webhook contact point (version 1)",
            "version",
        )
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"status must be firing or resolved, not {str(status)[:20]!r}")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts must be a list")
    if len(alerts) > max_alerts:
        raise PayloadError(
            f"{len(alerts)} alerts in one post, at most {max_alerts}: set max_alerts in "
            "Alertmanager's webhook_config (the rest are counted in truncatedAlerts)",
            "too_many",
        )
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError("truncatedAlerts must be a whole number")
    checked = tuple(_alert(a, f"alerts[{i}]", source) for i, a in enumerate(alerts))
    return Post(
        source=source,
        status=status,
        alerts=checked,
        receiver=_text(data.get("receiver"), "receiver"),
        group_key=_text(data.get("groupKey"), "groupKey", limit=4096),
        external_url=_text(data.get("externalURL"), "externalURL", limit=2048),
        truncated=truncated,
        title=_text(data.get("title"), "title", limit=2048) if source == "grafana" else "",
    )


def _host_of(value: str) -> str:
    """``10.0.0.5:9100`` -> ``10.0.0.5``; ``[::1]:9100`` -> ``::1``; a URL -> its host."""
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0]
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def target_index(targets: Mapping[str, str | None]) -> dict[str, str]:
    """Configured target names and hosts, each to its target's name (a name wins)."""
    index = {host: name for name, host in targets.items() if host}
    index.update({name: name for name in targets})
    return index


def target_of(
    labels: Mapping[str, str], settings: AlertmanagerSettings, index: Mapping[str, str]
) -> tuple[str, str]:
    """(target name, label it came from) for an alert's labels.

    ``index`` (:func:`target_index`) maps configured target names and hosts to target
    names; a value naming one of them (as is, or as ``host:port``) belongs to it.
    """
    for label in (settings.target_label, *settings.fallback_labels):
        value = labels.get(label, "").strip()
        if not value:
            continue
        host = _host_of(value)
        found = index.get(value) or index.get(host)
        if found is not None:
            return found, label
        # The host, not host:port: the exporters of one server are one target.
        return (host or value)[:MAX_NAME], label
    return settings.default_target, ""


def evidence(alert: Alert, post: Post | None = None) -> str:
    """What the ticket shows of an alert: annotations, labels, links, where it came from."""
    lines = []
    summary = alert.annotations.get("summary")
    if summary:
        lines.append(summary)
    description = alert.annotations.get("description")
    if description and description != summary:
        lines.append(description)
    if alert.annotations.get("runbook_url"):
        lines.append(f"Runbook: {alert.annotations['runbook_url']}")
    if alert.generator_url:
        lines.append(f"Source: {alert.generator_url}")
    for key in GRAFANA_LINKS:
        if alert.extra.get(key):
            lines.append(f"{key[:-3].capitalize()}: {alert.extra[key]}")
    values = alert.extra.get("values") or {}
    if values:
        lines.append("Values: " + ", ".join(f"{k}={v:g}" for k, v in sorted(values.items())))
    if alert.extra.get("valueString"):
        lines.append(f"Values: {alert.extra['valueString']}")
    lines.append(f"Started: {alert.starts_at.isoformat(timespec='seconds')}")
    if alert.ends_at and alert.status == "resolved":
        lines.append(f"Ended: {alert.ends_at.isoformat(timespec='seconds')}")
    lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    others = {
        k: v
        for k, v in alert.annotations.items()
        if k not in ("summary", "description", "runbook_url")
    }
    if others:
        lines.append("Annotations: " + ", ".join(f"{k}={v}" for k, v in sorted(others.items())))
    sender = "Grafana" if post is not None and post.source == "grafana" else "Alertmanager"
    if post is not None and post.external_url:
        sender += f" {post.external_url}"
    if post is not None and post.receiver:
        sender += f" (receiver {post.receiver})"
    lines.append(f"Sent by: {sender}; fingerprint {alert.fingerprint}")
    return "\n".join(lines)


def result_labels(alert: Alert, target_label: str) -> dict[str, str]:
    """The alert's labels without the one that names the target (the target says it)."""
    return {k: v for k, v in alert.labels.items() if k != target_label}


def alert_result(
    alert: Alert,
    target: str,
    target_label: str,
    now: datetime,
    *,
    post: Post | None = None,
    status: Literal["ok", "fail"] | None = None,
    message: str | None = None,
    reason: str | None = None,
) -> Result:
    """The result that stands for ``alert`` at ``now``; ``status`` and ``message``
    override what the alert says (an alert resolved because it went silent)."""
    firing = alert.status == "firing"
    text = (
        alert.annotations.get("summary")
        or alert.annotations.get("description")
        or f"{alert.name} {alert.status}"
    )
    metrics = {"firing_for_s": max(0.0, (now - alert.starts_at).total_seconds())} if firing else {}
    return Result(
        target=target,
        probe=KIND,
        kind=KIND,
        status=status or ("fail" if firing else "ok"),
        message=redact(one_line(message or text)),
        metrics=metrics,
        labels=result_labels(alert, target_label),
        evidence=redact(cap_text(evidence(alert, post))),
        duration_s=0.0,
        at=now,
        reason=reason if reason is not None else alert.status,
    )
