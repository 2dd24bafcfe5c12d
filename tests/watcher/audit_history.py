"""Generated results history for the audit tests, written through the store as the engine
writes it and compacted as the daemon compacts it (raw 2 days, hourly 90, daily 730)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from probes.base import Result
from tests.helpers import result
from watcher.store import Store

# Monday 23 Nov 2026 08:00 IST: a weekly report's slot
NOW = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
RETENTION = {"raw": timedelta(days=2), "hourly": timedelta(days=90), "daily": timedelta(days=730)}


def write(store: Store, results: list[Result]) -> None:
    with store.transaction() as db:
        store.save_results(db, results)


def series(
    store: Store,
    target: str,
    probe: str,
    metrics: Callable[[float, random.Random], dict[str, float] | None],
    *,
    days: float = 30,
    every: timedelta = timedelta(minutes=10),
    labels: dict[str, str] | None = None,
    kind: str | None = None,
    status: Callable[[float], str] | None = None,
    end: datetime = NOW,
    seed: int = 7,
) -> None:
    """Results from ``end - days`` to ``end``; ``metrics(day, rng)`` gives each one's figures
    (``day``: days since the start, a float), None to skip that moment."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    batch = []
    at = start
    while at < end:
        day = (at - start).total_seconds() / 86400
        figures = metrics(day, rng)
        if figures is not None:
            batch.append(
                result(
                    target, probe, kind=kind or probe, metrics=figures, labels=labels, at=at,
                    status=status(day) if status else "ok",
                )
            )
        at += every
    write(store, batch)


def compact(store: Store, now: datetime = NOW) -> None:
    store.compact(now, **RETENTION)
