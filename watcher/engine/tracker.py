"""The incident tracker: pure functions of (incident, result, rules, now).

    pending --hold met--> open --ack--> acknowledged
       |                   |  \\________________|
       | cleared           | resolve_after clear results
       v                   v
    (dropped)           resolved --refires within reopen_within--> open (same ticket)

Priority is that of the most urgent rule holding now; a raise updates the ticket, a fall
is noted. Nothing here reads a clock, a file or the network: the engine passes ``now``
in and persists what comes out, with the actions, in one transaction.

Notifications are owed, then told. Opening, reopening and raising only change the
incident; ``_catch_up`` compares what people are owed with what they were told and sends
the difference, unless a ``Suppression`` (a maintenance window, a failing parent, a
site-wide outage) holds it back. When the suppression ends and the problem still
stands, the next step sends it then; an incident that recovered meanwhile sends nothing.
Suppression never touches monitoring: results are applied, incidents open and resolve.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from probes.base import Result
from rules.engine import Evaluation, RuleSet, template_values
from rules.model import Rule, render_template
from watcher.engine.flapping import FlapSettings, change_share
from watcher.engine.incident import Action, Event, Hold, Incident, fingerprint_of
from watcher.engine.sla import BusinessCalendar, deadline

__all__ = [
    "Policy",
    "Step",
    "Suppression",
    "observe",
    "acknowledge",
    "resolve_by_hand",
    "tick",
    "fingerprint_of",
    "escalation_due",
    "begin",
    "resolve",
    "results_to_resolve",
    "review",
    "settle",
]

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
    flapping: FlapSettings = FlapSettings()
    # targets with flap detection of their own
    flapping_by_target: Mapping[str, FlapSettings] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return self.rules.site

    @property
    def escalation_steps(self) -> int:
        return len(self.escalation_chain)


def results_to_resolve(resolve_after: int, flapping: FlapSettings) -> int:
    """The clear results in a row that resolve any incident: ``resolve_after``, or a whole
    flap window where flap detection is on (after a window of clear results an incident
    has stopped flapping, and a flapping one resolves only then)."""
    return max(resolve_after, flapping.window if flapping.enabled else 0)


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


@dataclass(frozen=True)
class Suppression:
    """Why an incident's notifications are held back now: ``kind`` is maintenance, parent,
    outage or grouping; ``linked_to`` the incident that stands for this one, if any."""

    kind: str
    reason: str
    linked_to: int | None = None
    link: str | None = None


# Results are stamped with the time their turn was due, so the check that comes ``for``
# after the first failing one meets the hold; this absorbs the microseconds of rounding and
# clock slew between two stamps, which would otherwise cost a whole interval more.
HOLD_SLACK = timedelta(milliseconds=10)


def _hold_met(rule: Rule, hold: Hold, now: datetime) -> bool:
    if rule.for_ is not None and now - hold.since < rule.for_ - HOLD_SLACK:
        return False
    return not (rule.after is not None and hold.count < rule.after)


def _deadlines(
    policy: Policy, priority: str, start: datetime
) -> tuple[datetime | None, datetime | None]:
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
    quiet: Suppression | None = None,
) -> Step:
    """Applies one result's rule verdicts (all of one fingerprint) to its incident;
    ``quiet`` holds its notifications back (they are sent once it is None again)."""
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
            hold = Hold(
                previous.since if previous else now, (previous.count if previous else 0) + 1
            )
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
    _suppress(incident, quiet, policy, now, step)
    was_flapping = incident.flapping
    if any_true or all_false:
        _track_flapping(incident, 1 if any_true else 0, policy, now, step)

    if incident.state == "pending":
        if firing:
            _open(incident, firing, result, policy, now, step)
        elif all_false:
            step.dropped = True
            step.changed = True
        _catch_up(incident, policy, now, step)
        return step

    if incident.state == "resolved":
        if firing:
            _open(incident, firing, result, policy, now, step)
        _catch_up(incident, policy, now, step)
        return step

    # open or acknowledged
    if firing:
        incident.occurrences += 1
        step.changed = True
        _reprioritise(incident, firing, result, policy, now, step)
    elif all_false:
        incident.ok_streak += 1
        step.changed = True
        # A flapping incident resolves only once the flapping has stopped and the check is ok.
        if not incident.flapping and incident.ok_streak >= policy.resolve_after:
            why = "stable again and ok" if was_flapping else "recovered"
            _resolve(incident, policy, now, step, f"{why}: {result.message}", by="watcher")
    _catch_up(incident, policy, now, step)
    return step


def _top(firing: Sequence[Rule], policy: Policy) -> Rule:
    return min(firing, key=lambda r: policy.rules.rank(r.priority))


def _summary(rule: Rule, result: Result, policy: Policy, host: str | None) -> str:
    values = template_values(result, site=policy.site, host=host, rule=rule)
    return render_template(rule.summary, values)


def _open(
    incident: Incident,
    firing: Sequence[Rule],
    result: Result,
    policy: Policy,
    now: datetime,
    step: Step,
) -> None:
    """Opens a pending incident or reopens a resolved one at its most urgent firing rule."""
    rule = _top(firing, policy)
    incident.runbook = rule.runbook or incident.runbook
    summary = _summary(rule, result, policy, incident.host)
    begin(
        incident,
        rule.priority,
        rule.name,
        sorted(r.name for r in firing),
        summary,
        policy,
        now,
        step,
    )


def begin(
    incident: Incident,
    priority: str,
    rule: str,
    rules: Sequence[str],
    summary: str,
    policy: Policy,
    now: datetime,
    step: Step,
) -> None:
    """Opens a pending incident, or reopens a resolved one. What it owes people (a
    ticket, a reopened ticket, a page) goes out with ``_catch_up`` at the end of the
    step, or later if the incident is suppressed."""
    again = incident.state == "resolved"
    incident.state = "open"
    incident.priority = priority
    incident.priority_since = now
    incident.rule = rule
    incident.rules = list(rules)
    incident.summary = summary
    incident.notified_summary = summary
    incident.notified_priority = priority
    incident.response_due, incident.resolve_due = _deadlines(policy, priority, now)
    incident.notified = False
    incident.reminders = 0
    incident.reminded_at = None
    if again:
        incident.reopen_count += 1
        incident.resolved_at = None
        incident.acknowledged_at = None
        incident.acknowledged_by = None
        incident.occurrences += 1
        incident.ok_streak = 0
        incident.last_comment_at = now
        incident.paged = False
        incident.escalation = 0
        incident.breaches = []
        step.note(
            "reopened", f"failing again at {priority} ({rule}): {summary}", now, priority=priority
        )
    else:
        incident.opened_at = now
        incident.occurrences = 1
        step.note(
            "opened",
            f"opened at {priority} by rule {rule}: {summary}",
            now,
            priority=priority,
            rule=rule,
        )


def _reprioritise(
    incident: Incident,
    firing: Sequence[Rule],
    result: Result,
    policy: Policy,
    now: datetime,
    step: Step,
) -> None:
    """The incident holds at the most urgent firing rule's priority. A raise reaches the
    ticket at once (unless the ticket already knows that priority); a fall and a changed
    summary reach it at most once per ``comment_every``, so a value flapping across two
    rules' thresholds does not become a comment storm. While suppressed, nothing is told:
    the ticket hears what changed once the suppression ends."""
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
        incident.response_due = (
            _earlier(incident.response_due, response)
            if not incident.acknowledged_at
            else incident.response_due
        )
        incident.resolve_due = _earlier(incident.resolve_due, resolution)
        step.note(
            "raised",
            f"priority raised {old} -> {new} by rule {rule.name}: {summary}",
            now,
            old=old,
            new=new,
        )
        return  # the ticket and the hotline hear of it from _catch_up
    if rank(new) > rank(old):
        incident.priority = new
        incident.priority_since = now
        incident.rule = rule.name
        step.note(
            "lowered",
            f"now holds at {new} ({rule.name}); was {old}: {summary}",
            now,
            old=old,
            new=new,
        )
    _update_ticket_if_due(incident, policy, now, step, result.message)


def _told(incident: Incident, now: datetime) -> None:
    incident.notified_priority = incident.priority
    incident.notified_summary = incident.summary
    incident.last_comment_at = now


def _update_ticket_if_due(
    incident: Incident, policy: Policy, now: datetime, step: Step, message: str
) -> None:
    """Tells the ticket what changed since it last heard, at most once per
    ``comment_every``; a lower priority only once it has held that long."""
    if incident.suppressed or not incident.notified:
        return
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
        action, text = (
            "priority",
            f"Priority now {incident.priority} (was {told}): {summary}\n{message}",
        )
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
    if (
        incident.paged
        or incident.priority is None
        or incident.state != "open"
        or incident.suppressed
    ):
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


def _resolve(
    incident: Incident, policy: Policy, now: datetime, step: Step, text: str, *, by: str
) -> None:
    """Resolution is never held back, but only what was told is resolved: a ticket that
    was never opened (or whose reopening was never sent) hears nothing."""
    incident.state = "resolved"
    incident.resolved_at = now
    incident.holds = {}
    if incident.flapping:
        incident.flapping = False
    step.note("resolved", f"resolved by {by}: {text}", now, by=by)
    if incident.ticketed and incident.notified:
        step.send("resolve", f"Resolved: {text}")
    if incident.paged:
        step.send("page_resolve", f"Resolved: {text}")


resolve = _resolve


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
    step.note(
        "acknowledged",
        f"acknowledged by {by} via {source}" + ("" if met else " (after the response deadline)"),
        now,
        by=by,
        source=source,
    )
    if inc.paged:
        step.send("page_ack", f"Acknowledged by {by}")
    if inc.ticketed and inc.notified and source != "helpdesk":
        step.send("comment", f"Acknowledged by {by} via {source}.")
    return step


def resolve_by_hand(
    incident: Incident, policy: Policy, now: datetime, *, by: str, note: str = ""
) -> Step:
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


def tick(
    incident: Incident, policy: Policy, now: datetime, quiet: Suppression | None = None
) -> Step:
    """Time-driven work on an active incident: held notifications whose suppression
    ended, deferred pages, repages until someone acknowledges, reminders, deadline
    breaches and the escalation chain. None of it while suppressed: the deadlines of
    an incident people were told of pause, and run on after the suppression ends."""
    step = Step(copy.deepcopy(incident))
    inc = step.incident
    assert inc is not None
    if not inc.active or inc.priority is None:
        return step
    _suppress(inc, quiet, policy, now, step)
    if inc.suppressed:
        return step
    _catch_up(inc, policy, now, step)
    if not inc.notified:
        return step  # owed, not yet told (it was ok at the last result): nothing runs yet
    _page_if_due(inc, policy, now, step)
    _repage_if_due(inc, policy, now, step)
    _remind_if_due(inc, policy, now, step)
    for trigger, due, reason in escalation_due(inc, policy, now):
        inc.breaches.append(trigger)
        step.note("breach", reason, now, deadline=trigger, due=due.isoformat())
        spec = policy.rules.policy(inc.priority)
        # Only what was handed to people escalates: an incident nobody was ticketed or
        # paged about (the shipped P3 and P4) had no one to respond, so management is
        # not the first to hear of it.
        handed_over = inc.ticketed or inc.paged
        if (
            spec.escalate
            and handed_over
            and not (trigger == "response" and inc.acknowledged_at is not None)
        ):
            _escalate(inc, policy, now, step, reason)
    return step


def _repage_if_due(incident: Incident, policy: Policy, now: datetime, step: Step) -> None:
    """Pages again every ``repage_every`` (default 30m) while nobody has acknowledged,
    within the priority's clock."""
    if (
        incident.state != "open"
        or not incident.paged
        or incident.last_page_at is None
        or incident.priority is None
    ):
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
    step.note(
        "repaged",
        f"paged the hotline again (page {incident.page_count}): unacknowledged since {since}",
        now,
    )
    step.send(
        "page",
        f"Repage {incident.page_count}: still unacknowledged since {since}. {incident.summary}",
    )


