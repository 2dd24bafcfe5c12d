"""Maintenance windows: when a target's problems are expected and nobody is to be told.

    maintenance:
      - {name: db-upgrade, targets: [db1], start: "2026-11-28 22:00", end: "2026-11-29 02:00"}
      - {name: nightly-backup, targets: [files1], cron: "0 2 * * *", duration: 1h}
      - {name: weekend-lab, labels: {env: lab}, days: [sat, sun], from: "00:00", to: "24:00"}

Three forms: one-off (``start`` with ``end`` or ``duration``), cron (``cron`` with
``duration``) and weekly (``from``/``to`` times of day on ``days``, crossing midnight when
``to`` is earlier), each in ``timezone`` (default: ``business_hours.timezone``). A window
covers the targets whose name matches one of ``targets`` (globs) and whose labels
include ``labels``; with both, a target must match both.

Windows come from watcher.yml and from the ``maintenance`` table, which ``watcher
maintenance add/remove`` and ``POST/DELETE /api/maintenance`` write; the daemon re-reads
the table when it changes, so either works whether or not the daemon runs.
A window holds back notifications only: results are recorded and incidents tracked.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watcher.core.durations import format_duration, parse_duration
from watcher.core.types import (
    WEEKDAYS as WEEKDAY_NAMES,
)
from watcher.core.types import (
    OptionalDuration,
    check_timezone,
    check_weekdays,
    label_strings,
)
from watcher.schedule.cron import check_cron

log = logging.getLogger("watcher.maintenance")

__all__ = [
    "MaintenanceConfig",
    "Window",
    "Maintenance",
    "add_window",
    "remove_window",
    "stored_windows",
    "parse_moment",
    "WEEKDAY_NAMES",
]

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$|^24:00$")


class MaintenanceConfig(BaseModel):
    """One window, as written in ``maintenance:``, given to the CLI or posted to the API."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    targets: list[str] = []
    labels: dict[str, str] = {}
    start: datetime | None = None
    end: datetime | None = None
    duration: OptionalDuration = None
    cron: str | None = None
    days: list[str] = []
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    timezone: str | None = None
    reason: str = Field(default="", max_length=500)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return label_strings(value)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.strip().replace(" ", "T", 1))
            except ValueError:
                raise ValueError(
                    f'{value!r} is not a date and time; write it like "2026-11-28 22:00"'
                ) from None
        return value

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 22:00 as 1320
            value = f"{value // 60:02d}:{value % 60:02d}"
        if value is not None and not _HHMM.match(str(value)):
            raise ValueError(
                f'{value!r} is not a time of day; write it like "22:00" ("24:00" for midnight at the end)'
            )
        return None if value is None else str(value)

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        return check_weekdays(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        check_timezone(value)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> MaintenanceConfig:
        if not self.targets and not self.labels:
            raise ValueError(
                "a window needs targets: [names or globs] or labels: {key: value} to say what it covers"
            )
        weekly = self.from_ is not None or self.to is not None or bool(self.days)
        forms = [
            name
            for name, given in (
                ("start", self.start is not None),
                ("cron", self.cron is not None),
                ("from/to", weekly),
            )
            if given
        ]
        example = (
            'write start: "2026-11-28 22:00" with end: or duration: (once), cron: "0 2 * * *" with duration: 1h, '
            'or from: "22:00" to: "06:00" with days: [sat, sun] (weekly)'
        )
        if len(forms) != 1:
            raise ValueError(
                ("a window is one of three forms, not " + " and ".join(forms))
                if forms
                else f"a window needs a time: {example}"
            )
        if self.start is not None:
            if (self.end is None) == (self.duration is None):
                raise ValueError("a one-off window needs end: or duration: (one of them)")
            if self.end is not None and (self.start.tzinfo is None) != (self.end.tzinfo is None):
                raise ValueError("give start: and end: both with or both without a UTC offset")
            if self.end is not None and self.end <= self.start:
                raise ValueError("end: must be after start:")
        elif self.cron is not None:
            if self.duration is None or self.end is not None:
                raise ValueError(
                    "a cron window needs duration: (how long each one lasts), e.g. duration: 1h"
                )
        else:
            if self.from_ is None or self.to is None:
                raise ValueError(
                    'a weekly window needs both from: and to:, e.g. from: "22:00" to: "06:00"'
                )
            if self.duration is not None or self.end is not None:
                raise ValueError("a weekly window ends at to:, it takes no duration: or end:")
            if self.from_ == self.to:
                raise ValueError(
                    'from: and to: are the same time; for whole days write from: "00:00" to: "24:00"'
                )
        if self.duration is not None and self.duration.total_seconds() <= 0:
            raise ValueError("duration: must be longer than 0")
        return self

    def spec(self) -> dict[str, Any]:
        """What the store keeps: JSON as a person would write it, read back with ``model_validate``."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump(by_alias=True, exclude_defaults=True).items():
            if isinstance(value, timedelta):
                value = format_duration(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[key] = value
        return out


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class Window:
    """A window ready to answer: is it on now, until when, and whom it covers."""

    config: MaintenanceConfig
    timezone: str
    id: int | None = None  # stored windows; None for those in watcher.yml
    created_by: str = "watcher.yml"
    created_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def source(self) -> str:
        return "config" if self.id is None else "store"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _aware(self, moment: datetime) -> datetime:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.tz)

    def _once(self) -> tuple[datetime, datetime]:
        """(start, end) of a one-off window."""
        c = self.config
        assert c.start is not None
        start = self._aware(c.start)
        end = self._aware(c.end) if c.end is not None else start + (c.duration or timedelta(0))
        return start, end

    def covers(self, target: str, labels: Mapping[str, str]) -> bool:
        c = self.config
        if c.targets and not any(fnmatchcase(target, pattern) for pattern in c.targets):
            return False
        return all(labels.get(k) == v for k, v in c.labels.items())

    def span_at(self, now: datetime) -> tuple[datetime, datetime] | None:
        """(start, end) of the occurrence going on at ``now``, or None."""
        c = self.config
        if c.start is not None:
            start, end = self._once()
            return (start, end) if start <= now < end else None
        if c.cron is not None:
            from watcher.schedule.cron import parse_cron

            assert c.duration is not None
            schedule = parse_cron(c.cron, self.timezone)
            start = schedule.previous_before(now)
            return (start, start + c.duration) if now < start + c.duration else None
        local_day = now.astimezone(self.tz).date()
        for offset in (0, -1):
            span = self._weekly_span(local_day + timedelta(days=offset))
            if span is not None and span[0] <= now < span[1]:
                return span
        return None

    def _weekly_span(self, day: date) -> tuple[datetime, datetime] | None:
        c = self.config
        assert c.from_ is not None and c.to is not None
        days = c.days or list(WEEKDAY_NAMES)
        if WEEKDAY_NAMES[day.weekday()] not in days:
            return None
        begin, finish = _minutes(c.from_), _minutes(c.to)
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        start = midnight + timedelta(minutes=begin)
        end = midnight + timedelta(minutes=finish)
        if finish <= begin:
            end += timedelta(days=1)  # crosses midnight
        # wall-clock arithmetic in the zone, then to UTC (a DST day is as long as it is)
        return start.astimezone(UTC), end.astimezone(UTC)

    def next_span(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence on now, else the next to begin; None if none will."""
        current = self.span_at(now)
        if current is not None:
            return current
        c = self.config
        if c.start is not None:
            start, end = self._once()
            return (start, end) if start > now else None
        if c.cron is not None:
            from watcher.schedule.cron import parse_cron

            assert c.duration is not None
            start = parse_cron(c.cron, self.timezone).next_after(now)
            return start, start + c.duration
        local_day = now.astimezone(self.tz).date()
        for offset in range(0, 8):
            span = self._weekly_span(local_day + timedelta(days=offset))
            if span is not None and span[0] > now:
                return span
        return None

    def when(self) -> str:
        """The schedule in words, for lists."""
        c = self.config
        if c.start is not None:
            start, end = (moment.astimezone(self.tz) for moment in self._once())
            return f"{start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M} {self.timezone}"
        if c.cron is not None:
            return f"cron {c.cron!r} for {format_duration(c.duration or timedelta(0))} ({self.timezone})"
        days = ",".join(c.days) if c.days else "daily"
        return f"{days} {c.from_}-{c.to} ({self.timezone})"

    def view(self, now: datetime) -> dict[str, Any]:
        """The JSON form for ``--json`` and the API."""
        span = self.next_span(now)
        active = self.span_at(now) is not None
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "targets": list(self.config.targets),
            "labels": dict(self.config.labels),
            "when": self.when(),
            "timezone": self.timezone,
            "reason": self.config.reason,
            "active": active,
            "state": "active" if active else "upcoming" if span else "ended",
            "starts": span[0].isoformat() if span else None,
            "ends": span[1].isoformat() if span else None,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "spec": self.config.spec(),
        }


