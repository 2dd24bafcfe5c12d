"""The incident tracker as pure functions, with the clock moved by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rules.engine import RuleSet
from tests.support.helpers import Clock, config_from, result
from watcher.engine import tracker
from watcher.engine.incident import Incident
from watcher.engine.tracker import Policy, Step

RULES = """
rules:
  - {name: web-down, probe: http, when: failed, for: 2m, priority: P1, summary: "{target}: down ({message})"}
  - {name: disk-high, probe: disk, when: "used_percent >= 85", priority: P3, summary: "{target}: {path} {used_percent:.0f}%",
     runbook: "https://wiki.example/disk-high"}
  - {name: disk-critical, probe: disk, when: "used_percent >= 95", priority: P2, summary: "{target}: {path} {used_percent:.0f}%",
     runbook: "https://wiki.example/disk-critical"}
  - {name: flaky, probe: tcp, when: failed, after: 3, priority: P3}
  - {name: report-late, probe: command, when: failed, priority: P2}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    config = config_from(
        tmp_path, "site: acme\nrules: [default, site.yml]\n", extra={"site.yml": RULES}
    )
    ours = [
        r
        for r in config.rules.rules
        if r.name in {"web-down", "disk-high", "disk-critical", "flaky", "report-late"}
    ]
    return Policy(
        rules=RuleSet(config.rules.priorities, ours, site="acme"), calendar=config.calendar
    )