def escalation_due(
    incident: Incident, policy: Policy, now: datetime
) -> list[tuple[str, datetime, str]]:
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
    if (
        response
        and now >= response
        and "response" not in incident.breaches
        and (incident.acknowledged_at is None or incident.acknowledged_at > response)
    ):
        due.append(
            ("response", response, f"response deadline {stamp(response)} passed unacknowledged")
        )
    resolve = incident.resolve_due
    if resolve is None or now < resolve:
        return due
    if "resolve" not in incident.breaches:
        due.append(("resolve", resolve, f"resolution deadline {stamp(resolve)} passed unresolved"))
    later = resolve
    for extra in range(1, policy.escalation_steps + 1):
        following = (
            deadline(later, spec.resolve, spec.clock, policy.calendar) if spec.resolve else None
        )
        if following is None or following <= resolve or now < following:
            break
        later = following
        trigger = f"resolve+{extra}"
        if trigger not in incident.breaches:
            due.append(
                (
                    trigger,
                    later,
                    f"still unresolved {extra + 1} resolution times after opening ({stamp(later)})",
                )
            )
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


# ------------------------------------------------------------------ alert quality


def review(incident: Incident, policy: Policy, now: datetime, quiet: Suppression | None) -> Step:
    """Re-decides an incident's suppression without a new result (after a batch's
    outages were assessed): holds it, links it, or sends what it owes."""
    step = Step(copy.deepcopy(incident))
    assert step.incident is not None
    settle(step.incident, quiet, policy, now, step)
    return step


