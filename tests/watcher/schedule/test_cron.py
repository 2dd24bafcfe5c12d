"""Cron schedules: fields as crontab(5) reads them, next and previous runs in a timezone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.schedule.cron import parse_cron


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("* * * * *", utc(2026, 11, 23, 4, 0, 30), utc(2026, 11, 23, 4, 1)),
        ("*/15 * * * *", utc(2026, 11, 23, 4, 0), utc(2026, 11, 23, 4, 15)),
        ("0 */6 * * *", utc(2026, 11, 23, 7, 0), utc(2026, 11, 23, 12, 0)),
        ("5,35 9-17 * * *", utc(2026, 11, 23, 17, 40), utc(2026, 11, 24, 9, 5)),
        ("0 0 1 * *", utc(2026, 11, 23), utc(2026, 12, 1)),
        ("0 0 29 feb *", utc(2026, 3, 1), utc(2028, 2, 29)),
        ("30 2 * * sun", utc(2026, 11, 23), utc(2026, 11, 29, 2, 30)),
        ("30 2 * * 7", utc(2026, 11, 23), utc(2026, 11, 29, 2, 30)),
        ("0 9 * jan-mar mon", utc(2026, 11, 23), utc(2027, 1, 4, 9, 0)),
        ("@hourly", utc(2026, 11, 23, 4, 0), utc(2026, 11, 23, 5, 0)),
        ("@daily", utc(2026, 11, 23, 4, 0), utc(2026, 11, 24)),
        # Both day fields restricted: either one matches (the 1st, or any Friday).
        ("0 0 1 * fri", utc(2026, 11, 23), utc(2026, 11, 27)),
        ("0 0 */10 * *", utc(2026, 11, 23), utc(2026, 12, 1)),
    ],
)
def test_the_next_run(schedule: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(schedule).next_after(after) == expected


def test_the_previous_run_is_at_or_before() -> None:
    cron = parse_cron("30 2 * * mon-fri")
    assert cron.previous_before(utc(2026, 11, 23, 2, 30)) == utc(2026, 11, 23, 2, 30)
    assert cron.previous_before(utc(2026, 11, 22, 12, 0)) == utc(
        2026, 11, 20, 2, 30
    )  # Sunday -> Friday


def test_a_timezone_shifts_the_runs() -> None:
    cron = parse_cron("30 2 * * *", "Asia/Kolkata")
    assert cron.next_after(utc(2026, 11, 23, 4, 0)) == utc(2026, 11, 23, 21, 0)


def test_daylight_saving_gaps_are_skipped_and_repeats_run_once() -> None:
    cron = parse_cron("30 2 * * *", "Europe/Berlin")
    # 29 March 2026: 02:00 -> 03:00, so 02:30 does not exist that day.
    assert cron.next_after(utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 30, 0, 30)
    # 25 October 2026: 02:30 happens twice; it runs at the first.
    first = cron.next_after(utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)
    assert cron.next_after(first) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("* * * *", "five fields"),
        ("60 * * * *", "outside the minute field's range"),
        ("* 24 * * *", "outside the hour field's range"),
        ("*/0 * * * *", "step '0'"),
        ("10-5 * * * *", "runs backwards"),
        ("* * * foo *", "not a number or a name like jan"),
        ("0 0 31 feb *", "never runs"),
        ("a,b * * * *", "not a number"),
    ],
)
def test_bad_schedules_say_what_is_wrong(schedule: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_cron(schedule)


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        parse_cron("* * * * *", "Mars/Olympus")
