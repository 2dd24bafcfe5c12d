"""tracker.tick() and the paging rules as pure functions: who is paged when, repaging
until someone acknowledges, and ticket updates that never become a storm."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support.helpers import Clock, config_from, result
from watcher.engine import tracker
from watcher.engine.incident import Incident
from watcher.engine.tracker import Policy, Step

RULES = """
priorities:
  P2: {name: High, response: 4h, resolve: 2 working days, clock: business, ticket: true, page: true, repage_every: 1h}
rules:
  - {name: down, probe: http, when: failed, priority: P1, summary: "{target}: down"}
  - {name: slow, probe: tcp, when: failed, priority: P2, summary: "{target}: port closed"}
  - {name: minor, probe: command, when: failed, priority: P3}
  - {name: disk-high, probe: disk, when: "used_percent >= 85", priority: P3, summary: "{target}: {used_percent:.0f}%"}
  - {name: disk-critical, probe: disk, when: "used_percent >= 95", priority: P2, summary: "{target}: {used_percent:.0f}%"}
"""
SATURDAY_NOON_IST = datetime.fromisoformat("2026-11-21T06:30:00+00:00")


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    config = config_from(
        tmp_path, "site: acme\nrules: [default, site.yml]\n", extra={"site.yml": RULES}
    )
    from rules.engine import RuleSet

    ours = [
        r
        for r in config.rules.rules
        if r.name in {"down", "slow", "minor", "disk-high", "disk-critical"}
    ]
    return Policy(
        rules=RuleSet(config.rules.priorities, ours, site="acme"), calendar=config.calendar
    )


class Run:
    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy, self.clock = policy, clock
        self.incident: Incident | None = None
        self.actions: list[tuple[str, str]] = []

    def feed(self, **kw: object) -> Step:
        r = result(at=self.clock(), **kw)  # type: ignore[arg-type]
        return self._keep(
            tracker.observe(
                self.incident, r, self.policy.rules.evaluate(r, {}, None), self.policy, self.clock()
            )
        )

    def tick(self) -> Step:
        assert self.incident is not None
        return self._keep(tracker.tick(self.incident, self.policy, self.clock()))

    def ack(self) -> Step:
        assert self.incident is not None
        return self._keep(
            tracker.acknowledge(self.incident, self.policy, self.clock(), by="asha", source="api")
        )

    def _keep(self, step: Step) -> Step:
        if step.incident is not None and step.incident.id is None:
            step.incident.id = 1
        self.incident = step.incident
        self.actions += [(self.clock().strftime("%a %H:%M"), a.kind) for a in step.actions]
        return step

    def every(self, minutes: int, until: timedelta) -> None:
        end = self.clock() + until
        while self.clock() < end:
            self.clock.advance(minutes=minutes)
            self.tick()

    def kinds(self, kind: str) -> list[str]:
        return [at for at, k in self.actions if k == kind]


def test_a_p1_pages_at_any_hour_and_repages_every_30_minutes_until_acknowledged(
    policy: Policy,
) -> None:
    run = Run(policy, Clock(SATURDAY_NOON_IST))  # a weekend: P1 runs on a 24x7 clock
    run.feed(probe="http", status="fail")
    run.every(5, timedelta(hours=1, minutes=35))
    assert run.kinds("page") == ["Sat 06:30", "Sat 07:00", "Sat 07:30", "Sat 08:00"]
    assert run.incident.page_count == 4
    run.ack()
    run.every(5, timedelta(hours=3))
    assert len(run.kinds("page")) == 4 and run.kinds("page_ack") == ["Sat 08:05"]


def test_a_p2_that_pages_waits_for_business_hours_and_repages_only_within_them(
    policy: Policy,
) -> None:
    run = Run(policy, Clock(SATURDAY_NOON_IST))
    run.feed(probe="tcp", status="fail")
    assert run.actions == [("Sat 06:30", "open")]  # ticketed at once, paged later
    run.every(5, timedelta(days=2))  # to Monday 12:00 IST
    pages = run.kinds("page")
    assert pages[0] == "Mon 02:30"  # 08:00 IST, when its business clock starts
    assert pages[1:] == ["Mon 03:30", "Mon 04:30", "Mon 05:30", "Mon 06:30"]  # repage_every: 1h
    run.every(5, timedelta(hours=10))  # through Monday evening and night
    assert (
        run.kinds("page")[-1] == "Mon 11:30" and len(run.kinds("page")) == 10
    )  # the last at 17:00 IST
    run.every(5, timedelta(hours=10))
    assert run.kinds("page")[10:] == ["Tue 02:30"]  # 08:00 IST on Tuesday: on again


def test_a_p3_never_pages(policy: Policy) -> None:
    run = Run(policy, Clock())
    run.feed(probe="command", status="fail")
    run.every(5, timedelta(days=3))
    assert run.kinds("page") == []


def test_repage_every_zero_turns_repaging_off(tmp_path: Path) -> None:
    from rules.engine import RuleSet

    config = config_from(
        tmp_path,
        "site: acme\nrules: [default, site.yml]\n",
        extra={
            "site.yml": """
