"""Results history: hourly and daily rollups, retention, and series that never mix resolutions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.helpers import result
from watcher.store import Point, Store

RAW = timedelta(days=2)
HOURLY = timedelta(days=90)
DAILY = timedelta(days=730)
NOW = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)


def _write(store: Store, results: list) -> None:
    with store.transaction() as db:
        store.save_results(db, results)


def _disk_history(
    store: Store, days: float, every: timedelta, *, start_value: float = 50.0, per_day: float = 1.0
) -> None:
    """``days`` of a disk filling at ``per_day`` points a day, one result every ``every``."""
    start = NOW - timedelta(days=days)
    at = start
    batch = []
    while at < NOW:
        value = start_value + per_day * (at - start).total_seconds() / 86400
        batch.append(
            result("mail1", "disk", metrics={"used_percent": value}, labels={"path": "/var"}, at=at)
        )
        at += every
    _write(store, batch)


@pytest.fixture
def store(state_location: str | Path) -> Iterator[Store]:
    s = Store(state_location)
    yield s
    s.close()


def test_it_rolls_raw_results_into_hourly_summaries_with_mean_min_and_max(store: Store) -> None:
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    values = [10.0, 20.0, 30.0, 40.0]
    _write(
        store,
        [
            result("db", "load", metrics={"load1": v}, at=base + timedelta(minutes=15 * i))
            for i, v in enumerate(values)
        ],
    )
    store.compact(base + timedelta(days=3), raw=RAW, hourly=HOURLY, daily=DAILY)
    points = store.series("db", "load", "load1", base - timedelta(days=1), base + timedelta(days=1))
    assert points == [Point(base, 25.0, 10.0, 40.0, "", 4, 3600.0)]
    assert points[0].middle == base + timedelta(minutes=30)


def test_up_is_rolled_as_the_share_of_ok_results(store: Store) -> None:
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    statuses = ["ok", "fail", "ok", "error"]
    _write(
        store,
        [
            result("db", "tcp", status=s, at=base + timedelta(minutes=10 * i))
            for i, s in enumerate(statuses)
        ],
    )
    store.compact(base + timedelta(days=3), raw=RAW, hourly=HOURLY, daily=DAILY)
    [point] = store.series("db", "tcp", "_up", base, base + timedelta(hours=1))
    assert (point.mean, point.n, point.lo, point.hi) == (0.5, 4, 0.0, 1.0)


def test_a_series_uses_raw_then_hourly_then_daily_without_overlap(store: Store) -> None:
    _disk_history(store, days=120, every=timedelta(minutes=30))
    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)
    points = store.series(
        "mail1", "disk", "used_percent", NOW - timedelta(days=200), NOW + timedelta(hours=1)
    )
    spans = [p.span for p in points]
    # oldest first: daily summaries, then hourly, then raw results; each block contiguous
    assert spans == sorted(spans, reverse=True)
    daily = [p for p in points if p.span == 86400]
    hourly = [p for p in points if p.span == 3600]
    raw = [p for p in points if p.span == 0]
    assert 25 <= len(daily) <= 31 and 86 * 24 <= len(hourly) <= 89 * 24 and 95 <= len(raw) <= 97
    # no stretch of time is covered twice
    for earlier, later in zip(points, points[1:], strict=False):
        assert earlier.at + timedelta(seconds=earlier.span) <= later.at
    # and the gaps between resolutions are under a day
    assert hourly[0].at - (daily[-1].at + timedelta(days=1)) < timedelta(days=1)
    assert raw[0].at - (hourly[-1].at + timedelta(hours=1)) < timedelta(hours=1)
    # every value still lies on the straight line it was written from (the first day is partial)
    for p in points[1:]:
        expected = 50.0 + (p.middle - (NOW - timedelta(days=120))).total_seconds() / 86400
        assert p.mean == pytest.approx(expected, abs=0.02)


def test_retention_drops_raw_hourly_and_daily_data_past_their_age(store: Store) -> None:
    _disk_history(store, days=40, every=timedelta(hours=1))
    store.compact(NOW, raw=timedelta(days=1), hourly=timedelta(days=10), daily=timedelta(days=30))
    oldest_raw = store.query("SELECT min(at) FROM results")[0][0]
    assert NOW.timestamp() - oldest_raw <= 86400
    hourly = store.query("SELECT min(bucket) FROM rollup WHERE resolution=3600")[0][0]
    assert NOW.timestamp() - hourly <= 10 * 86400
    daily = store.query(
        "SELECT min(bucket), count(*) FROM rollup WHERE resolution=86400 AND metric='_up'"
    )[0]
    assert NOW.timestamp() - daily[0] <= 30 * 86400 and daily[1] <= 31


def test_nothing_is_dropped_before_it_is_rolled_up(store: Store) -> None:
    # a retention shorter than the rollup delay must not lose the hour in between
    _disk_history(store, days=1, every=timedelta(minutes=5))
    store.compact(NOW, raw=timedelta(minutes=1), hourly=timedelta(hours=1), daily=DAILY)
    points = store.series("mail1", "disk", "used_percent", NOW - timedelta(days=2), NOW)
    covered = sum(p.span if p.span else 300 for p in points)
    assert covered >= 23.5 * 3600


def test_a_late_result_of_the_last_hour_is_still_counted(store: Store) -> None:
    # stamped 10:59 when its probe started, stored 11:03 when it finished, after a compaction at 11:02
    hour = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    _write(store, [result("db", "load", metrics={"load1": 1.0}, at=hour + timedelta(minutes=30))])
    store.compact(hour + timedelta(minutes=62), raw=RAW, hourly=HOURLY, daily=DAILY)
    _write(store, [result("db", "load", metrics={"load1": 3.0}, at=hour + timedelta(minutes=59))])
    store.compact(hour + timedelta(minutes=80), raw=RAW, hourly=HOURLY, daily=DAILY)
    [row] = store.query("SELECT n, total FROM rollup WHERE resolution=3600 AND metric='load1'")
    assert (row["n"], row["total"]) == (2, 4.0)


def test_compaction_is_idempotent_and_resumes_from_where_it_stopped(store: Store) -> None:
    _disk_history(store, days=5, every=timedelta(minutes=10))
    for hours in range(0, 48, 7):
        store.compact(NOW - timedelta(hours=48 - hours), raw=RAW, hourly=HOURLY, daily=DAILY)
    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)
    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)
    rows = store.query(
        "SELECT bucket, n FROM rollup WHERE resolution=3600 AND metric='used_percent' ORDER BY bucket"
    )
    assert rows[0]["n"] == 3  # the history starts at half past
    assert all(r["n"] == 6 for r in rows[1:])
    buckets = [r["bucket"] for r in rows]
    assert buckets == list(range(int(buckets[0]), int(buckets[-1]) + 1, 3600))
    daily = store.query("SELECT n FROM rollup WHERE resolution=86400 AND metric='used_percent'")
    assert [r["n"] for r in daily][1:-1] == [144] * (len(daily) - 2)


def test_the_catalog_remembers_which_kind_wrote_a_series_after_raw_results_are_gone(
    store: Store,
) -> None:
    old = NOW - timedelta(days=20)
    _write(
        store,
        [
            result(
                "mail1",
                "root-disk",
                kind="disk",
                metrics={"used_percent": 5},
                labels={"path": "/"},
                at=old,
            )
        ],
    )
    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)
    with store.transaction() as db:
        db.execute("DELETE FROM latest")
    assert store.query("SELECT count(*) FROM results")[0][0] == 0
    assert store.series_keys() == [("mail1", "root-disk", "/", "disk")]
    assert store.series_keys(since=NOW - timedelta(days=5)) == []


def test_metric_names_with_dots_are_read_as_one_name(store: Store) -> None:
    _write(store, [result("db", "nagios", metrics={"rta.ms": 4.0}, at=NOW - timedelta(minutes=5))])
    [point] = store.series("db", "nagios", "rta.ms", NOW - timedelta(hours=1), NOW)
    assert point.mean == 4.0


@pytest.mark.slow
def test_the_history_stays_bounded_over_months_of_results(tmp_path: Path) -> None:
    """Four months of 10 checks every 10 minutes, compacted hourly in daily batches: the file
    stops growing once the hourly retention is reached."""
    store = Store(tmp_path / "months.db")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    sizes = {}
    retention = {
        "raw": timedelta(days=2),
        "hourly": timedelta(days=30),
        "daily": timedelta(days=365),
    }
    for day in range(120):
        day_start = start + timedelta(days=day)
        batch = [
            result(
                f"srv{n}",
                "disk",
                metrics={"used_percent": 50 + day * 0.1, "free_bytes": 1e9},
                labels={"path": "/"},
                at=day_start + timedelta(minutes=10 * i),
            )
            for i in range(144)
            for n in range(10)
        ]
        _write(store, batch)
        store.compact(day_start + timedelta(days=1), **retention)
        if day in (60, 119):
            sizes[day] = store.query("PRAGMA page_count")[0][0]
    rows = store.query("SELECT resolution, count(*) AS c FROM rollup GROUP BY resolution")
    counts = {r["resolution"]: r["c"] for r in rows}
    # 10 series x 3 values (2 metrics and _up) x (30 days x 24 hourly, 120 daily)
    assert counts[3600] <= 10 * 3 * 31 * 24
    assert counts[86400] <= 10 * 3 * 121
    assert sizes[119] < sizes[60] * 1.2
    store.close()


def test_raw_results_can_come_summarised_per_hour_like_the_rollups(store: Store) -> None:
    _disk_history(store, days=3, every=timedelta(minutes=10))
    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)
    window = (NOW - timedelta(days=4), NOW)
    fine = store.series("mail1", "disk", "used_percent", *window)
    summed = store.series("mail1", "disk", "used_percent", *window, hourly=True)
    assert all(p.span == 3600 for p in summed)
    assert sum(p.n for p in summed) == sum(p.n for p in fine)
    # the hour raw results and rollups both cover ends at the same place
    first_raw = next(p for p in fine if p.span == 0)
    assert [p.at for p in summed if p.at >= first_raw.at.replace(minute=0)][
        0
    ] == first_raw.at.replace(minute=0)
    by_hour = {p.at: p.mean for p in summed}
    for p in fine:
        if p.span == 3600:
            assert by_hour[p.at] == pytest.approx(p.mean)


def test_a_check_s_history_for_the_console_covers_every_result_once_at_the_finest_resolution(
    store: Store,
) -> None:
    start = NOW - timedelta(days=10)
    outage = (NOW - timedelta(days=3), NOW - timedelta(days=3) + timedelta(hours=1))
    batch, at = [], start
    while at < NOW:
        failing = outage[0] <= at < outage[1] or at >= NOW - timedelta(minutes=20)
        batch.append(
            result(
                "web",
                "http",
                status="fail" if failing else "ok",
                metrics={"latency_s": 0.25},
                at=at,
            )
        )
        at += timedelta(minutes=10)
    _write(store, batch)
    store.compact(NOW, raw=RAW, hourly=HOURLY, daily=DAILY)
    spans, changed = store.check_history(
        ("web", "http", ""), NOW - timedelta(days=30), hourly_since=NOW - timedelta(hours=24)
    )
    assert sum(s[2] for s in spans) == len(batch)  # every result counted, none twice
    assert sum(s[3] for s in spans) == sum(r.status == "ok" for r in batch)
    assert sum(s[4] for s in spans) == len(batch) and sum(s[5] for s in spans) == pytest.approx(
        0.25 * len(batch)
    )
    day_start = (NOW - timedelta(hours=24)).replace(hour=0, minute=0).timestamp()
    assert all(size == 3600 for at, size, *_ in spans if at >= day_start)
    assert {size for at, size, *_ in spans if at < day_start} == {86400}
    ends = sorted((at, at + size) for at, size, *_ in spans)
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:], strict=False))  # no overlap
    assert changed == (NOW - timedelta(minutes=20)).timestamp()  # when it began to fail