def settle(
    incident: Incident, quiet: Suppression | None, policy: Policy, now: datetime, step: Step
) -> None:
    """Applies the current suppression (or its end) and sends what is owed if nothing
    holds it back; for incidents not driven by results (site-wide outages)."""
    _suppress(incident, quiet, policy, now, step)
    _catch_up(incident, policy, now, step)


def _suppress(
    incident: Incident, quiet: Suppression | None, policy: Policy, now: datetime, step: Step
) -> None:
    """Records why notifications are held (a timeline line when the reason's kind
    changes), or their release, pausing the clocks of what people were already told."""
    if quiet is not None:
        if quiet.linked_to is not None and (incident.linked_to, incident.link) != (
            quiet.linked_to,
            quiet.link,
        ):
            incident.linked_to, incident.link = quiet.linked_to, quiet.link
            step.changed = True
        if incident.suppressed != quiet.kind:
            if incident.suppressed is None:
                incident.suppressed_since = now
            incident.suppressed = quiet.kind
            incident.suppressed_why = quiet.reason
            data: dict[str, Any] = {"reason_kind": quiet.kind}
            if quiet.linked_to is not None:
                data["linked_to"] = quiet.linked_to
            step.note("suppressed", f"notifications held back: {quiet.reason}", now, **data)
        elif incident.suppressed_why != quiet.reason:
            incident.suppressed_why = quiet.reason
            step.changed = True
        return
    if incident.suppressed is None:
        return
    since = incident.suppressed_since or now
    kind = incident.suppressed
    incident.suppressed = None
    incident.suppressed_why = ""
    incident.suppressed_since = None
    held = int((now - since).total_seconds())
    step.note(
        "released",
        f"notifications resume ({kind} over after {held}s)",
        now,
        reason_kind=kind,
        held_s=held,
    )
    if incident.notified and incident.active:
        _pause_clocks(incident, policy, since, now)