# ------------------------------------------------------------------------ the store


def add_window(store: Any, config: MaintenanceConfig, *, by: str, now: datetime) -> int:
    """Keeps a window added by hand; the daemon sees it at its next step."""
    return int(store.add_maintenance(config.name, config.spec(), config.reason, by, now))


def remove_window(store: Any, window_id: int, *, by: str, now: datetime) -> bool:
    """Ends a stored window now (it stays in the table, stamped); False if none is live."""
    return bool(store.remove_maintenance(window_id, by, now))


def stored_windows(store: Any, default_timezone: str) -> list[Window]:
    from pydantic import ValidationError

    windows = []
    for row in store.maintenance_windows():
        try:
            config = MaintenanceConfig.model_validate(json.loads(row["spec"]))
        except (ValueError, ValidationError) as exc:  # a row written by hand: skip it, say so
            log.warning(
                "maintenance window %s in the state file is unreadable, ignored: %s", row["id"], exc
            )
            continue
        windows.append(
            Window(
                config,
                config.timezone or default_timezone,
                id=int(row["id"]),
                created_by=row["created_by"],
                created_at=datetime.fromisoformat(row["created_at"]),
            )
        )
    return windows


def _table_stamp(store: Any) -> tuple[Any, ...]:
    return tuple(store.maintenance_stamp())


