"""Trends and forecasts for the audits: a straight-line fit that says when it cannot be trusted.

Like Zabbix's ``timeleft``, a forecast is a least-squares line through the period's
values, extended to a limit. Unlike it, every forecast carries a plain note when the
data are too few, too noisy or not growing, and a fall large enough to be a cleanup
restarts the fit, so last month's ``rm -rf`` does not hide this week's growth.
Pure functions of their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "Fit",
    "Forecast",
    "Stats",
    "fit_line",
    "forecast",
    "hourly",
    "percentile",
    "stats",
    "Hour",
]

DAY = 86400.0
WEEK = 7 * DAY
MIN_SPAN = DAY  # less history than a day says nothing about a weekly rhythm
MIN_POINTS = 6
GOOD_R2 = 0.6  # below: the line explains too little of the movement to put a date on it
ROUGH_R2 = 0.3  # below: no estimate at all
MIN_T = 3.0  # slope / its standard error: under this the "growth" may be noise
HORIZON = 3 * 365 * DAY


@dataclass(frozen=True)
class Hour:
    """One hour (or a longer summary) of a series: its mean, its peak, how long it covers."""

    at: datetime
    mean: float
    hi: float
    hours: float = 1.0

    @property
    def middle(self) -> datetime:
        return self.at + timedelta(hours=self.hours / 2)


def hourly(points: Sequence[object]) -> list[Hour]:
    """Raw results averaged per hour; hourly and daily summaries kept as they are.

    ``points`` are ``watcher.store.Point`` (at, mean, lo, hi, item, n, span).
    """
    out: list[Hour] = []
    bucket: datetime | None = None
    values: list[float] = []
    peak = -math.inf

    def flush() -> None:
        if bucket is not None and values:
            out.append(Hour(bucket, sum(values) / len(values), peak))

    for p in points:
        span = getattr(p, "span", 0.0)
        at: datetime = p.at  # type: ignore[attr-defined]
        if span:
            flush()
            bucket, values, peak = None, [], -math.inf
            out.append(Hour(at, p.mean, p.hi, span / 3600))  # type: ignore[attr-defined]
            continue
        start = at.replace(minute=0, second=0, microsecond=0)
        if start != bucket:
            flush()
            bucket, values, peak = start, [], -math.inf
        values.append(p.mean)  # type: ignore[attr-defined]
        peak = max(peak, p.hi)  # type: ignore[attr-defined]
    flush()
    out.sort(key=lambda h: h.at)
    return out


def percentile(
    values: Sequence[float], q: float, weights: Sequence[float] | None = None
) -> float | None:
    """The q-th percentile (0-100), weighted (a daily summary weighs 24 hours)."""
    if not values:
        return None
    pairs = sorted(zip(values, weights or [1.0] * len(values), strict=True))
    total = sum(w for _, w in pairs)
    target = q / 100 * total
    running = 0.0
    for value, weight in pairs:
        running += weight
        if running >= target - 1e-9:
            return value
    return pairs[-1][0]


@dataclass(frozen=True)
class Stats:
    """How a usage figure was spread over the period, and how long it sat above its line."""

    p50: float | None
    p95: float | None
    max: float | None
    mean: float | None
    now: float | None
    hours: float
    hours_above: float | None
    threshold: float | None

    @property
    def share_above(self) -> float:
        return (self.hours_above or 0.0) / self.hours if self.hours else 0.0


def stats(hours: Sequence[Hour], threshold: float | None = None, now: float | None = None) -> Stats:
    """Percentiles of the hourly means; ``hours_above``: hours whose mean was at or over ``threshold``."""
    if not hours:
        return Stats(None, None, None, None, now, 0.0, None, threshold)
    values = [h.mean for h in hours]
    weights = [h.hours for h in hours]
    total = sum(weights)
    above = sum(h.hours for h in hours if h.mean >= threshold) if threshold is not None else None
    return Stats(
        p50=percentile(values, 50, weights),
        p95=percentile(values, 95, weights),
        max=max(h.hi for h in hours),
        mean=sum(v * w for v, w in zip(values, weights, strict=True)) / total,
        now=now if now is not None else values[-1],
        hours=total,
        hours_above=above,
        threshold=threshold,
    )


@dataclass(frozen=True)
class Fit:
    """y = intercept + slope * (t - origin), t in seconds since the epoch."""

    slope: float  # units per second
    intercept: float
    origin: float
    r2: float
    slope_error: float
    points: int
    start: float
    end: float

    def at(self, t: float) -> float:
        return self.intercept + self.slope * (t - self.origin)

    @property
    def t_value(self) -> float:
        if self.slope_error == 0:
            return math.inf if self.slope else 0.0
        return abs(self.slope) / self.slope_error


def fit_line(times: Sequence[float], values: Sequence[float]) -> Fit | None:
    n = len(times)
    if n < 3:
        return None
    origin = times[0]
    xs = [t - origin for t in times]
    mx = sum(xs) / n
    my = sum(values) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True))
    syy = sum((y - my) ** 2 for y in values)
    slope = sxy / sxx
    intercept = my - slope * mx
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, values, strict=True))
    r2 = 1.0 - residual / syy if syy else 1.0
    slope_error = math.sqrt(residual / (n - 2) / sxx) if n > 2 else math.inf
    return Fit(slope, intercept, origin, r2, slope_error, n, times[0], times[-1])


@dataclass(frozen=True)
class Forecast:
    """When a growing figure reaches ``limit`` at the rate of the period, or why we cannot say."""

    limit: float
    now: float | None
    per_week: float | None  # units a week, from the fit
    at: datetime | None  # when the limit is reached; None when not forecast
    days_left: float | None
    confidence: str  # "good", "rough" (noisy: an order of magnitude) or "none"
    note: str  # plain words; empty when the forecast stands on its own
    r2: float | None = None
    points: int = 0
    fit_from: datetime | None = None
    line: tuple[tuple[datetime, float], tuple[datetime, float]] | None = None  # for charts
    reset: dict[str, object] = field(default_factory=dict)  # the fall the fit restarted after

    @property
    def usable(self) -> bool:
        return self.at is not None and self.confidence != "none"


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _noise(values: Sequence[float]) -> float:
    """The hour-to-hour noise (a standard deviation), robust to trends and steps: from the
    median absolute difference of neighbours."""
    if len(values) < 3:
        return 0.0
    differences = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    return _median(differences) / 0.6745 / math.sqrt(2)


def _restart(hours: Sequence[Hour], drop: float, window: int = 6) -> tuple[int, float, float]:
    """Where the last lasting fall (a cleanup) ends: (index, level before, level after).

    A fall counts when the level (the median of ``window`` hours) after it is at least
    ``drop`` and five times the hourly noise below the level before it, so noise alone
    never restarts a fit. The index is the first hour wholly after the fall.
    """
    values = [h.mean for h in hours]
    needed = max(drop, 5 * _noise(values))
    last = len(values) - window

    def levels(i: int) -> tuple[float, float]:
        return _median(values[i - window : i]), _median(values[i : i + window])

    found = (0, 0.0, 0.0)
    i = window
    while i <= last:
        before, after = levels(i)
        if before - after < needed:
            i += 1
            continue
        # the windows straddle the fall for a few hours: take where the step is sharpest
        best = i
        j = i + 1
        while j <= last and (lv := levels(j))[0] - lv[1] >= needed:
            if lv[0] - lv[1] >= before - after:
                best, (before, after) = j, lv
            j += 1
        # an hour holding both levels is neither: start where values sit at the new one
        start = best
        while start < len(values) - 1 and values[start] - after > (before - after) / 4:
            start += 1
        found = (start, before, after)
        i = max(j, start + 1)
    return found


def forecast(
    hours: Sequence[Hour],
    limit: float,
    now: datetime,
    *,
    unit: str = " points",
    drop: float = 5.0,
    horizon: float = HORIZON,
) -> Forecast:
    """Fits the period's hourly means and extends the line to ``limit``.

    ``drop``: a fall of at least this much between two hours (a cleanup) restarts the fit.
    """
    current = hours[-1].mean if hours else None
    if current is not None and current >= limit:
        return Forecast(
            limit,
            current,
            None,
            now,
            0.0,
            "good",
            f"already at {current:.4g}{unit}",
            points=len(hours),
        )
    start_index, before, after = _restart(hours, drop)
    reset: dict[str, object] = {}
    note_prefix = ""
    if start_index:
        used = hours[start_index:]
        if (
            len(used) >= MIN_POINTS
            and (used[-1].middle - used[0].middle).total_seconds() >= MIN_SPAN
        ):
            hours = used
            reset = {"at": used[0].at, "from": before, "to": after}
            note_prefix = f"fitted since {used[0].at:%d %b}, when it fell from {before:.0f} to {after:.0f}{unit}; "
    if len(hours) < MIN_POINTS or (hours[-1].middle - hours[0].middle).total_seconds() < MIN_SPAN:
        span_h = (hours[-1].middle - hours[0].middle).total_seconds() / 3600 if hours else 0.0
        return Forecast(
            limit,
            current,
            None,
            None,
            None,
            "none",
            note_prefix
            + f"too little history to forecast ({span_h:.0f} h of data; a forecast needs a day or more)",
            points=len(hours),
        )
    times = [h.middle.timestamp() for h in hours]
    fit = fit_line(times, [h.mean for h in hours])
    if fit is None:
        return Forecast(
            limit,
            current,
            None,
            None,
            None,
            "none",
            note_prefix + "the values do not vary in time",
            points=len(hours),
        )
    per_week = fit.slope * WEEK
    fit_from = datetime.fromtimestamp(fit.start, UTC)
    # one set of keyword arguments for every Forecast below; their types differ per key
    common: dict[str, Any] = {
        "r2": round(fit.r2, 3),
        "points": fit.points,
        "fit_from": fit_from,
        "reset": reset,
    }
    now_s = now.timestamp()
    if fit.slope <= 0 or fit.t_value < MIN_T:
        word = "falling" if fit.slope < 0 and fit.t_value >= MIN_T else "steady: no clear growth"
        return Forecast(limit, current, per_week, None, None, "none", note_prefix + word, **common)
    if fit.r2 < ROUGH_R2:
        return Forecast(
            limit,
            current,
            per_week,
            None,
            None,
            "none",
            note_prefix
            + f"too noisy to forecast (the trend explains {fit.r2:.0%} of the movement)",
            **common,
        )
    seconds = (limit - fit.at(now_s)) / fit.slope
    if seconds <= 0:
        seconds = 0.0
    if seconds > horizon:
        return Forecast(
            limit,
            current,
            per_week,
            None,
            None,
            "none",
            note_prefix
            + f"not within {horizon / (365 * DAY):.0f} years at {per_week:+.2g}{unit} a week",
            **common,
        )
    at = datetime.fromtimestamp(now_s + seconds, UTC)
    line = ((fit_from, fit.at(fit.start)), (at, limit))
    if fit.r2 < GOOD_R2:
        return Forecast(
            limit,
            current,
            per_week,
            at,
            seconds / DAY,
            "rough",
            note_prefix + f"rough: noisy data (the trend explains {fit.r2:.0%} of the movement)",
            line=line,
            **common,
        )
    return Forecast(
        limit,
        current,
        per_week,
        at,
        seconds / DAY,
        "good",
        note_prefix.rstrip("; "),
        line=line,
        **common,
    )


def trend(hours: Sequence[Hour]) -> tuple[float | None, Fit | None]:
    """Change a week by a fit over the period, or None with too few points."""
    if len(hours) < MIN_POINTS:
        return None, None
    fit = fit_line([h.middle.timestamp() for h in hours], [h.mean for h in hours])
    if fit is None:
        return 0.0, None
    return fit.slope * WEEK, fit
