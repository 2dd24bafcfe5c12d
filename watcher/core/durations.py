"""Durations, sizes and numbers with units as people write them in watcher.yml."""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta

__all__ = [
    "MAX_DURATION",
    "MIN_INTERVAL",
    "parse_duration",
    "parse_interval",
    "parse_retry_interval",
    "format_duration",
    "parse_quantity",
    "UNIT_FACTORS",
]

# Longer than any retention, period or deadline a site means, and far below where adding
# it to a date overflows.
MAX_DURATION = timedelta(days=36500)
# A check run more often than this is a busy loop against the target, not monitoring.
MIN_INTERVAL = timedelta(seconds=1)
# Test rigs and benchmarks that must see many rounds quickly may lower the minimum
# (never under this floor) with WATCHER_MIN_INTERVAL=100ms in the environment.
_MIN_INTERVAL_FLOOR = timedelta(milliseconds=50)

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_SIZE_UNITS = {
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
    "tib": 1024.0**4,
}
UNIT_FACTORS = {**_DURATION_UNITS, **_SIZE_UNITS}

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+$", re.IGNORECASE)


def parse_duration(value: object) -> timedelta:
    """Parses ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m`` or a bare number of seconds."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 5m, 2h or 1d")
    elif isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(value)
    elif not isinstance(value, str) or not _WHOLE.match(value):
        raise ValueError(f"{_short(value)} is not a duration; write it like 90s, 5m, 2h or 1d")
    else:
        seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in _PART.findall(value))
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"{_short(value)} is out of range: durations go from 0s to "
            f"{MAX_DURATION.days}d (100 years)"
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def parse_interval(value: object) -> timedelta:
    """A duration of at least MIN_INTERVAL: how often a check runs."""
    interval = parse_duration(value)
    shortest = min_interval()
    if interval < shortest:
        raise ValueError(
            f"an interval of {format_duration(interval) if interval else '0s'} would run "
            "the check over and over; "
            f"the shortest is {format_duration(shortest)} (write e.g. interval: 30s)"
        )
    return interval


def parse_retry_interval(value: object) -> timedelta:
    """An interval, or ``0s``: no rechecks."""
    retry = parse_duration(value)
    return retry if not retry else parse_interval(value)


def min_interval() -> timedelta:
    """MIN_INTERVAL, or what WATCHER_MIN_INTERVAL lowers it to (not under 50ms)."""
    lowered = os.environ.get("WATCHER_MIN_INTERVAL")
    if not lowered:
        return MIN_INTERVAL
    try:
        return max(parse_duration(lowered), _MIN_INTERVAL_FLOOR)
    except ValueError:
        return MIN_INTERVAL


def _short(value: object) -> str:
    text = repr(value) if isinstance(value, str) else repr(value)[:60]
    return text if len(text) <= 60 else text[:57] + "..."


def format_duration(delta: timedelta | float) -> str:
    """Formats a duration the way it would be written in the config: ``1h30m``, ``45s``."""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f}ms"
    whole = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return sign + "".join(parts[:2])


_QUANTITY = re.compile(r"^\s*(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_quantity(text: str) -> float:
    """A number with an optional unit: ``5e9``, ``5GB``, ``512MiB``, ``500ms``, ``14d``.

    Sizes become bytes and durations seconds, so ``free_bytes < 5GB`` and
    ``latency_s > 500ms`` read the way they are meant.
    """
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a number")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is too large a number")
    if not unit:
        return number
    if unit not in UNIT_FACTORS:
        raise ValueError(
            f"unknown unit {match.group(2)!r}; use one of {', '.join(sorted(UNIT_FACTORS))}"
        )
    return number * UNIT_FACTORS[unit]