def _pause_clocks(incident: Incident, policy: Policy, since: datetime, now: datetime) -> None:
    """An incident people were told of before a suppression: its deadlines, repage and
    reminder timers stood still while it lasted (on the priority's own clock)."""
    if incident.priority is None or now <= since:
        return
    spec = policy.rules.policy(incident.priority)
    wall = now - since
    if spec.clock == "business":
        business = policy.calendar.between(since, now)

        def later(due: datetime) -> datetime:
            return policy.calendar.add(due, business).astimezone(due.tzinfo) if business else due
    else:

        def later(due: datetime) -> datetime:
            return due + wall

    if incident.response_due and incident.response_due > since and incident.acknowledged_at is None:
        incident.response_due = later(incident.response_due)
    if incident.resolve_due and incident.resolve_due > since:
        incident.resolve_due = later(incident.resolve_due)
    if incident.last_page_at:
        incident.last_page_at += wall
    base = incident.reminded_at or incident.notified_at
    if base is not None:
        incident.reminded_at = base + wall  # the next reminder counts from here


def _catch_up(incident: Incident, policy: Policy, now: datetime, step: Step) -> None:
    """Tells people what they are owed and were not told: the opening or reopening, a
    ticket that a raise made due, a raise the ticket missed, the page. Only while the
    problem stands: an incident whose latest result was ok waits, and resolves quietly.
    SLA deadlines of an opening run from the moment it is told."""
    if (
        not incident.active
        or incident.suppressed
        or incident.priority is None
        or incident.ok_streak
    ):
        return
    spec = policy.rules.policy(incident.priority)
    rank = policy.rules.rank
    if not incident.notified:
        incident.notified = True
        incident.notified_at = now
        incident.response_due, incident.resolve_due = _deadlines(policy, incident.priority, now)
        _told(incident, now)
        step.changed = True
        if incident.ticketed:
            step.send("reopen", f"Failing again: {incident.summary}\n{incident.message}")
        elif spec.ticket:
            incident.ticketed = True
            step.send("open")
    elif not incident.ticketed:
        if spec.ticket:
            incident.ticketed = True
            _told(incident, now)
            step.send("open")
    elif rank(incident.priority) < rank(incident.notified_priority or incident.priority):
        told = incident.notified_priority
        _told(incident, now)
        step.send(
            "priority",
            f"Priority raised from {told} to {incident.priority} ({incident.rule}): {incident.summary}\n{incident.message}",
        )
    _page_if_due(incident, policy, now, step)


