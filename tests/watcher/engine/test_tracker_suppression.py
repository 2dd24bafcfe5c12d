"""The tracker's held notifications as pure functions: what is owed, what is told, when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules.engine import RuleSet
from tests.support.helpers import Clock, config_from, result
from watcher.engine import tracker
from watcher.engine.flapping import FlappingConfig, change_share
from watcher.engine.incident import Incident
from watcher.engine.tracker import Policy, Step, Suppression

RULES = """
rules:
  - {name: web-down, probe: http, when: "failed and reason != 'slow'", priority: P1, summary: "{target}: down"}
  - {name: web-slow, probe: http, when: "failed and reason == 'slow'", priority: P2, summary: "{target}: slow"}
  - {name: port-down, probe: tcp, when: failed, priority: P2, summary: "{target}: port down"}
"""
WINDOW = Suppression("maintenance", "maintenance 'upgrade' until 11:00")


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    config = config_from(
        tmp_path, "site: acme\nrules: [default, site.yml]\n", extra={"site.yml": RULES}
    )
    ours = [r for r in config.rules.rules if r.name in {"web-down", "web-slow", "port-down"}]
    return Policy(
        rules=RuleSet(config.rules.priorities, ours, site="acme"), calendar=config.calendar
    )


class Feed:
    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.incident: Incident | None = None
        self.actions: list[str] = []
        self.events: list[str] = []

    def __call__(self, quiet: Suppression | None = None, probe: str = "http", **kw: object) -> Step:
        r = result(probe=probe, at=self.clock(), **kw)  # type: ignore[arg-type]
        step = tracker.observe(
            self.incident,
            r,
            self.policy.rules.evaluate(r, {}, None),
            self.policy,
            self.clock(),
            quiet=quiet,
        )
        return self._keep(step)

    def tick(self, quiet: Suppression | None = None) -> Step:
        assert self.incident is not None
        return self._keep(tracker.tick(self.incident, self.policy, self.clock(), quiet))

    def _keep(self, step: Step) -> Step:
        if step.incident is not None and step.incident.id is None:
            step.incident.id = 1
        self.incident = None if step.dropped else step.incident
        self.actions += [a.kind for a in step.actions]
        self.events += [e.kind for e in step.events]
        return step


@pytest.fixture
def feed(policy: Policy) -> Feed:
    return Feed(policy, Clock())


def test_an_incident_held_from_its_start_is_told_when_the_hold_ends_with_deadlines_from_then(
    feed: Feed,
) -> None:
    feed(WINDOW, status="fail")
    feed.clock.advance(minutes=30)
    feed(WINDOW, status="fail")
    feed.tick(WINDOW)
    assert feed.actions == [] and feed.incident.state == "open" and not feed.incident.notified
    released_at = feed.clock.advance(minutes=30)
    feed.tick(None)
    assert feed.actions == ["open", "page"]
    assert feed.incident.notified_at == released_at
    assert feed.incident.response_due == released_at + timedelta(hours=2)
    assert feed.events == ["suppressed", "opened", "released", "paged"]


def test_an_incident_that_recovered_while_held_is_never_told(feed: Feed) -> None:
    feed(WINDOW, status="fail")
    feed.clock.advance(minutes=1)
    feed(WINDOW, status="ok")
    feed.clock.advance(minutes=1)
    feed.tick(None)  # released with its last result ok: it waits
    assert feed.actions == [] and feed.incident.suppressed is None
    feed(None, status="ok")
    assert feed.incident.state == "resolved" and feed.actions == []


def test_a_raise_during_a_hold_reaches_the_ticket_and_the_hotline_afterwards(feed: Feed) -> None:
    feed(None, status="fail", reason="slow")
    assert feed.incident.priority == "P2" and feed.actions == ["open"]  # a ticket, no page
    feed(WINDOW, status="fail", reason="refused")
    assert feed.incident.priority == "P1" and feed.actions == ["open"]  # raised, nobody told yet
    feed.clock.advance(minutes=5)
    feed.tick(None)
    assert feed.actions == ["open", "priority", "page"]


def test_resolution_is_never_held_but_a_held_reopening_is_never_resolved(feed: Feed) -> None:
    feed(None, status="fail")
    assert feed.actions == ["open", "page"]
    feed(WINDOW, status="ok")
    feed(WINDOW, status="ok")
    assert feed.incident.state == "resolved" and feed.actions[-2:] == ["resolve", "page_resolve"]
    feed(WINDOW, status="fail")  # refires within the window: reopening held
    assert feed.incident.state == "open" and feed.actions[-1] == "page_resolve"
    feed(WINDOW, status="ok")
    feed(WINDOW, status="ok")  # and resolves again before anyone was told
    assert feed.incident.state == "resolved"
    assert feed.actions == ["open", "page", "resolve", "page_resolve"]


def test_a_reopening_held_by_a_window_is_sent_when_it_ends(feed: Feed) -> None:
    feed(None, status="fail")
    feed(None, status="ok")
    feed(None, status="ok")
    feed(WINDOW, status="fail")
    assert feed.actions == ["open", "page", "resolve", "page_resolve"]
    feed(None, status="fail")
    assert feed.actions[-2:] == ["reopen", "page"]


def test_a_hold_pauses_the_deadlines_repages_and_reminders_of_what_was_told(feed: Feed) -> None:
    feed(None, status="fail")
    due = feed.incident.response_due, feed.incident.resolve_due
    feed.clock.advance(minutes=10)
    feed.tick(WINDOW)
    for _ in range(12):  # six hours in the window: past both deadlines
        feed.clock.advance(minutes=30)
        feed.tick(WINDOW)
    assert (
        feed.actions == ["open", "page"]
        and feed.incident.breaches == []
        and feed.incident.page_count == 1
    )
    feed.tick(None)
    held = timedelta(hours=6)
    assert (feed.incident.response_due, feed.incident.resolve_due) == (due[0] + held, due[1] + held)
    assert feed.actions == [
        "open",
        "page",
    ]  # the repage timer stood still too: 10 of 30 minutes used
    feed.clock.advance(minutes=20)
    feed.tick(None)
    assert feed.actions == ["open", "page", "page", "comment"]  # a repage, and the first reminder


def test_a_business_clock_deadline_pauses_only_for_the_business_hours_held(policy: Policy) -> None:
    feed = Feed(policy, Clock(datetime(2026, 11, 23, 4, 0, tzinfo=UTC)))  # Monday 09:30 IST
    feed(None, probe="tcp", status="fail")  # P2, response in 4 business hours
    assert feed.incident.response_due == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 13:30 IST
    feed.clock.advance(hours=1)
    feed.tick(WINDOW)  # held 10:30 - 19:30 IST: 7.5 business hours (until 18:00)
    feed.clock.advance(hours=9)
    feed.tick(None)
    # 3 business hours were left at 10:30; they run from Tuesday 08:00
    assert feed.incident.response_due == datetime(
        2026, 11, 24, 5, 30, tzinfo=UTC
    )  # Tuesday 11:00 IST


def test_acknowledged_while_held_is_ticketed_at_the_end_but_not_paged(feed: Feed) -> None:
    feed(WINDOW, status="fail")
    step = tracker.acknowledge(feed.incident, feed.policy, feed.clock(), by="asha", source="cli")
    feed._keep(step)
    assert feed.actions == []  # nobody was told, so nobody hears of the acknowledgement
    feed(None, status="fail")
    assert feed.actions == ["open"]


def test_a_flapping_incident_comments_once_and_does_not_resolve(feed: Feed) -> None:
    for n in range(12):
        feed(None, status="fail" if n % 2 == 0 else "ok")
    assert feed.incident.flapping and feed.actions == ["open", "page", "comment"]
    for _ in range(6):
        feed(None, status="ok")
    assert feed.incident.state == "open"
    feed(None, status="ok")
    assert feed.incident.state == "resolved" and feed.actions[-2:] == ["resolve", "page_resolve"]
    assert feed.events.count("flapping") == 1 and feed.events.count("stable") == 1


@pytest.mark.parametrize(
    ("history", "share"),
    [
        ([1, 0, 1, 0, 1, 0], 5 / 9),
        ([1] * 10, 0.0),
        ([0, 1] * 5, 1.0),
        ([1, 0], 1 / 9),
        ([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1], 5 / 9),
    ],
)
def test_the_change_share_counts_changes_in_the_last_window_over_the_whole_window(
    history: list[int], share: float
) -> None:
    assert change_share(history, 10) == pytest.approx(share)


def test_flapping_thresholds_must_leave_room_for_hysteresis() -> None:
    with pytest.raises(ValueError, match="low \\(50\\) must be below high \\(40\\)"):
        FlappingConfig(high=40, low=50)
    assert FlappingConfig(enabled=False).settings().enabled is False
