"""Ticket and page text: what an L2 engineer would otherwise have to ask L1 for.

The support policy asks L1 to hand over device details, logs and the steps already
followed; a watcher ticket carries all three, with the deadlines it is held to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from integrations.base import TicketContent
from probes.base import Result, cap_text
from rules.model import PriorityPolicy
from watcher.engine.incident import Event, Incident
from watcher.engine.sla import BusinessCalendar

__all__ = ["counted", "ticket_subject", "ticket_content", "local_time"]

EVIDENCE_IN_TICKET = 4096


def counted(n: int, noun: str) -> str:
    """``1 target``, ``3 targets``: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def local_time(moment: datetime | None, calendar: BusinessCalendar) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(calendar.tz)
    return local.strftime("%Y-%m-%d %H:%M %Z")


def ticket_subject(incident: Incident) -> str:
    return f"[{incident.priority}][{incident.site}] {incident.target}: {_strip_target(incident)}"


def _strip_target(incident: Incident) -> str:
    prefix = f"{incident.target}: "
    summary = incident.summary or incident.message
    return summary[len(prefix) :] if summary.startswith(prefix) else summary


def ticket_content(
    incident: Incident,
    *,
    policies: Mapping[str, PriorityPolicy],
    calendar: BusinessCalendar,
    events: Sequence[Event] = (),
    recent: Sequence[Mapping[str, Any]] = (),
    target_results: Sequence[Result] = (),
    action: str = "open",
    text: str = "",
    status_url: str | None = None,
) -> TicketContent:
    assert incident.id is not None and incident.priority is not None
    policy = policies[incident.priority]
    body = _body(incident, policy, calendar, events, recent, target_results, status_url)
    return TicketContent(
        incident_id=incident.id,
        fingerprint=incident.fingerprint,
        site=incident.site,
        target=incident.target,
        host=incident.host,
        priority=incident.priority,
        priority_name=policy.name,
        summary=_strip_target(incident),
        subject=ticket_subject(incident),
        body=body if not text else f"{text}\n\n{'-' * 60}\n{body}",
        state=incident.state,
        labels=dict(incident.labels),
        runbook=incident.runbook,
        url=status_url,
        text=text,
        action=action,
        escalation=incident.escalation,
        check=f"{incident.probe} {incident.item}".strip(),
    )


def _body(
    incident: Incident,
    policy: PriorityPolicy,
    calendar: BusinessCalendar,
    events: Sequence[Event],
    recent: Sequence[Mapping[str, Any]],
    target_results: Sequence[Result],
    status_url: str | None,
) -> str:
    t = lambda m: local_time(m, calendar)  # noqa: E731
    clock = "business hours" if policy.clock == "business" else "24x7"
    lines = [
        f"{incident.summary}",
        "",
        f"Site:          {incident.site}",
        f"Target:        {incident.target}" + (f" ({incident.host})" if incident.host else ""),
    ]
    if incident.labels:
        lines.append(
            "Labels:        " + ", ".join(f"{k}={v}" for k, v in sorted(incident.labels.items()))
        )
    check = (
        f"{incident.probe}"
        + (f" {incident.item}" if incident.item else "")
        + f" ({incident.kind} probe)"
    )
    lines += [
        f"Check:         {check}",
        f"Rule:          {incident.rule}"
        + (
            f" (also holding: {', '.join(r for r in incident.rules if r != incident.rule)})"
            if len(incident.rules) > 1
            else ""
        ),
        f"Priority:      {incident.priority} {policy.name} ({clock})",
        f"Respond by:    {t(incident.response_due)}",
        f"Resolve by:    {t(incident.resolve_due)}",
        f"First seen:    {t(incident.first_seen)}",
        f"Last seen:     {t(incident.last_seen)}",
        f"Occurrences:   {incident.occurrences}",
        f"State:         {incident.state}"
        + (
            f" (by {incident.acknowledged_by} at {t(incident.acknowledged_at)})"
            if incident.acknowledged_at
            else ""
        ),
        f"Fingerprint:   {incident.fingerprint}",
    ]
    if incident.escalation:
        lines.append(
            f"Escalated:     {incident.escalation} step{'s' if incident.escalation > 1 else ''} of the chain notified"
        )
    if incident.flapping:
        lines.append("Flapping:      yes; kept open until the check is stable and ok")
    if incident.suppressed:
        lines.append(f"Held back:     {incident.suppressed_why}")
    if incident.linked_to:
        lines.append(
            f"Linked to:     incident {incident.linked_to} ({'its outage' if incident.link == 'outage' else 'a parent it depends on'})"
        )
    if incident.total_members:
        lines.append(
            f"Members:       {len(incident.members)} of {incident.total_members} failing: {', '.join(incident.members) or 'none'}"
        )
    if incident.runbook:
        lines.append(f"Runbook:       {incident.runbook}")
    if status_url:
        lines.append(f"Status page:   {status_url}")
    lines += ["", "What watcher saw", f"  {incident.message}"]
    if incident.metrics:
        lines.append(
            "  " + ", ".join(f"{k}={_num(v)}" for k, v in sorted(incident.metrics.items()))
        )
    if incident.evidence:
        lines += ["", "Evidence (probe output)"]
        lines += [
            "  " + line for line in cap_text(incident.evidence, EVIDENCE_IN_TICKET).splitlines()
        ]
    if recent:
        lines += [
            "",
            f"Recent results of {incident.probe}" + (f" {incident.item}" if incident.item else ""),
        ]
        for r in recent[-10:]:
            lines.append(f"  {t(r['at'])}  {r['status']:<5}  {r['message']}")
    if target_results:
        lines += [
            "",
            f"Automated steps already taken (every check on {incident.target}, latest run)",
        ]
        for res in target_results:
            what = res.probe + (f" {res.item}" if res.item else "")
            lines.append(f"  - {what}: {res.status} at {t(res.at)}: {res.message}")
    if events:
        lines += ["", "Timeline"]
        for e in events[-15:]:
            lines.append(f"  {t(e.at)}  {e.kind:<12} {e.message}")
    lines += [
        "",
        "Opened automatically by watcher. Reply or update the ticket as usual; watcher resolves it on recovery.",
    ]
    return "\n".join(lines)


def _num(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value:.4g}"
    return f"{value:.4g}" if value != int(value) else str(int(value))
