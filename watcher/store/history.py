"""Results: the latest per check, the raw history, and its hourly and daily roll-ups
(compaction), read back as series for graphs, audits and forecasts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from probes.base import Result
from watcher.store.backend import Tx
from watcher.store.core import StoreCore
from watcher.store.dialect import Dialect

__all__ = ["DAY", "HOUR", "ROLLUP_DELAY", "HistoryStore", "Point"]

HOUR = 3600
DAY = 86400
# How long after an hour ends its results are rolled up: results are stamped when the
# probe starts and stored when it finishes, at most a timeout later.
ROLLUP_DELAY = timedelta(minutes=15)


class Point(NamedTuple):
    """A moment of a series: one raw result (``span`` 0) or an hourly or daily summary
    starting at ``at`` and covering ``span`` seconds of ``n`` results."""

    at: datetime
    mean: float
    lo: float
    hi: float
    item: str
    n: int = 1
    span: float = 0.0

    @property
    def middle(self) -> datetime:
        return self.at + timedelta(seconds=self.span / 2)


_UP = "CASE WHEN status = 'ok' THEN 1 ELSE 0 END"
_ROLLUP_UPSERT = (
    " ON CONFLICT (resolution, target, probe, item, metric, bucket) DO UPDATE SET"
    " n=excluded.n, total=excluded.total, lo=excluded.lo, hi=excluded.hi"
)


class HistoryStore(StoreCore):
    if TYPE_CHECKING:  # from MetaStore, which the Store class combines with this one

        def _meta(self, db: Tx, key: str, default: str) -> str: ...
        def _set_meta(self, db: Tx, key: str, value: str) -> None: ...

    def save_results(self, db: Tx, results: list[Result] | Any) -> None:
        history = []
        latest = []
        for r in results:
            history.append(
                (
                    r.at.timestamp(),
                    r.target,
                    r.probe,
                    r.item,
                    r.kind,
                    r.status,
                    r.reason,
                    r.message,
                    json.dumps(r.metrics),
                    r.duration_s,
                )
            )
            latest.append((r.target, r.probe, r.item, json.dumps(r.to_dict())))
        if history:
            db.executemany(
                "INSERT INTO results (at, target, probe, item, kind, status, reason, message, metrics, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                history,
            )
            db.executemany(
                "INSERT INTO latest (target, probe, item, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (target, probe, item) DO UPDATE SET data=excluded.data",
                # One batch may hold a check twice: the last one stands, as before.
                list({(t, p, i): (t, p, i, d) for t, p, i, d in latest}.values()),
            )
            self.writes += 2 * len(history)

    def forget_latest(self, db: Tx, keys: Any) -> None:
        """Drops latest results that no longer stand (their history stays)."""
        db.executemany("DELETE FROM latest WHERE target=? AND probe=? AND item=?", list(keys))

    def latest(self, target: str | None = None) -> list[Result]:
        if target is None:
            rows = self.query("SELECT data FROM latest ORDER BY target, probe, item")
        else:
            rows = self.query(
                "SELECT data FROM latest WHERE target=? ORDER BY probe, item", (target,)
            )
        return [Result.from_dict(json.loads(r["data"])) for r in rows]

    def recent_results(
        self, target: str, probe: str, item: str, limit: int = 10
    ) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT at, status, reason, message, metrics FROM results WHERE target=? AND probe=? AND item=?"
            " ORDER BY at DESC LIMIT ?",
            (target, probe, item, limit),
        )
        return [
            {
                "at": datetime.fromtimestamp(r["at"], UTC),
                "status": r["status"],
                "reason": r["reason"],
                "message": r["message"],
                "metrics": json.loads(r["metrics"]),
            }
            for r in reversed(rows)
        ]

    def check_history(
        self, key: tuple[str, str, str], since: datetime, *, hourly_since: datetime
    ) -> tuple[list[tuple[float, float, int, int, int, float]], float | None]:
        """One check's availability and latency since ``since``, for the console's bars.

        Returns (spans, changed_at): spans are (start, seconds, results, ok results,
        latency samples, latency sum) per hour from ``hourly_since``'s day on (raw results
        where not yet rolled, hourly summaries before them) and per day before that, never
        two resolutions for one stretch; ``changed_at`` is when the check's status last
        changed, as far as raw results tell (None: not in what is kept raw).
        """
        target, probe, item = key
        dialect: Dialect = self.dialect
        # Hours from the start of hourly_since's day: daily summaries cover whole days only.
        s, h = since.timestamp(), _floor(hourly_since.timestamp(), DAY)
        latency, latency_args = dialect.json_number("metrics", "latency_s")
        marks = self.query("SELECT value FROM meta WHERE key=?", ("rolled_hourly",))
        rolled = float(marks[0]["value"]) if marks else 0.0
        spans: list[tuple[float, float, int, int, int, float]] = []
        raw = self.query(
            f"SELECT {dialect.bucket('at', HOUR)} AS b, count(*) AS n, sum({_UP}) AS up,"
            f" count({latency}) AS ln, coalesce(sum({latency}), 0) AS lt, min(at) AS first"
            " FROM results WHERE target=? AND probe=? AND item=? AND at>=? GROUP BY b ORDER BY b",
            [*latency_args, *latency_args, target, probe, item, max(h, rolled)],
        )
        covered = float(raw[0]["first"]) if raw else None
        spans.extend(
            (float(r["b"]), HOUR, int(r["n"]), int(r["up"]), int(r["ln"]), float(r["lt"]))
            for r in raw
        )
        # Without statistics SQLite reads the bucket index (every check's rows, 5 ms a
        # check at 10,000 checks); its primary key finds this check's rows directly.
        by_key = " INDEXED BY sqlite_autoindex_rollup_1" if dialect.name == "sqlite" else ""
        for resolution, start in ((HOUR, h), (DAY, s)):
            end = covered if covered is not None else 9e18
            rows = self.query(
                f"SELECT bucket, metric, n, total FROM rollup{by_key}"
                " WHERE resolution=? AND target=? AND probe=? AND item=?"
                " AND metric IN ('_up', 'latency_s') AND bucket>=? AND bucket<? ORDER BY bucket",
                (resolution, target, probe, item, start, end),
            )
            merged: dict[float, list[float]] = {}
            for r in rows:
                if r["bucket"] + resolution > end:
                    continue
                span = merged.setdefault(float(r["bucket"]), [0, 0, 0, 0.0])
                if r["metric"] == "_up":
                    span[0], span[1] = r["n"], r["total"]
                else:
                    span[2], span[3] = r["n"], r["total"]
            spans.extend(
                (b, resolution, int(v[0]), int(v[1]), int(v[2]), float(v[3]))
                for b, v in merged.items()
            )
            if merged:
                covered = min(merged)
        spans.sort()
        changed = self.query(
            "SELECT min(at) AS at FROM results WHERE target=? AND probe=? AND item=? AND at > coalesce("
            "(SELECT max(at) FROM results WHERE target=? AND probe=? AND item=? AND status !="
            " (SELECT status FROM results WHERE target=? AND probe=? AND item=? ORDER BY at DESC LIMIT 1)),"
            " (SELECT min(at) - 1 FROM results WHERE target=? AND probe=? AND item=?))",
            (target, probe, item) * 4,
        )
        return spans, changed[0]["at"] if changed else None

    def compact(
        self, now: datetime, *, raw: timedelta, hourly: timedelta, daily: timedelta
    ) -> None:
        """Rolls complete hours of raw results into hourly summaries and complete days of
        those into daily ones, then drops what is past its retention.

        An hour is rolled once it ended ``ROLLUP_DELAY`` ago, so a result stamped when its
        probe started but stored when it finished still counts. Nothing is dropped before
        it is rolled, whatever the retention says, so the history has no holes.
        """
        now_s = now.timestamp()
        hour_end = _floor(now_s - ROLLUP_DELAY.total_seconds(), HOUR)
        day_end = _floor(hour_end, DAY)
        with self.transaction() as db:
            rolled = float(self._meta(db, "rolled_hourly", "0"))
            if not rolled:
                oldest = db.scalar("SELECT min(at) FROM results")
                rolled = _floor(oldest, HOUR) if oldest is not None else hour_end
            if rolled < hour_end:
                _rollup_raw(db, rolled, hour_end)
                _catalog(db, rolled, hour_end)
                self._set_meta(db, "rolled_hourly", str(hour_end))
                rolled = hour_end
            rolled_days = float(self._meta(db, "rolled_daily", "0"))
            if not rolled_days:
                oldest = db.scalar("SELECT min(bucket) FROM rollup WHERE resolution=3600")
                rolled_days = _floor(oldest, DAY) if oldest is not None else day_end
            if rolled_days < day_end:
                db.execute(
                    "INSERT INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
                    " SELECT 86400, (bucket / 86400) * 86400, target, probe, item, metric, sum(n), sum(total),"
                    " min(lo), max(hi) FROM rollup WHERE resolution=3600 AND bucket >= ? AND bucket < ?"
                    " GROUP BY 2, target, probe, item, metric" + _ROLLUP_UPSERT,
                    (rolled_days, day_end),
                )
                self._set_meta(db, "rolled_daily", str(day_end))
                rolled_days = day_end
            db.execute(
                "DELETE FROM results WHERE at < ?", (min(now_s - raw.total_seconds(), rolled),)
            )
            db.execute(
                "DELETE FROM rollup WHERE resolution=3600 AND bucket < ?",
                (min(now_s - hourly.total_seconds(), rolled_days),),
            )
            db.execute(
                "DELETE FROM rollup WHERE resolution=86400 AND bucket < ?",
                (now_s - daily.total_seconds(),),
            )
            db.execute(
                "DELETE FROM checks WHERE last_at < ?",
                (now_s - max(raw, hourly, daily).total_seconds(),),
            )
            db.execute(
                f"DELETE FROM latest WHERE {db.dialect.json_text('data', 'at')} < ?",
                ((now - max(raw, timedelta(days=1))).isoformat(),),
            )
            # A delivered action's payload (the whole rendered ticket, ~7 KB) goes with the
            # raw results; its row stays as the record of the delivery.
            db.execute(
                "UPDATE outbox SET payload='{}' WHERE state='done' AND due_at < ? AND payload != '{}'",
                (now_s - raw.total_seconds(),),
            )

    def series(
        self,
        target: str,
        probe: str,
        metric: str,
        start: datetime,
        end: datetime,
        *,
        item: str | None = None,
        hourly: bool = False,
    ) -> list[Point]:
        """One metric's points in [start, end) from the finest data kept: raw results where
        they still exist, hourly summaries before those, daily ones before those, never two
        resolutions for the same stretch of one item. ``_up`` is 1 for ok, 0 otherwise.
        ``hourly``: raw results come summarised per hour too (cheaper for long periods).

        A summary belongs to the period if its middle does. Sorted by time, then item.
        """
        dialect: Dialect = self.dialect
        s, e = start.timestamp(), end.timestamp()
        item_sql, item_args = ("AND item=?", [item]) if item is not None else ("", [])
        value_args: list[Any]
        if metric == "_up":
            value_sql, value_args = _UP, []
        else:
            value_sql, value_args = dialect.json_number("metrics", metric)
        raw = f"SELECT at, {value_sql} AS v, item FROM results WHERE target=? AND probe=? {item_sql} AND at>=? AND at<?"
        args = [*value_args, target, probe, *item_args, s, e]
        points: list[Point] = []
        covered_from: dict[str, float] = {}
        if hourly:
            rows = self.query(
                f"SELECT {dialect.bucket('at', HOUR)} AS b, min(at) AS first, count(*) AS n, sum(v) AS total,"
                f" min(v) AS lo, max(v) AS hi, item FROM ({raw}) AS r WHERE v IS NOT NULL GROUP BY b, item ORDER BY b",
                args,
            )
            for r in rows:
                points.append(
                    Point(
                        datetime.fromtimestamp(r["b"], UTC),
                        float(r["total"]) / r["n"],
                        float(r["lo"]),
                        float(r["hi"]),
                        r["item"],
                        int(r["n"]),
                        float(HOUR),
                    )
                )
                covered_from.setdefault(r["item"], r["first"])
        else:
            for r in self.query(
                f"SELECT * FROM ({raw}) AS r WHERE v IS NOT NULL ORDER BY at", args
            ):
                value = float(r["v"])
                points.append(
                    Point(datetime.fromtimestamp(r["at"], UTC), value, value, value, r["item"])
                )
                covered_from.setdefault(r["item"], r["at"])
        for resolution in (HOUR, DAY):
            half = resolution / 2
            rows = self.query(
                f"SELECT bucket, n, total, lo, hi, item FROM rollup WHERE resolution=? AND target=? AND probe=?"
                f" AND metric=? {item_sql} AND bucket>=? AND bucket<? ORDER BY bucket",
                [resolution, target, probe, metric, *item_args, s - half, e - half],
            )
            earliest: dict[str, float] = {}
            for r in rows:
                limit = covered_from.get(r["item"])
                if limit is not None and r["bucket"] + resolution > limit:
                    continue
                points.append(
                    Point(
                        datetime.fromtimestamp(r["bucket"], UTC),
                        r["total"] / r["n"],
                        float(r["lo"]),
                        float(r["hi"]),
                        r["item"],
                        int(r["n"]),
                        float(resolution),
                    )
                )
                earliest.setdefault(r["item"], r["bucket"])
            covered_from.update(earliest)
        points.sort(key=lambda p: (p.at, p.item))
        return points

    def last_value(
        self, target: str, probe: str, metric: str, item: str, start: datetime, end: datetime
    ) -> float | None:
        """The newest raw value of one metric of one item in [start, end); None if no
        result kept raw in that stretch has it (compaction keeps only summaries)."""
        value_sql, value_args = self.dialect.json_number("metrics", metric)
        rows = self.query(
            f"SELECT {value_sql} AS v FROM results WHERE target=? AND probe=?"
            f" AND item=? AND at>=? AND at<? AND {value_sql} IS NOT NULL"
            " ORDER BY at DESC LIMIT 1",
            (
                *value_args,
                target,
                probe,
                item,
                start.timestamp(),
                end.timestamp(),
                *value_args,
            ),
        )
        return float(rows[0]["v"]) if rows else None

    def series_keys(self, since: datetime | None = None) -> list[tuple[str, str, str, str]]:
        """(target, probe, item, kind) of every series with history, newest knowledge first:
        the latest results, then the catalog that compaction keeps."""
        found: dict[tuple[str, str, str], str] = {}
        for r in self.latest():
            found.setdefault(r.key, r.kind)
        cutoff = since.timestamp() if since is not None else 0.0
        for row in self.query(
            "SELECT target, probe, item, kind FROM checks WHERE last_at >= ?", (cutoff,)
        ):
            found.setdefault((row["target"], row["probe"], row["item"]), row["kind"])
        return sorted((t, p, i, k) for (t, p, i), k in found.items())


def _floor(seconds: float, size: int) -> float:
    return float(int(seconds // size) * size)


def _catalog(db: Tx, start: float, end: float) -> None:
    """Remembers the kind behind each rolled series (the rollup rows do not carry it).
    A series keeps its kind; max() picks one where PostgreSQL allows no bare column."""
    db.execute(
        "INSERT INTO checks (target, probe, item, kind, last_at)"
        " SELECT target, probe, item, max(kind), max(at) FROM results WHERE at >= ? AND at < ?"
        " GROUP BY target, probe, item"
        " ON CONFLICT (target, probe, item) DO UPDATE SET kind=excluded.kind, last_at=excluded.last_at"
        " WHERE excluded.last_at >= checks.last_at",
        (start, end),
    )


def _rollup_raw(db: Tx, start: float, end: float) -> None:
    each, key, value, numeric = db.dialect.json_numbers("results.metrics")
    bucket = db.dialect.bucket("at", HOUR)
    db.execute(
        "INSERT INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
        f" SELECT 3600, {bucket} AS b, target, probe, item, {key}, count(*),"
        f" sum({value}), min({value}), max({value}) FROM results, {each}"
        f" WHERE at >= ? AND at < ? AND {numeric} GROUP BY b, target, probe, item, {key}"
        + _ROLLUP_UPSERT,
        (start, end),
    )
    db.execute(
        "INSERT INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
        f" SELECT 3600, {bucket} AS b, target, probe, item, '_up', count(*),"
        f" sum({_UP}), min({_UP}), max({_UP}) FROM results"
        " WHERE at >= ? AND at < ? GROUP BY b, target, probe, item" + _ROLLUP_UPSERT,
        (start, end),
    )