class Feed:
    """Feeds results to the tracker as the engine would, keeping the incident between steps."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.incident: Incident | None = None
        self.actions: list[str] = []
        self.events: list[str] = []

    def __call__(self, **kw: object) -> Step:
        r = result(at=self.clock(), **kw)  # type: ignore[arg-type]
        evaluations = self.policy.rules.evaluate(r, {}, None)
        step = tracker.observe(self.incident, r, evaluations, self.policy, self.clock())
        self._keep(step)
        return step

    def tick(self) -> Step:
        assert self.incident is not None
        step = tracker.tick(self.incident, self.policy, self.clock())
        self._keep(step)
        return step

    def _keep(self, step: Step) -> None:
        if step.incident is not None and step.incident.id is None:
            step.incident.id = 1
        self.incident = None if step.dropped else step.incident
        self.actions += [a.kind for a in step.actions]
        self.events += [e.kind for e in step.events]


@pytest.fixture
def feed(policy: Policy) -> Feed:
    return Feed(policy, Clock())


def test_it_opens_only_after_the_hold_and_then_tickets_and_pages(feed: Feed) -> None:
    feed(probe="http", status="fail", message="connection refused")
    assert feed.incident is not None and feed.incident.state == "pending"
    feed.clock.advance(minutes=1)
    feed(probe="http", status="fail")
    assert feed.incident.state == "pending"
    feed.clock.advance(minutes=1)
    feed(probe="http", status="fail")
    assert feed.incident.state == "open"
    assert feed.incident.priority == "P1"
    assert feed.actions == ["open", "page"]
    assert feed.incident.summary == "web: down (fail)"


def test_a_pending_incident_that_clears_is_dropped(feed: Feed) -> None:
    feed(probe="http", status="fail")
    step = feed(probe="http", status="ok")
    assert step.dropped and feed.incident is None and feed.actions == []


def test_after_counts_consecutive_results(feed: Feed) -> None:
    for _ in range(2):
        feed(probe="tcp", status="fail")
    assert feed.incident.state == "pending"
    feed(probe="tcp", status="fail")
    assert feed.incident.state == "open"
    assert feed.actions == []  # P3 opens no ticket and pages nobody


def test_it_resolves_after_two_clear_results_and_reopens_within_the_window(feed: Feed) -> None:
    for _ in range(3):
        feed(probe="http", status="fail")
        feed.clock.advance(minutes=1)
    opened = feed.incident
    assert opened.state == "open"
    feed(probe="http", status="ok")
    assert feed.incident.state == "open"
    feed(probe="http", status="ok")
    assert feed.incident.state == "resolved"
    assert feed.actions == ["open", "page", "resolve", "page_resolve"]
    feed.clock.advance(minutes=10)
    for _ in range(3):
        feed(probe="http", status="fail")
        feed.clock.advance(minutes=1)
    assert feed.incident.state == "open"
    assert feed.incident.id == opened.id and feed.incident.reopen_count == 1
    assert feed.actions[-2:] == ["reopen", "page"]


def test_a_reopening_carries_the_runbook_of_the_rule_that_reopened_it(feed: Feed) -> None:
    feed(probe="disk", metrics={"used_percent": 97}, labels={"path": "/"})
    assert feed.incident.runbook == "https://wiki.example/disk-critical"
    for _ in range(2):
        feed.clock.advance(minutes=1)
        feed(probe="disk", metrics={"used_percent": 50}, labels={"path": "/"})
    assert feed.incident.state == "resolved"
    feed.clock.advance(minutes=10)
    feed(probe="disk", metrics={"used_percent": 88}, labels={"path": "/"})
    assert feed.incident.state == "open" and feed.incident.rule == "disk-high"
    assert feed.incident.runbook == "https://wiki.example/disk-high"


def test_a_refire_after_the_window_is_a_new_incident(feed: Feed) -> None:
    for _ in range(3):
        feed(probe="http", status="fail")
        feed.clock.advance(minutes=1)
    feed(probe="http", status="ok")
    feed(probe="http", status="ok")
    feed.clock.advance(hours=2)
    step = feed(probe="http", status="fail")
    assert step.created and step.incident.state == "pending"


def test_a_probe_that_cannot_tell_neither_resolves_nor_reopens(feed: Feed) -> None:
    for _ in range(3):
        feed(probe="http", status="fail")
        feed.clock.advance(minutes=1)
    for _ in range(5):
        feed(probe="http", status="error", message="timeout")
    assert feed.incident.state == "open" and feed.incident.ok_streak == 0


def test_priority_rises_from_p3_to_p2_on_one_incident(feed: Feed) -> None:
    feed(probe="disk", metrics={"used_percent": 88}, labels={"path": "/var"})
    assert feed.incident.state == "open" and feed.incident.priority == "P3"
    assert feed.actions == []
    first = feed.incident.fingerprint
    feed(probe="disk", metrics={"used_percent": 96}, labels={"path": "/var"})
    assert feed.incident.priority == "P2" and feed.incident.fingerprint == first
    assert feed.actions == ["open"]  # P3 had no ticket; P2 opens one
    assert "raised" in feed.events
    feed.clock.advance(minutes=20)
    feed(probe="disk", metrics={"used_percent": 90}, labels={"path": "/var"})
    assert feed.incident.priority == "P3" and "lowered" in feed.events
    feed.clock.advance(minutes=15)  # a fall reaches the ticket once it has held for comment_every
    feed(probe="disk", metrics={"used_percent": 90}, labels={"path": "/var"})
    assert feed.actions[-1] == "priority"
    feed(probe="disk", metrics={"used_percent": 97}, labels={"path": "/var"})
    assert feed.actions[-1] == "priority"


def test_deadlines_follow_the_policy_and_the_business_clock(feed: Feed) -> None:
    friday_5pm_ist = datetime.fromisoformat("2026-11-20T11:30:00+00:00")
    feed.clock.now = friday_5pm_ist
    feed(probe="command", status="fail")
    assert feed.incident.priority == "P2"
    assert feed.incident.response_due.isoformat() == "2026-11-23T05:30:00+00:00"  # Mon 11:00 IST
    assert feed.incident.resolve_due.isoformat() == "2026-11-24T11:30:00+00:00"  # Tue 17:00 IST


def test_acknowledging_stops_nothing_but_is_recorded_and_tells_the_pager(feed: Feed) -> None:
    for _ in range(3):
        feed(probe="http", status="fail")
        feed.clock.advance(minutes=1)
    step = tracker.acknowledge(feed.incident, feed.policy, feed.clock(), by="asha", source="cli")
    assert step.incident.state == "acknowledged" and step.incident.acknowledged_by == "asha"
    assert [a.kind for a in step.actions] == ["page_ack", "comment"]


def test_a_response_breach_is_noted_once(feed: Feed) -> None:
    for _ in range(3):
        feed(probe="http", status="fail")
        feed.clock.advance(minutes=1)
    feed.clock.advance(hours=2)
    feed.tick()
    feed.clock.advance(minutes=5)
    feed.tick()
    assert feed.events.count("breach") == 1


def test_material_changes_are_commented_at_most_once_per_interval(feed: Feed) -> None:
    feed(probe="disk", metrics={"used_percent": 96}, labels={"path": "/"})
    assert feed.actions == ["open"]
    feed.clock.advance(minutes=1)
    feed(probe="disk", metrics={"used_percent": 97}, labels={"path": "/"})
    assert feed.actions == ["open"]  # too soon after the ticket
    feed.clock.advance(minutes=20)
    feed(probe="disk", metrics={"used_percent": 98}, labels={"path": "/"})
    assert feed.actions == ["open", "comment"]
    feed.clock.advance(minutes=1)
    feed(probe="disk", metrics={"used_percent": 99}, labels={"path": "/"})
    assert feed.actions == ["open", "comment"]


def test_tracker_functions_do_not_mutate_their_input(feed: Feed) -> None:
    feed(probe="disk", metrics={"used_percent": 96}, labels={"path": "/"})
    before = feed.incident.to_dict()
    tracker.tick(feed.incident, feed.policy, feed.clock() + timedelta(days=3))
    tracker.acknowledge(feed.incident, feed.policy, feed.clock(), by="x", source="api")
    assert feed.incident.to_dict() == before
