"""Maintenance windows as pure functions of (window, now), and the alert-quality config checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.helpers import config_from
from watcher.config.models import ConfigError
from watcher.engine.maintenance import MaintenanceConfig, Window, parse_moment, window_from_request

IST = "Asia/Kolkata"


def window(tz: str = IST, **spec: object) -> Window:
    config = MaintenanceConfig.model_validate({"name": "w", "targets": ["*"], **spec})
    return Window(config, config.timezone or tz)


def at(text: str, tz: str = IST) -> datetime:
    return parse_moment(text, tz, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_one_off_window_is_on_from_its_start_until_just_before_its_end() -> None:
    w = window(start="2026-11-28 22:00", end="2026-11-29 02:00")
    assert w.span_at(at("2026-11-28 21:59")) is None
    assert w.span_at(at("2026-11-28 22:00")) == (at("2026-11-28 22:00"), at("2026-11-29 02:00"))
    assert w.span_at(at("2026-11-29 01:59")) is not None
    assert w.span_at(at("2026-11-29 02:00")) is None
    assert (
        window(start="2026-11-28 22:00", duration="90m").span_at(at("2026-11-28 23:29")) is not None
    )
    assert (
        window(start="2026-11-28T16:30:00+00:00", duration="1h").span_at(at("2026-11-28 22:30"))
        is not None
    )


def test_a_cron_window_is_on_for_its_duration_after_each_run() -> None:
    w = window(cron="0 2 * * mon-fri", duration="1h")
    assert w.span_at(at("2026-11-23 02:30")) == (at("2026-11-23 02:00"), at("2026-11-23 03:00"))
    assert w.span_at(at("2026-11-23 03:00")) is None
    assert w.span_at(at("2026-11-22 02:30")) is None  # a Sunday
    assert w.next_span(at("2026-11-21 12:00")) == (at("2026-11-23 02:00"), at("2026-11-23 03:00"))


def test_a_weekly_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    w = window(days=["fri"], **{"from": "22:00", "to": "06:00"})
    assert w.span_at(at("2026-11-27 23:00")) == (
        at("2026-11-27 22:00"),
        at("2026-11-28 06:00"),
    )  # Friday night
    assert w.span_at(at("2026-11-28 05:59")) is not None  # Saturday morning, still Friday's
    assert w.span_at(at("2026-11-28 06:00")) is None
    assert w.span_at(at("2026-11-28 23:00")) is None  # Saturday night: not a Friday
    whole_days = window(days=["sat", "sun"], **{"from": "00:00", "to": "24:00"})
    assert (
        whole_days.span_at(at("2026-11-29 23:59")) is not None
        and whole_days.span_at(at("2026-11-30 00:00")) is None
    )


def test_a_weekly_window_keeps_wall_clock_times_across_daylight_saving() -> None:
    # Europe/Berlin springs forward at 02:00 on Sunday 2026-03-29: 01:00-04:00 lasts two hours
    w = window("Europe/Berlin", days=["sun"], **{"from": "01:00", "to": "04:00"})
    start, end = w.span_at(at("2026-03-29 03:30", "Europe/Berlin"))
    assert (end - start).total_seconds() == 2 * 3600


def test_a_window_covers_targets_by_glob_and_labels_and_both_must_match() -> None:
    by_name = window(targets=["mail*", "db1"], cron="@daily", duration="1h")
    assert (
        by_name.covers("mail2", {}) and by_name.covers("db1", {}) and not by_name.covers("db2", {})
    )
    both = window(targets=["mail*"], labels={"site": "pune"}, cron="@daily", duration="1h")
    assert both.covers("mail1", {"site": "pune"}) and not both.covers("mail1", {"site": "goa"})
    assert not both.covers("web1", {"site": "pune"})


def test_requests_start_now_and_take_relative_times() -> None:
    now = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    w = window_from_request(
        {"name": "x", "targets": ["a"], "duration": "2h"}, default_timezone=IST, now=now
    )
    assert (w.start, w.duration.total_seconds()) == (now, 7200)
    w = window_from_request(
        {"name": "x", "targets": ["a"], "start": "+1h", "end": "+3h"}, default_timezone=IST, now=now
    )
    assert w.end.hour == 7
    with pytest.raises(ValueError, match="needs targets"):
        window_from_request({"name": "x", "duration": "1h"}, default_timezone=IST, now=now)
    with pytest.raises(ValueError, match="end: must be after start:"):
        window_from_request(
            {"name": "x", "targets": ["a"], "start": "+2h", "end": "+1h"},
            default_timezone=IST,
            now=now,
        )


BASE = """
site: acme
state: state.db
targets:
  - {name: router, probes: [{tcp: {host: 127.0.0.1, port: 9}}]}
  - {name: mail1, labels: {role: mail}, depends_on: [router], probes: [{tcp: {host: 127.0.0.1, port: 9}}]}
  - {name: mail2, labels: {role: mail}, depends_on: [router/tcp], probes: [{tcp: {host: 127.0.0.1, port: 9}}]}
