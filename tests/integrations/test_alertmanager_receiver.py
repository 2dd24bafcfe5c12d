"""Alerts through the receiver into the real engine and state file, on a clock the test
moves: repeats, regrouping, out-of-order and duplicate posts, restarts, silence, holds,
maintenance and dependencies."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.alertmanager import parse_post
from tests.support.helpers import Clock, config_from
from watcher.app.pipeline import Engine
from watcher.config.models import Config
from watcher.engine.incident import Incident
from watcher.store import Store
from watcher.web.alertmanager_api import AlertReceiver

CONFIG = """
site: acme
state: state.db
listen: null
rules: [default, alertmanager, site.yml]
alertmanager: {token: "t0ken", resolve_silent_after: 12h}
targets:
  - name: core
    host: 127.9.0.1
  - name: db1
    host: 127.9.0.7
    depends_on: [core]
"""


def post(*alerts: dict[str, Any], group: str = '{}:{alertname="DiskFull"}') -> bytes:
    return json.dumps(
        {
            "version": "4",
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": "watcher",
            "groupKey": group,
            "truncatedAlerts": 0,
            "alerts": list(alerts),
        }
    ).encode()


def alert(
    status: str = "firing",
    *,
    name: str = "DiskFull",
    instance: str = "127.9.0.7:9100",
    starts: str = "2026-11-23T03:50:00Z",
    ends: str = "0001-01-01T00:00:00Z",
    severity: str = "critical",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "instance": instance, "severity": severity, **labels},
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://127.0.0.1:9090/graph",
    }


class World:
    """Config, state file, engine and receiver; ``restart()`` builds them again."""

    def __init__(self, directory: Path, rules: str = "rules: []\n", extra: str = "") -> None:
        self.directory = directory
        self.clock = Clock()
        self.config: Config = config_from(directory, CONFIG + extra, extra={"site.yml": rules})
        self.dropped = False
        self._build()

    def _build(self) -> None:
        self.store = Store(self.config.state_path)
        self.engine = Engine(self.config, self.store, clock=self.clock)
        self.receiver = AlertReceiver(
            lambda: self.config,
            self.store,
            clock=self.clock,
            on_results=self._apply,
            admit=self.engine.admit,
        )
        self.engine.add_ticker(self.receiver.due_results)

    def _apply(self, results: list) -> None:
        if not self.dropped:
            self.engine.process(results)

    def restart(self, *, resume: bool = True) -> None:
        self.store.close()
        self.dropped = False
        self._build()
        if resume:
            self.receiver.resume()

    def send(self, raw: bytes) -> dict[str, int]:
        settings = self.config.model.alertmanager
        assert settings is not None
        return self.receiver.receive(parse_post(raw), settings).as_dict()

    def incidents(self) -> list[Incident]:
        return sorted(self.store.incidents(), key=lambda i: i.id or 0)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_a_firing_alert_opens_one_incident_on_the_configured_target_by_its_host(
    world: World,
) -> None:
    assert world.send(post(alert())) == {"applied": 1, "duplicates": 0, "stale": 0}
    (incident,) = world.incidents()
    assert (incident.target, incident.state, incident.priority) == ("db1", "open", "P1")
    assert incident.summary == "db1: DiskFull on 127.9.0.7:9100"
    assert "Source: http://127.0.0.1:9090/graph" in incident.evidence


def test_repeats_and_a_move_to_another_group_leave_one_incident(world: World) -> None:
    world.send(post(alert()))
    for minutes in (5, 10, 15):
        world.clock.advance(minutes=minutes)
        assert world.send(post(alert()))["duplicates"] == 1
    world.send(post(alert(), group='{}:{instance="127.9.0.7:9100"}'))  # regrouped
    (incident,) = world.incidents()
    assert incident.state == "open" and incident.occurrences >= 4


def test_resolved_resolves_at_once_and_a_late_firing_of_that_episode_is_stale(
    world: World,
) -> None:
    world.send(post(alert()))
    world.clock.advance(minutes=3)
    world.send(post(alert("resolved", ends="2026-11-23T04:02:00Z")))
    (incident,) = world.incidents()
    assert incident.state == "resolved"
    world.clock.advance(seconds=20)
    assert world.send(post(alert()))["stale"] == 1  # a retried delivery from before
    assert [i.state for i in world.incidents()] == ["resolved"]
    assert world.send(post(alert("resolved")))["duplicates"] == 1


def test_a_resolve_of_an_older_episode_leaves_the_new_one_open(world: World) -> None:
    world.send(post(alert(starts="2026-11-23T03:00:00Z")))
    world.send(post(alert("resolved", starts="2026-11-23T03:00:00Z")))
    world.clock.advance(minutes=2)
    world.send(post(alert(starts="2026-11-23T04:01:00Z")))  # fires again: a new episode
    assert world.send(post(alert("resolved", starts="2026-11-23T03:00:00Z")))["stale"] == 1
    assert [i.state for i in world.incidents()] == ["open"]  # reopened within reopen_within


def test_a_firing_of_the_same_episode_long_after_its_resolve_fires_again(world: World) -> None:
    world.send(post(alert()))
    world.send(post(alert("resolved")))
    world.clock.advance(minutes=20)  # past STALE_WINDOW: Prometheus still fires it
    assert world.send(post(alert()))["applied"] == 1
    assert [i.state for i in world.incidents()] == ["open"]


def test_a_restart_between_firing_and_resolved_keeps_one_incident(world: World) -> None:
    world.send(post(alert()))
    (before,) = world.incidents()
    world.restart()
    world.clock.advance(minutes=5)
    assert world.send(post(alert()))["duplicates"] == 1
    world.send(post(alert("resolved")))
    (after,) = world.incidents()
    assert after.id == before.id and after.state == "resolved"


def test_a_resolve_accepted_just_before_a_crash_is_applied_after_the_restart(
    world: World,
) -> None:
    world.send(post(alert()))
    world.dropped = True  # the engine never sees what follows: the process dies here
    world.send(post(alert("resolved")))
    assert world.incidents()[0].state == "open"
    world.restart()  # resume() feeds the kept states in again
    assert [i.state for i in world.incidents()] == ["resolved"]


def test_an_alert_that_goes_silent_resolves_after_the_silence_and_says_why(
    world: World,
) -> None:
    world.send(post(alert()))
    world.clock.advance(hours=11, minutes=59)
    world.engine.tick()
    assert world.incidents()[0].state == "open"
    world.clock.advance(minutes=2)
    world.engine.tick()
    (incident,) = world.incidents()
    assert incident.state == "resolved"
    (resolved,) = [e for e in world.store.events(incident.id or 0) if e.kind == "resolved"]
    assert "Alertmanager stopped sending this firing alert without resolving it" in resolved.message
    assert "12h" in resolved.message
    # heard again later: it fires anew, in the same incident if within reopen_within
    world.clock.advance(minutes=5)
    assert world.send(post(alert()))["applied"] == 1
    assert world.incidents()[-1].state == "open"


def test_alerts_naming_watchers_own_incidents_are_not_taken_back_in(world: World) -> None:
    echo = alert(name="WatcherIncident", watcher_fingerprint="w123")
    assert world.send(post(echo))["stale"] == 1
    assert world.incidents() == []


def test_a_hold_in_a_site_pack_is_met_by_the_receivers_own_repeats(tmp_path: Path) -> None:
    rules = """
