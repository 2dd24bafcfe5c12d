"""The incident tracker: pure functions of (incident, result, rules, now).

    pending --hold met--> open --ack--> acknowledged
       |                   |  \\________________|
       | cleared           | resolve_after clear results
       v                   v
    (dropped)           resolved --refires within reopen_within--> open (same ticket)

Priority is that of the most urgent rule holding now; a raise updates the ticket, a fall
is noted. Nothing here reads a clock, a file or the network: the engine passes ``now``
in and persists what comes out, with the actions, in one transaction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from probes.base import Result
from rules.engine import Evaluation, RuleSet, template_values
from rules.model import Rule, render_template
from watcher.incident import Action, Event, Hold, Incident, fingerprint_of
from watcher.sla import BusinessCalendar, deadline

__all__ = ["Policy", "Step", "observe", "acknowledge", "resolve_by_hand", "tick", "fingerprint_of", "escalation_due"]

DEFAULT_ESCALATION_CHAIN = ("Senior Product Manager", "VP of Business", "CTO")


@dataclass(frozen=True)
class Policy:
    """Everything the tracker needs to decide, besides the incident and the result."""

    rules: RuleSet
    calendar: BusinessCalendar
    resolve_after: int = 2
    reopen_within: timedelta = timedelta(hours=1)
    comment_every: timedelta = timedelta(minutes=15)
    default_repage: timedelta = timedelta(minutes=30)
    # who each escalation step reaches, in order (labels for the ticket and timeline)
    escalation_chain: tuple[str, ...] = DEFAULT_ESCALATION_CHAIN

    @property
    def site(self) -> str:
        return self.rules.site

    @property
    def escalation_steps(self) -> int:
        return len(self.escalation_chain)


@dataclass
class Step:
    """What one observation did: the incident as it is now, and what to record and send."""

    incident: Incident | None
    events: list[Event] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    created: bool = False
    dropped: bool = False
    changed: bool = False

    def note(self, kind: str, message: str, at: datetime, **data: Any) -> None:
        self.events.append(Event(kind, message, at, data))
        self.changed = True

    def send(self, kind: str, text: str = "") -> None:
        self.actions.append(Action(kind, text))
        self.changed = True


def _hold_met(rule: Rule, hold: Hold, now: datetime) -> bool:
    if rule.for_ is not None and now - hold.since < rule.for_:
        return False
    return not (rule.after is not None and hold.count < rule.after)


def _deadlines(policy: Policy, priority: str, start: datetime) -> tuple[datetime | None, datetime | None]:
    spec = policy.rules.policy(priority)
    return (
        deadline(start, spec.response, spec.clock, policy.calendar),
        deadline(start, spec.resolve, spec.clock, policy.calendar),
    )


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def observe(
    incident: Incident | None,
    result: Result,
    evaluations: Sequence[Evaluation],
    policy: Policy,
    now: datetime,
    *,
    host: str | None = None,
    labels: dict[str, str] | None = None,
    runbook: str | None = None,
) -> Step:
    """Applies one result's rule verdicts (all of one fingerprint) to its incident."""
    if not evaluations:
        return Step(incident)
    if (
        incident is not None
        and incident.state == "resolved"
        and incident.resolved_at is not None
        and now - incident.resolved_at > policy.reopen_within
    ):
        incident = None  # resolved too long ago: a new incident, a new ticket
    group = evaluations[0].group
    any_true = False
    all_false = True
    firing: list[Rule] = []
    holds = dict(incident.holds) if incident else {}
    for evaluation in evaluations:
        rule = evaluation.rule
        if evaluation.value is True:
            any_true = True
            all_false = False
            previous = holds.get(rule.name)
            hold = Hold(previous.since if previous else now, (previous.count if previous else 0) + 1)
            holds[rule.name] = hold
            if _hold_met(rule, hold, now):
                firing.append(rule)
        elif evaluation.value is False:
            holds.pop(rule.name, None)
        else:
            all_false = False  # cannot tell: neither starts nor clears anything

    if incident is None:
        if not any_true:
            return Step(None)
        incident = Incident(
            fingerprint=fingerprint_of(policy.site, result.target, group),
            site=policy.site,
            target=result.target,
            group=group,
            probe=result.probe,
            kind=result.kind,
            item=result.item,
            host=host,
            first_seen=now,
            labels=dict(labels or {}),
            runbook=runbook,
        )
        step = Step(incident, created=True, changed=True)
    else:
        incident = copy.deepcopy(incident)
        step = Step(incident)
    if incident.holds != holds:
        step.changed = True
    incident.holds = holds
    if any_true:
        incident.last_seen = now
        incident.message = result.message
        incident.reason = result.reason
        incident.evidence = result.evidence
        incident.metrics = dict(result.metrics)
        if incident.ok_streak:
            incident.ok_streak = 0
            step.changed = True
    if runbook and not incident.runbook:
        incident.runbook = runbook

    if incident.state == "pending":
        if firing:
            _open(incident, firing, result, policy, now, step)
        elif all_false:
            step.dropped = True
            step.changed = True
        return step

    if incident.state == "resolved":
        if firing:
            _reopen(incident, firing, result, policy, now, step)
        return step

    # open or acknowledged
    if firing:
        incident.occurrences += 1
        step.changed = True
        _reprioritise(incident, firing, result, policy, now, step)
    elif all_false:
        incident.ok_streak += 1
        step.changed = True
        if incident.ok_streak >= policy.resolve_after:
            _resolve(incident, policy, now, step, f"recovered: {result.message}", by="watcher")
    return step