def _track_flapping(
    incident: Incident, verdict: int, policy: Policy, now: datetime, step: Step
) -> None:
    """Keeps the last results' verdicts; starts flapping at or above the high share of
    state changes and stops below the low one. The ticket hears of it once."""
    settings = policy.flapping_by_target.get(incident.target, policy.flapping)
    if not settings.enabled:
        return
    history = [*incident.flap_history, verdict][-settings.window :]
    incident.flap_history = history
    step.changed = True
    share = change_share(history, settings.window)
    flips = round(share * (settings.window - 1))
    if not incident.flapping and incident.active and share >= settings.high:
        incident.flapping = True
        step.note(
            "flapping",
            f"flapping: {flips} state changes in the last {len(history)} results ({share:.0%}); "
            "kept open until the check is stable and ok",
            now,
            share=round(share, 3),
        )
        if (
            incident.ticketed
            and incident.notified
            and not incident.suppressed
            and not incident.flap_noted
        ):
            incident.flap_noted = True
            step.send(
                "comment",
                f"Flapping: {incident.target} changed state {flips} times in its last {len(history)} results. "
                "watcher keeps this one ticket open instead of resolving and reopening it at each change, "
                "and resolves it once the check is stable and ok.",
            )
    elif incident.flapping and share < settings.low:
        incident.flapping = False
        step.note(
            "stable",
            f"stopped flapping: {flips} state changes in the last {len(history)} results ({share:.0%})",
            now,
        )


def _remind_if_due(incident: Incident, policy: Policy, now: datetime, step: Step) -> None:
    """A ticket comment every ``remind_every`` (on the priority's clock) while the
    incident is open and nobody acknowledged it, at most ``remind_max`` times. Pages are
    not reminders: the hotline is repaged on its own schedule (``repage_every``)."""
    if incident.state != "open" or not incident.ticketed or incident.priority is None:
        return
    spec = policy.rules.policy(incident.priority)
    every = spec.remind_every
    if every is None or every <= timedelta(0) or incident.reminders >= spec.remind_max:
        return
    since = incident.reminded_at or incident.notified_at or incident.opened_at
    if since is None:
        return
    if spec.clock == "business":
        if not policy.calendar.is_open(now):
            return
        elapsed = policy.calendar.between(since, now)
    else:
        elapsed = (now - since).total_seconds()
    if elapsed < every.total_seconds():
        return
    incident.reminders += 1
    incident.reminded_at = now
    number, total = incident.reminders, spec.remind_max
    opened = (incident.notified_at or incident.opened_at or now).isoformat(timespec="minutes")
    step.note(
        "reminded", f"reminder {number} of {total}: open and unacknowledged since {opened}", now
    )
    step.send(
        "comment",
        f"Reminder {number} of {total}: still open and unacknowledged since {opened}. {incident.summary}",
    )
