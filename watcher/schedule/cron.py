"""Cron schedules as crontab(5) writes them, in a timezone: when a job runs next, and last.

    schedule = parse_cron("30 2 * * mon-fri", "Asia/Kolkata")
    schedule.next_after(now)        # the first run strictly after now
    schedule.previous_before(now)   # the last run at or before now

Five fields (minute, hour, day of month, month, day of week) with ``*``, lists, ranges,
steps and names (``jan``, ``mon``; 0 and 7 are Sunday), plus ``@hourly``, ``@daily``,
``@weekly``, ``@monthly`` and ``@yearly``. As in cron, when both day fields are
restricted a day matches if either does. Times are wall-clock times in the timezone: a
time skipped by a daylight-saving jump does not run that day, a time that occurs twice
runs once (the first time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronSchedule", "parse_cron"]

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names for values starting at lowest)
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# Feb 29 on a Monday can be 28 years away; nothing valid is further.
_SEARCH_DAYS = 366 * 29


def _value(text: str, field: str, low: int, high: int, names: list[str] | None) -> int:
    lowered = text.lower()
    if names and lowered[:3] in names and lowered.isalpha():
        return names.index(lowered[:3]) + (1 if field == "month" else 0)
    if not text.isdigit():
        hint = f" or a name like {names[0]}" if names else ""
        raise ValueError(f"{text!r} in the {field} field is not a number{hint}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{number} is outside the {field} field's range {low}-{high}")
    return number


def _field(text: str, field: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(
                    f"step {step_text!r} in the {field} field must be a whole number above 0"
                )
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, field, low, high, names)
            end = _value(last, field, low, high, names)
            if end < start:
                raise ValueError(f"range {base!r} in the {field} field runs backwards")
        elif base:
            start = _value(base, field, low, high, names)
            end = high if slash else start
        else:
            raise ValueError(f"empty item in the {field} field")
        values.update(range(start, end + 1, step))
    if field == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed five-field schedule bound to a timezone."""

    text: str
    timezone: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def runs_on(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday  # a * field has every day in it
        return by_date or by_weekday

    def _instant(self, day: date, hour: int, minute: int) -> datetime | None:
        """The moment a wall-clock time happens, or None if it does not exist that day."""
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz)
        moment = local.astimezone(UTC)
        if moment.astimezone(self.tz).replace(tzinfo=None) != local.replace(tzinfo=None):
            return None  # inside a daylight-saving gap
        return moment

    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after ``moment`` (an aware datetime), in UTC."""
        start = moment.astimezone(self.tz).date()
        for offset in range(_SEARCH_DAYS):
            day = start + timedelta(days=offset)
            if not self.runs_on(day):
                continue
            for hour in self.hours:
                for minute in self.minutes:
                    when = self._instant(day, hour, minute)
                    if when is not None and when > moment:
                        return when
        raise ValueError(f"cron schedule {self.text!r} never runs")

    def previous_before(self, moment: datetime) -> datetime:
        """The last run at or before ``moment``, in UTC."""
        start = moment.astimezone(self.tz).date()
        for offset in range(_SEARCH_DAYS):
            day = start - timedelta(days=offset)
            if not self.runs_on(day):
                continue
            for hour in reversed(self.hours):
                for minute in reversed(self.minutes):
                    when = self._instant(day, hour, minute)
                    if when is not None and when <= moment:
                        return when
        raise ValueError(f"cron schedule {self.text!r} never runs")


def parse_cron(text: str, timezone: str = "UTC") -> CronSchedule:
    """Parses a crontab schedule; raises ValueError with a sentence naming the bad field."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r}; write e.g. Asia/Kolkata or UTC") from None
    source = " ".join(str(text).split())
    expanded = _ALIASES.get(source.lower(), source)
    parts = expanded.split(" ")
    if len(parts) != 5:
        raise ValueError(
            f"{text!r} is not a cron schedule: write five fields (minute hour day-of-month month "
            'day-of-week), e.g. "30 2 * * *", or @daily / @hourly'
        )
    fields = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    schedule = CronSchedule(
        text=source,
        timezone=timezone,
        minutes=tuple(sorted(fields[0])),
        hours=tuple(sorted(fields[1])),
        days=fields[2],
        months=fields[3],
        weekdays=fields[4],
        # As in cron, a day field that starts with * (also */2) does not restrict the other.
        any_day=parts[2].startswith("*"),
        any_weekday=parts[4].startswith("*"),
    )
    # "0 0 30 feb *" parses but never runs: refuse it now, not at the first deadline.
    schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    return schedule


def check_cron(value: str | None) -> str | None:
    """``value`` if it parses as a cron expression (or is unset); the parser's error if not."""
    if value is not None:
        parse_cron(value)
    return value