def _top(firing: Sequence[Rule], policy: Policy) -> Rule:
    return min(firing, key=lambda r: policy.rules.rank(r.priority))


def _summary(rule: Rule, result: Result, policy: Policy, host: str | None) -> str:
    values = template_values(result, site=policy.site, host=host, rule=rule)
    return render_template(rule.summary, values)


def _open(incident: Incident, firing: Sequence[Rule], result: Result, policy: Policy, now: datetime, step: Step) -> None:
    rule = _top(firing, policy)
    incident.state = "open"
    incident.opened_at = now
    incident.priority = rule.priority
    incident.priority_since = now
    incident.rule = rule.name
    incident.rules = sorted(r.name for r in firing)
    incident.runbook = rule.runbook or incident.runbook
    incident.summary = _summary(rule, result, policy, incident.host)
    incident.notified_summary = incident.summary
    incident.notified_priority = rule.priority
    incident.occurrences = 1
    incident.response_due, incident.resolve_due = _deadlines(policy, rule.priority, now)
    step.note("opened", f"opened at {rule.priority} by rule {rule.name}: {incident.summary}", now, priority=rule.priority, rule=rule.name)
    spec = policy.rules.policy(rule.priority)
    if spec.ticket:
        incident.ticketed = True
        step.send("open")
    _page_if_due(incident, policy, now, step)


def _reopen(incident: Incident, firing: Sequence[Rule], result: Result, policy: Policy, now: datetime, step: Step) -> None:
    rule = _top(firing, policy)
    incident.state = "open"
    incident.reopen_count += 1
    incident.resolved_at = None
    incident.acknowledged_at = None
    incident.acknowledged_by = None
    incident.priority = rule.priority
    incident.priority_since = now
    incident.rule = rule.name
    incident.rules = sorted(r.name for r in firing)
    incident.occurrences += 1
    incident.ok_streak = 0
    incident.summary = _summary(rule, result, policy, incident.host)
    incident.notified_summary = incident.summary
    incident.notified_priority = rule.priority
    incident.last_comment_at = now
    incident.response_due, incident.resolve_due = _deadlines(policy, rule.priority, now)
    incident.paged = False
    incident.escalation = 0
    incident.breaches = []
    step.note("reopened", f"failing again at {rule.priority} ({rule.name}): {incident.summary}", now, priority=rule.priority)
    spec = policy.rules.policy(rule.priority)
    if incident.ticketed:
        step.send("reopen", f"Failing again: {incident.summary}\n{result.message}")
    elif spec.ticket:
        incident.ticketed = True
        step.send("open")
    _page_if_due(incident, policy, now, step)


