"""Site-wide outages: when many targets of one group fail together, one incident stands
for them all.

    outages:
      - name: mail-cluster
        labels: {role: mail}          # or targets: ["mail*"]; both: a target must match both
        min_failing: 5                # at least 5 targets ...
        min_percent: 50               # ... or half of the group (either is enough)
        window: 5m                    # whose failures began within 5 minutes
        priority: P1
        summary: "mail cluster degraded: {failing} of {total} targets failing"

The outage opens when enough members began failing within ``window``; it lists its
members in the ticket and comments as members join and recover (at most once per
``update_every``); it resolves when no member fails any more. While it is open, its
members' own incidents are linked to it and send nothing of their own (resolved by hand
while members still fail, they are ticketed on their own). A member whose failure a
failing parent (``depends_on``) explains is not counted.

``assess`` is a pure function of (the outage's incident, the failing members, now).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.model import render_template, template_fields
from watcher.core.types import Duration, label_strings
from watcher.engine.incident import Incident, fingerprint_of
from watcher.engine.tracker import Policy, Step, Suppression, begin, resolve, settle

__all__ = [
    "OutageConfig",
    "Failing",
    "assess",
    "outage_fingerprint",
    "OUTAGE_PROBE",
    "SUMMARY_FIELDS",
]

OUTAGE_PROBE = "outage"
SUMMARY_FIELDS = frozenset({"name", "failing", "total", "percent", "site", "members"})
MEMBERS_IN_MESSAGE = 20


class OutageConfig(BaseModel):
    """One group whose simultaneous failures are one incident."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str | None = None
    labels: dict[str, str] = {}
    targets: list[str] = []
    min_failing: int | None = Field(default=None, ge=2)
    min_percent: float | None = Field(default=None, gt=0, le=100)
    window: Duration = timedelta(minutes=5)
    wait: Duration = timedelta(minutes=1)
    priority: str = "P1"
    summary: str = "{name}: {failing} of {total} targets failing"
    update_every: Duration = timedelta(minutes=15)
    runbook: str | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return label_strings(value)

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        unknown = template_fields(value) - SUMMARY_FIELDS
        if unknown:
            raise ValueError(
                f"{{{sorted(unknown)[0]}}} is not an outage field; use {', '.join('{' + f + '}' for f in sorted(SUMMARY_FIELDS))}"
            )
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> OutageConfig:
        if self.min_failing is None and self.min_percent is None:
            raise ValueError(
                "an outage needs min_failing: (a count, 2 or more) or min_percent: (of the group), or both"
            )
        if not self.labels and not self.targets:
            raise ValueError(
                "an outage needs labels: {key: value} or targets: [globs] to say which targets it groups"
            )
        return self

    def triggered(self, failing: int, total: int) -> bool:
        """Enough members failing: ``min_failing`` of them, or ``min_percent`` of the group."""
        if failing < 2:
            return False
        if self.min_failing is not None and failing >= self.min_failing:
            return True
        return (
            self.min_percent is not None and total > 0 and failing * 100 >= self.min_percent * total
        )


@dataclass(frozen=True)
class Failing:
    """A member failing now: since when (the current streak) and what it says."""

    since: datetime
    message: str = ""


def outage_fingerprint(site: str, name: str) -> str:
    return fingerprint_of(site, f"outage:{name}", OUTAGE_PROBE)