priorities:
  P1: {name: Urgent, response: 2h, resolve: 4h, ticket: true, page: true, repage_every: 0s}
rules:
  - {name: down, probe: http, when: failed, priority: P1}
"""
        },
    )
    ours = [r for r in config.rules.rules if r.name == "down"]
    run = Run(
        Policy(rules=RuleSet(config.rules.priorities, ours, site="acme"), calendar=config.calendar),
        Clock(),
    )
    run.feed(probe="http", status="fail")
    run.every(5, timedelta(hours=2))
    assert len(run.kinds("page")) == 1


def test_a_flapping_priority_reaches_the_ticket_at_most_once_per_comment_interval(
    policy: Policy,
) -> None:
    run = Run(policy, Clock())
    for minute in range(120):  # 94% <-> 96% every minute for two hours
        run.feed(probe="disk", metrics={"used_percent": 96 if minute % 2 == 0 else 94})
        run.clock.advance(minutes=1)
    updates = [k for _, k in run.actions if k in ("comment", "priority")]
    assert run.actions[0][1] == "open"
    assert len(updates) <= 120 // 15 + 1, run.actions


def test_a_raise_reaches_the_ticket_at_once(policy: Policy) -> None:
    run = Run(policy, Clock())
    run.feed(probe="disk", metrics={"used_percent": 88})
    run.clock.advance(minutes=1)
    step = run.feed(probe="disk", metrics={"used_percent": 96})
    assert [a.kind for a in step.actions][:1] == ["open"]  # P3 had no ticket
    run.clock.advance(minutes=30)
    run.feed(probe="disk", metrics={"used_percent": 90})
    assert run.actions[-1][1] != "priority"  # a fall is told once it has held for comment_every
    run.clock.advance(minutes=15)
    run.feed(probe="disk", metrics={"used_percent": 90})
    assert run.actions[-1][1] == "priority"
    run.clock.advance(minutes=1)
    step = run.feed(probe="disk", metrics={"used_percent": 97})
    assert [a.kind for a in step.actions][:1] == ["priority"]  # raised again: no waiting
    assert step.actions[0].text.startswith("Priority raised from P3 to P2")


def test_escalation_due_lists_each_deadline_once(policy: Policy) -> None:
    run = Run(policy, Clock())
    run.feed(probe="http", status="fail")
    incident = run.incident
    assert tracker.escalation_due(incident, policy, run.clock() + timedelta(hours=1)) == []
    due = tracker.escalation_due(incident, policy, run.clock() + timedelta(hours=9))
    assert [d[0] for d in due] == ["response", "resolve", "resolve+1"]
    run.clock.advance(hours=9)
    run.tick()
    assert tracker.escalation_due(run.incident, policy, run.clock()) == []
    assert run.incident.escalation == 3 and len(run.kinds("escalate")) == 3


def test_an_incident_nobody_was_told_about_notes_breaches_but_escalates_nothing(
    policy: Policy,
) -> None:
    run = Run(policy, Clock())
    run.feed(probe="command", status="fail")  # P3: no ticket, no page
    run.clock.advance(days=14)
    run.tick()
    assert run.incident.breaches == ["response", "resolve"] and run.incident.escalation == 0
    assert run.kinds("escalate") == []
