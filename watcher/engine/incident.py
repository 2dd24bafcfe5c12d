"""Incidents and what happens to them: the data the tracker works on and the store keeps."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

__all__ = ["Action", "Event", "Hold", "Incident", "State", "fingerprint_of", "ACTIVE_STATES"]

State = Literal["pending", "open", "acknowledged", "resolved"]
ACTIVE_STATES = ("open", "acknowledged")

# Ticket actions go to every ticketer, page actions to every pager, escalations to the
# escalation chain's contacts.
TICKET_ACTIONS = frozenset({"open", "comment", "priority", "resolve", "reopen"})
PAGE_ACTIONS = frozenset({"page", "page_ack", "page_resolve"})
ESCALATION_ACTIONS = frozenset({"escalate"})


def fingerprint_of(site: str, target: str, group: str) -> str:
    """Stable, searchable in any helpdesk (no spaces or punctuation), same across restarts."""
    digest = hashlib.sha256(f"{site}\0{target}\0{group}".encode()).hexdigest()
    return f"w{digest[:24]}"


@dataclass
class Hold:
    """How long and how often a rule's condition has held, for ``for`` and ``after``."""

    since: datetime
    count: int


@dataclass
class Event:
    """A line in an incident's timeline."""

    kind: str
    message: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """Something to tell the outside world; queued in the outbox with the change that caused it."""

    kind: str
    text: str = ""

    @property
    def role(self) -> str:
        if self.kind in ESCALATION_ACTIONS:
            return "escalation"
        return "paging" if self.kind in PAGE_ACTIONS else "tickets"


_TIMES = (
    "first_seen",
    "last_seen",
    "opened_at",
    "acknowledged_at",
    "resolved_at",
    "response_due",
    "resolve_due",
    "last_page_at",
    "last_comment_at",
    "updated_at",
    "priority_since",
    "suppressed_since",
    "notified_at",
    "reminded_at",
)


@dataclass
class Incident:
    """One problem on one target, from the first failing result to its resolution."""

    fingerprint: str
    site: str
    target: str
    group: str
    probe: str
    kind: str
    item: str = ""
    host: str | None = None
    id: int | None = None
    state: State = "pending"
    priority: str | None = None
    rule: str | None = None
    rules: list[str] = field(default_factory=list)
    summary: str = ""
    notified_summary: str = ""
    notified_priority: str | None = None  # what the ticket was last told; None: the current one
    priority_since: datetime | None = None  # when the priority last changed
    message: str = ""
    reason: str = ""
    evidence: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    opened_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    response_due: datetime | None = None
    resolve_due: datetime | None = None
    occurrences: int = 0
    ok_streak: int = 0
    reopen_count: int = 0
    holds: dict[str, Hold] = field(default_factory=dict)
    ticketed: bool = False
    paged: bool = False
    last_page_at: datetime | None = None
    page_count: int = 0
    last_comment_at: datetime | None = None
    escalation: int = 0
    breaches: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    # Alert quality (watcher/engine/suppression.py, watcher/engine/outage.py): notifications held back
    # while a window, a parent or an outage explains the problem; what was told and when.
    notified: bool = True  # False: this opening (or reopening) is still owed to people
    notified_at: datetime | None = None
    suppressed: str | None = (
        None  # maintenance, parent, outage or grouping; None: notifications flow
    )
    suppressed_why: str = ""
    suppressed_since: datetime | None = None
    linked_to: int | None = (
        None  # the incident standing for this one (its parent's or its outage's)
    )
    link: str | None = None  # "parent" or "outage"
    flapping: bool = False
    flap_history: list[int] = field(default_factory=list)  # 1 failing, 0 ok; newest last
    flap_noted: bool = False
    reminders: int = 0
    reminded_at: datetime | None = None
    members: list[str] = field(default_factory=list)  # an outage: its failing targets
    notified_members: list[str] = field(default_factory=list)
    total_members: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _TIMES:
            value = getattr(self, name)
            data[name] = value.isoformat() if value else None
        data["holds"] = {
            k: {"since": h.since.isoformat(), "count": h.count} for k, h in self.holds.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in _TIMES:
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name])
        values["holds"] = {
            k: Hold(datetime.fromisoformat(h["since"]), int(h["count"]))
            for k, h in (data.get("holds") or {}).items()
        }
        return cls(**values)


def public_view(incident: Incident) -> dict[str, Any]:
    """The fields people and scripts read (``--json``, the HTTP API); stable across versions."""
    data = incident.to_dict()
    keep = (
        "id",
        "fingerprint",
        "state",
        "priority",
        "site",
        "target",
        "host",
        "group",
        "probe",
        "kind",
        "item",
        "rule",
        "rules",
        "summary",
        "message",
        "reason",
        "labels",
        "runbook",
        "first_seen",
        "last_seen",
        "opened_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "response_due",
        "resolve_due",
        "occurrences",
        "reopen_count",
        "ticketed",
        "paged",
        "page_count",
        "escalation",
        "breaches",
        "flags",
        "suppressed",
        "suppressed_why",
        "suppressed_since",
        "linked_to",
        "link",
        "flapping",
        "reminders",
        "members",
        "total_members",
    )
    return {k: data[k] for k in keep}