def _reprioritise(incident: Incident, firing: Sequence[Rule], result: Result, policy: Policy, now: datetime, step: Step) -> None:
    """The incident holds at the most urgent firing rule's priority. A raise reaches the
    ticket at once (unless the ticket already knows that priority); a fall and a changed
    summary reach it at most once per ``comment_every``, so a value flapping across two
    rules' thresholds does not become a comment storm."""
    rule = _top(firing, policy)
    rank = policy.rules.rank
    incident.rules = sorted(r.name for r in firing)
    old = incident.priority or rule.priority
    new = rule.priority
    summary = _summary(rule, result, policy, incident.host)
    incident.summary = summary
    if rank(new) < rank(old):
        incident.priority = new
        incident.priority_since = now
        incident.rule = rule.name
        response, resolution = _deadlines(policy, new, now)
        incident.response_due = _earlier(incident.response_due, response) if not incident.acknowledged_at else incident.response_due
        incident.resolve_due = _earlier(incident.resolve_due, resolution)
        step.note("raised", f"priority raised {old} -> {new} by rule {rule.name}: {summary}", now, old=old, new=new)
        spec = policy.rules.policy(new)
        told = incident.notified_priority or old
        if incident.ticketed:
            if rank(new) < rank(told):
                _told(incident, now)
                step.send("priority", f"Priority raised from {told} to {new} ({rule.name}): {summary}\n{result.message}")
        elif spec.ticket:
            incident.ticketed = True
            _told(incident, now)
            step.send("open")
        _page_if_due(incident, policy, now, step)
        return
    if rank(new) > rank(old):
        incident.priority = new
        incident.priority_since = now
        incident.rule = rule.name
        step.note("lowered", f"now holds at {new} ({rule.name}); was {old}: {summary}", now, old=old, new=new)
    _update_ticket_if_due(incident, policy, now, step, result.message)


def _told(incident: Incident, now: datetime) -> None:
    incident.notified_priority = incident.priority
    incident.notified_summary = incident.summary
    incident.last_comment_at = now


def _update_ticket_if_due(incident: Incident, policy: Policy, now: datetime, step: Step, message: str) -> None:
    """Tells the ticket what changed since it last heard, at most once per
    ``comment_every``; a lower priority only once it has held that long."""
    told = incident.notified_priority or incident.priority
    since = incident.priority_since or incident.opened_at or now
    lowered = told != incident.priority and now - since >= policy.comment_every
    if not lowered and incident.summary == incident.notified_summary:
        return
    last = incident.last_comment_at or incident.opened_at or now
    if now - last < policy.comment_every:
        return
    summary = incident.summary
    if lowered:
        action, text = "priority", f"Priority now {incident.priority} (was {told}): {summary}\n{message}"
        incident.notified_priority = incident.priority
    else:
        step.note("changed", f"now: {summary}", now)
        action, text = "comment", f"Now: {summary}\n{message}"
    incident.notified_summary = summary
    incident.last_comment_at = now
    step.changed = True
    if incident.ticketed:
        step.send(action, text)


def _page_if_due(incident: Incident, policy: Policy, now: datetime, step: Step) -> None:
    """Pages once per opening if the priority pages and its clock is running now."""
    if incident.paged or incident.priority is None or incident.state != "open":
        return
    spec = policy.rules.policy(incident.priority)
    if not spec.page:
        return
    if spec.clock == "business" and not policy.calendar.is_open(now):
        return  # paged when business hours begin, by tick()
    incident.paged = True
    incident.last_page_at = now
    incident.page_count += 1
    step.note("paged", f"paged the hotline at {incident.priority}", now)
    step.send("page")


def _resolve(incident: Incident, policy: Policy, now: datetime, step: Step, text: str, *, by: str) -> None:
    incident.state = "resolved"
    incident.resolved_at = now
    incident.holds = {}
    step.note("resolved", f"resolved by {by}: {text}", now, by=by)
    if incident.ticketed:
        step.send("resolve", f"Resolved: {text}")
    if incident.paged:
        step.send("page_resolve", f"Resolved: {text}")


def acknowledge(incident: Incident, policy: Policy, now: datetime, *, by: str, source: str) -> Step:
    """Someone took the incident: stops repaging and meets the response SLA."""
    step = Step(copy.deepcopy(incident))
    inc = step.incident
    assert inc is not None
    if inc.state != "open":
        return step
    inc.state = "acknowledged"
    inc.acknowledged_at = now
    inc.acknowledged_by = by
    met = inc.response_due is None or now <= inc.response_due
    step.note("acknowledged", f"acknowledged by {by} via {source}" + ("" if met else " (after the response deadline)"), now, by=by, source=source)
    if inc.paged:
        step.send("page_ack", f"Acknowledged by {by}")
    if inc.ticketed and source != "helpdesk":
        step.send("comment", f"Acknowledged by {by} via {source}.")
    return step


def resolve_by_hand(incident: Incident, policy: Policy, now: datetime, *, by: str, note: str = "") -> Step:
    step = Step(copy.deepcopy(incident))
    inc = step.incident
    assert inc is not None
    if inc.state == "resolved":
        return step
    if inc.state == "pending":
        step.dropped = True
        step.changed = True
        return step
    _resolve(inc, policy, now, step, note or "resolved by hand", by=by)
    return step


