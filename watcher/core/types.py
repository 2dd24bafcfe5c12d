"""Config field types and checks shared by watcher.yml's models, the rule packs', the probes'
and the integrations': one definition each, so a duration or a timezone is read alike
everywhere. (Cron expressions are checked by :func:`watcher.schedule.cron.check_cron`, beside
their parser.)"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import PlainValidator

from watcher.core.durations import parse_duration, parse_interval, parse_retry_interval

__all__ = [
    "Duration",
    "Interval",
    "OptionalInterval",
    "OptionalRetryInterval",
    "RetryInterval",
    "OptionalDuration",
    "check_regex",
    "check_timezone",
    "label_strings",
]

Duration = Annotated[timedelta, PlainValidator(parse_duration)]
OptionalDuration = Annotated[
    timedelta | None, PlainValidator(lambda v: None if v is None else parse_duration(v))
]
Interval = Annotated[timedelta, PlainValidator(parse_interval)]
OptionalInterval = Annotated[
    timedelta | None, PlainValidator(lambda v: None if v is None else parse_interval(v))
]
RetryInterval = Annotated[timedelta, PlainValidator(parse_retry_interval)]
OptionalRetryInterval = Annotated[
    timedelta | None,
    PlainValidator(lambda v: None if v is None else parse_retry_interval(v)),
]


def check_timezone(value: str | None) -> str | None:
    """``value`` if it names an IANA timezone (or is unset)."""
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; write e.g. Asia/Kolkata or UTC"
            ) from None
    return value


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def check_weekdays(values: list[str]) -> list[str]:
    """``values`` as three-letter weekday names (``Monday`` -> ``mon``)."""
    out = []
    for day in values:
        short = str(day).lower()[:3]
        if short not in WEEKDAYS:
            raise ValueError(f"{day!r} is not a weekday; write mon, tue, wed, thu, fri, sat or sun")
        out.append(short)
    return out


def check_regex(value: str | None) -> str | None:
    """``value`` if it compiles as a regular expression (or is unset)."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def label_strings(value: Any) -> Any:
    """Label values written as YAML numbers or booleans, as the strings labels are."""
    if isinstance(value, dict):
        return {
            str(k): str(v) if isinstance(v, (int, float, bool)) else v for k, v in value.items()
        }
    return value
