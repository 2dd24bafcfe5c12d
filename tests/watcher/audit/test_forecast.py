"""The straight-line forecast and its refusals, as pure functions of hourly values."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from watcher.audit.forecast import Hour, forecast, percentile, stats

START = datetime(2026, 11, 1, tzinfo=UTC)


def _hours(values: list[float], start: datetime = START) -> list[Hour]:
    return [Hour(start + timedelta(hours=i), v, v) for i, v in enumerate(values)]


def _now(hours: list[Hour]) -> datetime:
    return hours[-1].at + timedelta(hours=1)


def test_an_exact_line_reaches_the_limit_when_the_arithmetic_says() -> None:
    hours = _hours([50 + i / 24 for i in range(10 * 24)])  # one point a day, 60% after ten days
    f = forecast(hours, 100.0, _now(hours))
    assert f.confidence == "good" and f.r2 == 1.0
    assert f.per_week == pytest.approx(7.0)
    assert f.days_left == pytest.approx(40.0, abs=0.05)
    assert f.line is not None and f.line[1] == (f.at, 100.0)


@pytest.mark.parametrize(
    ("values", "note"),
    [
        ([60 - i / 24 for i in range(240)], "falling"),
        ([60.0] * 240, "steady: no clear growth"),
        ([60 + (i % 2) for i in range(240)], "steady: no clear growth"),
        ([50 + i / 24 / 1000 for i in range(240)], "not within 3 years at +0.007% a week"),
    ],
)
def test_no_date_when_the_figure_is_not_heading_for_the_limit(
    values: list[float], note: str
) -> None:
    hours = _hours(values)
    f = forecast(hours, 100.0, _now(hours), unit="%")
    assert (f.at, f.confidence, f.note) == (None, "none", note)


def test_a_figure_already_at_the_limit_is_full_now() -> None:
    hours = _hours([99.0, 100.0] * 20)
    f = forecast(hours, 100.0, _now(hours), unit="%")
    assert (f.days_left, f.note) == (0.0, "already at 100%")


def test_noise_alone_never_restarts_the_fit() -> None:
    rng = random.Random(3)
    hours = _hours(
        [50 + i / 48 + rng.gauss(0, 3) for i in range(30 * 24)]
    )  # neighbours differ by up to 15
    f = forecast(hours, 100.0, _now(hours))
    assert f.reset == {}
    assert f.per_week == pytest.approx(3.5, abs=0.3)


def test_summaries_weigh_by_the_hours_they_cover() -> None:
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 10.0], 50, [23.0, 1.0]) == 1.0
    daily = [Hour(START, 10.0, 12.0, 24.0), Hour(START + timedelta(days=1), 30.0, 31.0, 1.0)]
    figures = stats(daily, threshold=20.0)
    assert figures.hours == 25.0 and figures.hours_above == 1.0 and figures.max == 31.0
    assert figures.mean == pytest.approx((240 + 30) / 25)
