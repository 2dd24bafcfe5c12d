"""Durations, sizes and numbers with units as people write them in watcher.yml."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration", "format_duration", "parse_quantity", "UNIT_FACTORS"]

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
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 5m, 2h or 1d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=float(value))
    if not isinstance(value, str) or not _WHOLE.match(value):
        raise ValueError(f"{value!r} is not a duration; write it like 90s, 5m, 2h or 1d")
    seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in _PART.findall(value))
    return timedelta(seconds=seconds)


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
    if not unit:
        return number
    if unit not in UNIT_FACTORS:
        raise ValueError(
            f"unknown unit {match.group(2)!r}; use one of {', '.join(sorted(UNIT_FACTORS))}"
        )
    return number * UNIT_FACTORS[unit]
