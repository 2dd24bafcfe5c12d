"""Business-hours SLA clocks across weekends and holidays (Mon-Fri 08:00-18:00 IST)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from watcher.engine.sla import BusinessCalendar, Span, deadline, parse_span

IST = ZoneInfo("Asia/Kolkata")
CAL = BusinessCalendar(holidays=frozenset({date(2026, 11, 30)}))  # a Monday holiday


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=IST)


def test_business_hours_skip_the_weekend() -> None:
    friday_5pm = at(20, 17)
    assert deadline(friday_5pm, parse_span("4h"), "business", CAL).astimezone(IST) == at(23, 11)


def test_working_days_skip_weekend_and_holiday() -> None:
    friday_5pm = at(27, 17)  # Mon 30 Nov is a holiday
    # 2 working days = 20 business hours: Fri 1h, Tue 1 Dec 10h, Wed 2 Dec 9h -> Wed 17:00
    assert deadline(friday_5pm, parse_span("2 working days"), "business", CAL).astimezone(
        IST
    ) == at(2, 17, month=12)


def test_a_start_outside_hours_counts_from_the_next_opening() -> None:
    saturday = at(21, 10)
    assert deadline(saturday, parse_span("1 working day"), "business", CAL).astimezone(IST) == at(
        23, 18
    )
    early_monday = at(23, 6, 30)
    assert deadline(early_monday, parse_span("2h"), "business", CAL).astimezone(IST) == at(23, 10)


def test_a_24x7_clock_counts_wall_time() -> None:
    friday_5pm = at(20, 17)
    assert deadline(friday_5pm, parse_span("4h"), "24x7", CAL).astimezone(IST) == at(20, 21)


def test_case_by_case_has_no_deadline() -> None:
    assert parse_span("case by case") is None
    assert deadline(at(20, 17), None, "business", CAL) is None


def test_business_seconds_between() -> None:
    assert CAL.between(at(27, 17), at(1, 10, month=12)) == pytest.approx(3 * 3600)
    assert CAL.is_open(at(23, 9)) and not CAL.is_open(at(21, 9)) and not CAL.is_open(at(30, 9))


def test_custom_hours_and_days() -> None:
    six_days = BusinessCalendar(days=frozenset(range(6)), start=time(9), end=time(13))
    assert deadline(at(21, 12), Span(seconds=2 * 3600), "business", six_days).astimezone(IST) == at(
        23, 10
    )