def tick(incident: Incident, policy: Policy, now: datetime) -> Step:
    """Time-driven work on an active incident: deferred pages, repages until someone
    acknowledges, deadline breaches and the escalation chain."""
    step = Step(copy.deepcopy(incident))
    inc = step.incident
    assert inc is not None
    if not inc.active or inc.priority is None:
        return step
    _page_if_due(inc, policy, now, step)
    _repage_if_due(inc, policy, now, step)
    for trigger, due, reason in escalation_due(inc, policy, now):
        inc.breaches.append(trigger)
        step.note("breach", reason, now, deadline=trigger, due=due.isoformat())
        spec = policy.rules.policy(inc.priority)
        # Only what was handed to people escalates: an incident nobody was ticketed or
        # paged about (the shipped P3 and P4) had no one to respond, so management is
        # not the first to hear of it.
        handed_over = inc.ticketed or inc.paged
        if spec.escalate and handed_over and not (trigger == "response" and inc.acknowledged_at is not None):
            _escalate(inc, policy, now, step, reason)
    return step


def _repage_if_due(incident: Incident, policy: Policy, now: datetime, step: Step) -> None:
    """Pages again every ``repage_every`` (default 30m) while nobody has acknowledged,
    within the priority's clock."""
    if incident.state != "open" or not incident.paged or incident.last_page_at is None or incident.priority is None:
        return
    spec = policy.rules.policy(incident.priority)
    if not spec.page:
        return
    every = spec.repage_every if spec.repage_every is not None else policy.default_repage
    if every <= timedelta(0) or now - incident.last_page_at < every:
        return
    if spec.clock == "business" and not policy.calendar.is_open(now):
        return
    incident.last_page_at = now
    incident.page_count += 1
    since = (incident.opened_at or now).isoformat(timespec="minutes")
    step.note("repaged", f"paged the hotline again (page {incident.page_count}): unacknowledged since {since}", now)
    step.send("page", f"Repage {incident.page_count}: still unacknowledged since {since}. {incident.summary}")


def escalation_due(incident: Incident, policy: Policy, now: datetime) -> list[tuple[str, datetime, str]]:
    """The deadlines this incident has passed and not yet answered for, in order, as
    (trigger, deadline, reason): ``response`` (not acknowledged in time), ``resolve``
    (not resolved in time), then ``resolve+1``, ``resolve+2``, ... one more resolution
    time on the priority's clock each, while escalation steps remain."""
    if incident.priority is None:
        return []
    spec = policy.rules.policy(incident.priority)
    due: list[tuple[str, datetime, str]] = []
    stamp = lambda m: m.isoformat(timespec="minutes")  # noqa: E731
    response = incident.response_due
    if response and now >= response and "response" not in incident.breaches and (
        incident.acknowledged_at is None or incident.acknowledged_at > response
    ):
        due.append(("response", response, f"response deadline {stamp(response)} passed unacknowledged"))
    resolve = incident.resolve_due
    if resolve is None or now < resolve:
        return due
    if "resolve" not in incident.breaches:
        due.append(("resolve", resolve, f"resolution deadline {stamp(resolve)} passed unresolved"))
    later = resolve
    for extra in range(1, policy.escalation_steps + 1):
        later = deadline(later, spec.resolve, spec.clock, policy.calendar) if spec.resolve else None
        if later is None or later <= resolve or now < later:
            break
        trigger = f"resolve+{extra}"
        if trigger not in incident.breaches:
            due.append((trigger, later, f"still unresolved {extra + 1} resolution times after opening ({stamp(later)})"))
    return due


def _escalate(incident: Incident, policy: Policy, now: datetime, step: Step, reason: str) -> None:
    """Notifies the next step of the chain once: a ticket comment, a timeline line and an
    ``escalate`` action that the escalation notifier delivers to that step's contact."""
    if incident.escalation >= policy.escalation_steps:
        return
    incident.escalation += 1
    number, total = incident.escalation, policy.escalation_steps
    who = policy.escalation_chain[number - 1]
    text = f"Escalated to {who} (step {number} of {total}): {reason}."
    step.note("escalated", text, now, step=number, contact=who)
    if incident.ticketed:
        step.send("comment", text)
    step.send("escalate", text)
