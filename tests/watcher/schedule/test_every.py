"""Report schedules: slots in a timezone, the previous slot, and the errors people see."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from watcher.schedule.every import parse_every

IST = ZoneInfo("Asia/Kolkata")


def _ist(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=IST)


def test_a_weekly_slot_is_monday_morning_local_time() -> None:
    every = parse_every("mon 08:00")
    assert every.last_slot(_ist(23, 7, 59), IST) == _ist(16, 8)
    assert every.last_slot(_ist(23, 8), IST) == _ist(23, 8)
    assert every.next_slot(_ist(23, 8), IST) == _ist(30, 8)
    assert every.previous(_ist(23, 8), IST) == _ist(16, 8)
    # 02:30 UTC is 08:00 IST
    assert every.last_slot(datetime(2026, 11, 23, 2, 30, tzinfo=UTC), IST) == _ist(23, 8)


@pytest.mark.parametrize(
    ("text", "now", "last", "previous"),
    [
        ("mon,thu 09:30", _ist(27, 12), _ist(26, 9, 30), _ist(23, 9, 30)),
        ("mon-fri 07:00", _ist(28, 12), _ist(27, 7), _ist(26, 7)),  # Saturday: Friday's
        ("sat-mon 07:00", _ist(25, 12), _ist(23, 7), _ist(22, 7)),  # a range across Sunday
        ("weekdays 07:00", _ist(23, 6), _ist(20, 7), _ist(19, 7)),
        ("daily 06:15", _ist(23, 6), _ist(22, 6, 15), _ist(21, 6, 15)),
        ("18:00", _ist(23, 19), _ist(23, 18), _ist(22, 18)),
        ("monthly 1 08:00", _ist(23, 9), _ist(1, 8), datetime(2026, 10, 1, 8, tzinfo=IST)),
        ("Monthly  15   8:00", _ist(23, 9), _ist(15, 8), datetime(2026, 10, 15, 8, tzinfo=IST)),
    ],
)
def test_schedules_people_write(
    text: str, now: datetime, last: datetime, previous: datetime
) -> None:
    every = parse_every(text)
    assert every.last_slot(now, IST) == last
    assert every.previous(last, IST) == previous


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("mon", "does not end with a time of day"),
        ("mon 8am", "does not end with a time of day"),
        ("mon 25:00", "does not end with a time of day"),
        ("moonday 08:00", "'moonday' is not a weekday"),
        ("monthly 31 08:00", "a monthly report runs on day 1 to 28"),
        ("mon thu 08:00", "write one day list and a time"),
        ("", "write a schedule like"),
    ],
)
def test_a_bad_schedule_says_how_to_write_it(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_every(text)
