"""Alerts the Alertmanager receiver keeps across restarts (``watcher.alertmanager_api``
says what they mean)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from watcher.store.core import StoreCore

__all__ = ["ALERT_COLUMNS", "AlertStore"]

ALERT_COLUMNS = (
    "key",
    "target",
    "target_label",
    "status",
    "starts_at",
    "heard_at",
    "alert",
    "source",
)


class AlertStore(StoreCore):
    def kept_alerts(self) -> list[Any]:
        return self.query("SELECT * FROM alertmanager_alerts")

    def keep_alerts(self, rows: Sequence[Sequence[Any]]) -> None:
        """Writes alerts, each a row in ``ALERT_COLUMNS`` order (replacing by key)."""
        updates = ", ".join(f"{c}=excluded.{c}" for c in ALERT_COLUMNS[1:])
        with self.transaction() as db:
            db.executemany(
                f"INSERT INTO alertmanager_alerts ({', '.join(ALERT_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(ALERT_COLUMNS))})"
                f" ON CONFLICT (key) DO UPDATE SET {updates}",
                [tuple(r) for r in rows],
            )

    def forget_alerts(self, keys: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM alertmanager_alerts WHERE key=?", [(k,) for k in keys])