class Maintenance:
    """The windows in force: watcher.yml's and the store's, re-read when the table changes."""

    def __init__(self, store: Any | None = None) -> None:
        self.store = store
        self.timezone = "UTC"
        self._configured: list[Window] = []
        self._stored: list[Window] = []
        self._stamp: tuple[Any, ...] | None = None

    def configure(self, windows: Sequence[MaintenanceConfig], default_timezone: str) -> None:
        self.timezone = default_timezone
        self._configured = [Window(w, w.timezone or default_timezone) for w in windows]
        self._stamp = None  # the default timezone may have changed

    def refresh(self) -> None:
        if self.store is None:
            return
        stamp = _table_stamp(self.store)
        if stamp != self._stamp:
            self._stored = stored_windows(self.store, self.timezone)
            self._stamp = stamp

    @property
    def windows(self) -> list[Window]:
        return [*self._configured, *self._stored]

    def active(self, now: datetime) -> list[tuple[Window, datetime]]:
        """The windows on now, with when each ends."""
        out = []
        for window in self.windows:
            span = window.span_at(now)
            if span is not None:
                out.append((window, span[1]))
        return out

    def covering(
        self,
        target: str,
        labels: Mapping[str, str],
        now: datetime,
        active: Iterable[tuple[Window, datetime]] | None = None,
    ) -> tuple[Window, datetime] | None:
        """The window covering ``target`` now that ends last, or None."""
        best = None
        for window, end in self.active(now) if active is None else active:
            if window.covers(target, labels) and (best is None or end > best[1]):
                best = (window, end)
        return best


def parse_moment(text: str, timezone: str, now: datetime) -> datetime:
    """``now``, ``+2h``, ``2026-11-28 22:00`` (in ``timezone``) or an ISO time with offset."""
    value = text.strip()
    if value.lower() == "now":
        return now
    if value.startswith("+"):
        return now + parse_duration(value[1:])
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f'{text!r} is not a time; write now, +2h or "2026-11-28 22:00"') from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(timezone))


def check_windows(
    windows: Sequence[MaintenanceConfig], targets: Iterable[str], extra_names: Iterable[str] = ()
) -> list[tuple[int, str, str, str]]:
    """(index, key, problem, hint) for each window naming nothing that exists."""
    from watcher.core.yamlsource import did_you_mean

    names = set(targets) | set(extra_names)
    problems = []
    seen: dict[str, int] = {}
    for index, window in enumerate(windows):
        if window.name in seen:
            problems.append(
                (
                    index,
                    "name",
                    f"two windows are named {window.name!r} (first at maintenance[{seen[window.name]}])",
                    "give each its own name",
                )
            )
        seen.setdefault(window.name, index)
        for pattern in window.targets:
            if names and not any(fnmatchcase(name, pattern) for name in names):
                problems.append(
                    (
                        index,
                        "targets",
                        f"{pattern!r} matches no target",
                        did_you_mean(pattern, names),
                    )
                )
    return problems


def window_from_request(
    data: Mapping[str, Any], *, default_timezone: str, now: datetime
) -> MaintenanceConfig:
    """A window from the CLI's options or the API's JSON. ``start`` and ``end`` also take
    ``now`` and ``+2h``; a window with no time at all starts now (then ``end`` or
    ``duration`` is needed). Raises ValueError with a sentence to show the user."""
    from pydantic import ValidationError

    values = {k: v for k, v in data.items() if v not in (None, "", [], {})}
    timezone = values.get("timezone") or default_timezone
    check_timezone(timezone)
    weekly = any(k in values for k in ("from", "to", "days"))
    if "start" not in values and "cron" not in values and not weekly:
        values["start"] = "now"
    for key in ("start", "end"):
        if isinstance(values.get(key), str):
            values[key] = parse_moment(values[key], timezone, now).isoformat()
    try:
        return MaintenanceConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"])
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ValueError("; ".join(problems)) from None
