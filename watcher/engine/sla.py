"""SLA clocks: business hours with holidays, and deadlines on a ``24x7`` or ``business`` clock.

Pure functions of their arguments; the clock is always passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from watcher.core.durations import parse_duration

__all__ = ["BusinessCalendar", "Span", "parse_span", "deadline", "Clock"]

Clock = Literal["24x7", "business"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Span:
    """A response or resolution time: plain time, working days, or both."""

    seconds: float = 0.0
    working_days: float = 0.0

    def __str__(self) -> str:
        parts = []
        if self.working_days:
            n = f"{self.working_days:g}"
            parts.append(f"{n} working day{'s' if self.working_days != 1 else ''}")
        if self.seconds:
            from watcher.core.durations import format_duration

            parts.append(format_duration(self.seconds))
        return " ".join(parts) or "0s"


_WORKING = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+(?:working|business)\s+days?\s*$", re.IGNORECASE)
_CASE_BY_CASE = re.compile(r"^\s*(case[ -]by[ -]case|none|-)\s*$", re.IGNORECASE)


def parse_span(value: object) -> Span | None:
    """``4h``, ``2 working days``, ``case by case`` (no deadline) or null."""
    if value is None or (isinstance(value, str) and _CASE_BY_CASE.match(value)):
        return None
    if isinstance(value, Span):
        return value
    if isinstance(value, str):
        match = _WORKING.match(value)
        if match:
            span = Span(working_days=float(match.group(1)))
            if not span.working_days <= MAX_WORKING_DAYS:
                raise ValueError(_TOO_LONG.format(value=value))
            return span
    try:
        span = Span(seconds=parse_duration(value).total_seconds())
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time; write 4h, 2 working days, or 'case by case'"
        ) from None
    if span.seconds > MAX_SPAN.total_seconds():
        raise ValueError(_TOO_LONG.format(value=value))
    return span


# An SLA time longer than a year is no deadline; the business calendar looks ten years
# ahead at most, and these keep every deadline well inside that.
MAX_SPAN = timedelta(days=366)
MAX_WORKING_DAYS = 250
_TOO_LONG = (
    "{value!r} is out of range: an SLA time goes up to 366d or 250 working days "
    "(write 'case by case' for no deadline)"
)


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days and hours in one timezone, with holidays."""

    timezone: str = "Asia/Kolkata"
    days: frozenset[int] = frozenset(range(5))
    start: time = time(8, 0)
    end: time = time(18, 0)
    holidays: frozenset[date] = frozenset()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def day_seconds(self) -> float:
        return (
            datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
        ).total_seconds()

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz)
        return self.is_working_day(local.date()) and self.start <= local.time() < self.end

    def _window(self, day: date) -> tuple[datetime, datetime]:
        tz = self.tz
        return datetime.combine(day, self.start, tz), datetime.combine(day, self.end, tz)

    def add(self, moment: datetime, seconds: float) -> datetime:
        """The moment ``seconds`` of business time after ``moment``."""
        current = moment.astimezone(self.tz)
        remaining = seconds
        for _ in range(3660):  # ten years of days: a calendar with no working day ends here
            day = current.date()
            if self.is_working_day(day):
                opens, closes = self._window(day)
                if current < opens:
                    current = opens
                if current < closes:
                    available = (closes - current).total_seconds()
                    if remaining <= available:
                        return (current.astimezone(UTC) + timedelta(seconds=remaining)).astimezone(
                            self.tz
                        )
                    remaining -= available
            current = datetime.combine(day + timedelta(days=1), time(0), self.tz)
        raise ValueError("the business calendar has no working hours in the next ten years")

    def between(self, begin: datetime, finish: datetime) -> float:
        """Business seconds from ``begin`` to ``finish`` (0 if finish is earlier)."""
        if finish <= begin:
            return 0.0
        current = begin.astimezone(self.tz)
        finish = finish.astimezone(self.tz)
        total = 0.0
        while current < finish:
            day = current.date()
            if self.is_working_day(day):
                opens, closes = self._window(day)
                lo, hi = max(current, opens), min(finish, closes)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            current = datetime.combine(day + timedelta(days=1), time(0), self.tz)
        return total

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` if within business hours, else when they next begin."""
        return self.add(moment, 0.0)


def deadline(
    start: datetime, span: Span | None, clock: Clock, calendar: BusinessCalendar
) -> datetime | None:
    """When a response or resolution is due, counting business time on a business clock."""
    if span is None:
        return None
    if clock == "business":
        due = calendar.add(start, span.seconds + span.working_days * calendar.day_seconds)
        return due.astimezone(UTC)
    due = start.astimezone(UTC) + timedelta(seconds=span.seconds)
    if span.working_days:
        due = calendar.add(due, span.working_days * calendar.day_seconds).astimezone(UTC)
    return due