rules:
  - name: alert-critical
    probe: alertmanager
    when: "failed and severity == 'critical'"
    for: 5m
    priority: P1
"""
    w = World(tmp_path, rules)
    try:
        w.send(post(alert(severity="critical")))
        assert [i.priority for i in w.incidents() if i.state == "open"] == ["P4"]  # alert-firing
        w.clock.advance(minutes=5, seconds=1)
        w.engine.tick()  # the receiver re-emits firing alerts each interval
        assert [i.priority for i in w.incidents() if i.state == "open"] == ["P1"]
    finally:
        w.close()


def test_a_maintenance_window_on_the_target_holds_its_alerts_back(tmp_path: Path) -> None:
    extra = """
maintenance:
  - {name: db1-upgrade, targets: [db1], start: "2026-11-23 00:00", end: "2026-11-23 23:00"}
"""
    w = World(tmp_path, extra=extra)
    try:
        w.send(post(alert()))
        (incident,) = w.incidents()
        assert incident.suppressed == "maintenance" and not incident.ticketed
    finally:
        w.close()


def test_a_child_alert_is_held_while_its_parent_target_is_down(world: World) -> None:
    down = alert(name="HostDown", instance="127.9.0.1:9100")
    world.send(post(down, alert()))
    by_target = {i.target: i for i in world.incidents()}
    assert by_target["core"].suppressed is None
    assert by_target["db1"].suppressed == "parent"


def test_an_unknown_target_gets_its_own_incident_under_its_host_name(world: World) -> None:
    world.send(post(alert(instance="cache3.lan:9121", severity="warning")))
    (incident,) = world.incidents()
    assert (incident.target, incident.priority) == ("cache3.lan", "P3")
    world.restart()
    world.send(post(alert("resolved", instance="cache3.lan:9121", severity="warning")))
    assert [i.state for i in world.incidents()] == ["resolved"]


def test_a_post_with_every_alert_a_repeat_changes_nothing_in_the_state_file(
    world: World,
) -> None:
    raw = post(alert(), alert(name="LoadHigh", severity="warning"))
    world.send(raw)
    before = copy.deepcopy([(i.id, i.state, i.priority) for i in world.incidents()])
    assert world.send(raw) == {"applied": 0, "duplicates": 2, "stale": 0}
    assert [(i.id, i.state, i.priority) for i in world.incidents()] == before


def test_a_watcher_down_longer_than_the_silence_does_not_resolve_alerts_as_lost(
    world: World,
) -> None:
    world.send(post(alert()))
    world.clock.advance(hours=13)  # down: Alertmanager's repeats had nowhere to go
    world.restart()
    world.engine.tick()
    assert [i.state for i in world.incidents()] == ["open"]
    world.clock.advance(hours=12, minutes=1)  # silent for the whole silence after the start
    world.engine.tick()
    assert [i.state for i in world.incidents()] == ["resolved"]


def test_ended_alerts_are_forgotten_after_a_day(world: World) -> None:
    world.send(post(alert()))
    world.send(post(alert("resolved")))
    world.clock.advance(hours=25)
    world.engine.tick()
    assert world.store.query("SELECT count(*) AS n FROM alertmanager_alerts")[0]["n"] == 0
    assert world.receiver.states() == []


def test_alerts_on_the_members_of_an_outage_group_make_one_outage(tmp_path: Path) -> None:
    extra = """
  - name: web1
    host: 127.9.0.11
    labels: {role: web}
  - name: web2
    host: 127.9.0.12
    labels: {role: web}
outages:
  - {name: web-farm, labels: {role: web}, min_failing: 2, priority: P1}
"""
    w = World(tmp_path, extra=extra)
    try:
        w.send(
            post(
                alert(name="HttpDown", instance="127.9.0.11:9115"),
                alert(name="HttpDown", instance="127.9.0.12:9115"),
            )
        )
        by_target = {i.target: i for i in w.incidents()}
        assert by_target["web-farm"].state == "open"
        assert by_target["web-farm"].members == ["web1", "web2"]
        assert by_target["web1"].suppressed == "outage" and by_target["web2"].suppressed == "outage"
    finally:
        w.close()


def test_watcher_explain_shows_an_alert_target_only_alertmanager_names(world: World) -> None:
    world.send(post(alert(instance="cache3.lan:9121", severity="warning")))
    proc = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "explain", "cache3.lan", "-c", "watcher.yml"],
        cwd=world.directory,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "alertmanager DiskFull warning: FAIL DiskFull on cache3.lan:9121" in proc.stdout
    assert "rule alert-warning [P3]" in proc.stdout and "HOLDS" in proc.stdout
