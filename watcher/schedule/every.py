"""Report schedules as people say them: ``mon 08:00``, ``mon,thu 09:30``, ``daily 07:00``,
``monthly 1 08:00``, in a timezone.

A schedule is a series of slots (moments); ``last_slot(now)`` is the newest slot at or
before ``now`` and ``previous(slot)`` the one before it, so a report's period can run
from one slot to the next. Pure functions of their arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["Every", "parse_every"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_SEARCH = 400  # days: any slot of a valid schedule lies within a year and a month


@dataclass(frozen=True)
class Every:
    """Slots on some weekdays, or on a day of each month, at a local time."""

    text: str
    at: time
    weekdays: frozenset[int] = frozenset(range(7))
    day_of_month: int | None = None

    def _matches(self, day: date) -> bool:
        if self.day_of_month is not None:
            return day.day == self.day_of_month
        return day.weekday() in self.weekdays

    def _slot(self, day: date, tz: ZoneInfo) -> datetime:
        return datetime.combine(day, self.at, tz)

    def last_slot(self, now: datetime, tz: ZoneInfo) -> datetime:
        """The newest slot at or before ``now``."""
        day = now.astimezone(tz).date()
        for _ in range(_SEARCH):
            if self._matches(day):
                slot = self._slot(day, tz)
                if slot <= now:
                    return slot
            day -= timedelta(days=1)
        raise ValueError(f"schedule {self.text!r} has no slot in the past year")

    def previous(self, slot: datetime, tz: ZoneInfo) -> datetime:
        """The slot before ``slot``."""
        return self.last_slot(slot - timedelta(seconds=1), tz)

    def next_slot(self, now: datetime, tz: ZoneInfo) -> datetime:
        """The first slot after ``now``."""
        day = now.astimezone(tz).date()
        for _ in range(_SEARCH):
            if self._matches(day):
                slot = self._slot(day, tz)
                if slot > now:
                    return slot
            day += timedelta(days=1)
        raise ValueError(f"schedule {self.text!r} has no slot in the next year")


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        for name in (first, last) if dash else (first,):
            if name[:3] not in _DAYS or not name.isalpha():
                raise ValueError(
                    f"{name!r} is not a weekday; write mon, tue, wed, thu, fri, sat or sun"
                )
        if dash:
            a, b = _DAYS.index(first[:3]), _DAYS.index(last[:3])
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        else:
            days.add(_DAYS.index(first[:3]))
    return frozenset(days)


def parse_every(value: object) -> Every:
    """``mon 08:00``, ``mon,thu 08:00``, ``mon-fri 07:30``, ``daily 08:00``, ``monthly 1 08:00``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError('write a schedule like "mon 08:00", "daily 07:00" or "monthly 1 08:00"')
    text = " ".join(value.lower().split())
    words = text.split(" ")
    match = _TIME.match(words[-1])
    if not match:
        raise ValueError(f'{value!r} does not end with a time of day; write it like "mon 08:00"')
    at = time(int(match.group(1)), int(match.group(2)))
    head = words[:-1]
    if not head or head == ["daily"] or head == ["day"]:
        return Every(text, at)
    if head[0] == "monthly":
        day = head[1] if len(head) == 2 else "1" if len(head) == 1 else ""
        if not day.isdigit() or not 1 <= int(day) <= 28:
            raise ValueError(
                f'{value!r}: a monthly report runs on day 1 to 28 (every month has those); write "monthly 1 08:00"'
            )
        return Every(text, at, day_of_month=int(day))
    if head == ["weekdays"]:
        return Every(text, at, frozenset(range(5)))
    if len(head) != 1:
        raise ValueError(f'{value!r}: write one day list and a time, like "mon,thu 08:00"')
    return Every(text, at, _weekdays(head[0]))