"""


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("maintenance: [{name: a, targets: [mail1], cron: '0 2 * * *'}]", "needs duration:"),
        (
            "maintenance: [{name: a, targets: [mail1], start: '2026-11-28 22:00', cron: '0 2 * * *', duration: 1h}]",
            "not start and cron",
        ),
        (
            "maintenance: [{name: a, targets: [mail1], from: '22:00', to: '22:00'}]",
            "are the same time",
        ),
        (
            "maintenance: [{name: a, targets: [mail1], from: '25:00', to: '01:00'}]",
            "not a time of day",
        ),
        (
            "maintenance: [{name: a, targets: [nosuch], start: '2026-11-28 22:00', duration: 1h}]",
            "'nosuch' matches no target",
        ),
        (
            "maintenance: [{name: a, targets: [mail1], start: 'soon', duration: 1h}]",
            "not a date and time",
        ),
        (
            "maintenance: [{name: a, targets: [mail1], duration: 1h, start: '2026-11-28 22:00'},"
            " {name: a, targets: [mail2], duration: 1h, start: '2026-11-28 22:00'}]",
            "two windows are named 'a'",
        ),
        ("outages: [{name: mail, labels: {role: mail}}]", "needs min_failing"),
        (
            "outages: [{name: mail, labels: {role: mail}, min_failing: 1}]",
            "greater than or equal to 2",
        ),
        (
            "outages: [{name: mail, labels: {role: mail}, min_failing: 2, priority: P7}]",
            "priority P7 is not defined",
        ),
        (
            "outages: [{name: mail, labels: {role: nosuch}, min_failing: 2}]",
            "groups 0 targets; it needs at least 2",
        ),
        (
            "outages: [{name: router, labels: {role: mail}, min_failing: 2}]",
            "a target is also named 'router'",
        ),
        (
            "outages: [{name: mail, labels: {role: mail}, min_failing: 2, summary: '{target} down'}]",
            "{target} is not an outage field",
        ),
        ("flapping: {high: 20, low: 30}", "low (30) must be below high (20)"),
        ("flapping: {window: 2}", "greater than or equal to 3"),
    ],
)
def test_alert_quality_config_mistakes_are_refused_with_a_reason(
    tmp_path: Path, extra: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from(tmp_path, BASE + extra + "\n")
    assert problem in str(caught.value)


def test_a_depends_on_loop_is_refused_naming_the_loop(tmp_path: Path) -> None:
    text = BASE.replace("- {name: router, probes", "- {name: router, depends_on: [mail2], probes")
    with pytest.raises(ConfigError) as caught:
        config_from(tmp_path, text)
    assert "depends_on loops: router -> mail2 -> router" in str(caught.value)
    assert str(caught.value).count("loops") == 1


def test_a_good_alert_quality_config_loads(tmp_path: Path) -> None:
    config = config_from(
        tmp_path,
        BASE
        + """
maintenance:
  - {name: nightly, labels: {role: mail}, cron: "0 2 * * *", duration: 1h, timezone: UTC}
  - {name: weekend, targets: [router], days: [sat, sun], from: 22:00, to: 06:00}
outages:
  - {name: mail-cluster, labels: {role: mail}, min_percent: 50, window: 10m, priority: P2}
flapping: {window: 20, high: 40, low: 20}
""",
    )
    m = config.model
    assert [w.name for w in m.maintenance] == ["nightly", "weekend"]
    assert m.maintenance[1].from_ == "22:00"  # YAML 1.1 reads 22:00 as 1320; taken back
    assert m.outages[0].triggered(1, 2) is False and m.outages[0].triggered(2, 4) is True
    assert m.flapping.settings().high == 0.4