def assess(
    spec: OutageConfig,
    incident: Incident | None,
    failing: Mapping[str, Failing],
    total: int,
    policy: Policy,
    now: datetime,
    *,
    quiet: Suppression | None = None,
) -> Step:
    """Opens, updates or resolves the outage's incident from its members' failures."""
    active = incident is not None and incident.active
    if not active:
        # failures that began within the window, and after the outage last ended: an
        # outage someone resolved by hand does not come back for the same failures
        cutoff = now - spec.window
        if incident is not None and incident.resolved_at is not None:
            cutoff = max(cutoff, incident.resolved_at)
        recent = [t for t, f in failing.items() if f.since >= cutoff]
        if not spec.triggered(len(recent), total):
            return Step(incident)
        if (
            incident is not None
            and incident.resolved_at is not None
            and now - incident.resolved_at <= policy.reopen_within
        ):
            step = Step(copy.deepcopy(incident))
        else:
            fresh = Incident(
                fingerprint=outage_fingerprint(policy.site, spec.name),
                site=policy.site,
                target=spec.name,
                group=OUTAGE_PROBE,
                probe=OUTAGE_PROBE,
                kind=OUTAGE_PROBE,
                first_seen=now,
                labels=dict(spec.labels),
                runbook=spec.runbook,
                state="pending",
            )
            step = Step(fresh, created=True, changed=True)
        inc = step.incident
        assert inc is not None
        _describe(inc, spec, failing, total, policy, now)
        begin(
            inc,
            spec.priority,
            f"outage {spec.name}",
            [f"outage {spec.name}"],
            inc.summary,
            policy,
            now,
            step,
        )
        inc.notified_members = list(inc.members)
        settle(inc, quiet, policy, now, step)
        return step

    assert incident is not None
    step = Step(copy.deepcopy(incident))
    inc = step.incident
    assert inc is not None
    if not failing:
        _describe(inc, spec, failing, total, policy, now)
        resolve(
            inc, policy, now, step, f"all {total} targets of {spec.name} are ok again", by="watcher"
        )
        return step
    before = list(inc.members)
    _describe(inc, spec, failing, total, policy, now)
    if inc.members != before:
        joined = sorted(set(inc.members) - set(before))
        left = sorted(set(before) - set(inc.members))
        step.note(
            "members",
            _change_text(joined, left, len(inc.members), total),
            now,
            joined=joined,
            left=left,
        )
    settle(inc, quiet, policy, now, step)
    _update_if_due(inc, spec, total, now, step)
    return step


def _describe(
    inc: Incident,
    spec: OutageConfig,
    failing: Mapping[str, Failing],
    total: int,
    policy: Policy,
    now: datetime,
) -> None:
    members = sorted(failing)
    values = {
        "name": spec.name,
        "failing": len(members),
        "total": total,
        "percent": round(100 * len(members) / total) if total else 0,
        "site": policy.site,
        "members": ", ".join(members),
    }
    inc.members = members
    inc.total_members = total
    inc.summary = render_template(spec.summary, values)
    shown = ", ".join(members[:MEMBERS_IN_MESSAGE]) + (
        f" and {len(members) - MEMBERS_IN_MESSAGE} more"
        if len(members) > MEMBERS_IN_MESSAGE
        else ""
    )
    inc.message = f"{len(members)} of {total} targets failing" + (f": {shown}" if members else "")
    inc.evidence = "\n".join(
        f"{t}: failing since {failing[t].since.isoformat(timespec='seconds')}: {failing[t].message}"
        for t in members
    )
    if members:
        inc.last_seen = now


def _change_text(joined: list[str], left: list[str], failing: int, total: int) -> str:
    parts = [f"{failing} of {total} failing"]
    if joined:
        parts.append("joined: " + ", ".join(joined))
    if left:
        parts.append("recovered: " + ", ".join(left))
    return "; ".join(parts)


def _update_if_due(
    inc: Incident, spec: OutageConfig, total: int, now: datetime, step: Step
) -> None:
    """Tells the ticket who joined and who recovered since it last heard, at most once
    per ``update_every``; what changes in between is gathered into that one comment."""
    if (
        not inc.ticketed
        or not inc.notified
        or inc.suppressed
        or inc.members == inc.notified_members
    ):
        return
    last = inc.last_comment_at or inc.opened_at or now
    if now - last < spec.update_every:
        return
    joined = sorted(set(inc.members) - set(inc.notified_members))
    left = sorted(set(inc.notified_members) - set(inc.members))
    inc.notified_members = list(inc.members)
    inc.notified_summary = inc.summary
    inc.last_comment_at = now
    step.send(
        "comment", f"Now {_change_text(joined, left, len(inc.members), total)}.\n{inc.message}"
    )
