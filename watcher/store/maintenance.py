"""Maintenance windows added by hand (``watcher maintenance add``, the HTTP API); removed
ones stay, stamped, for the record. What a window means lives in ``watcher.maintenance``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from watcher.store.core import StoreCore

__all__ = ["MaintenanceStore"]


class MaintenanceStore(StoreCore):
    def add_maintenance(
        self, name: str, spec: dict[str, Any], reason: str, by: str, now: datetime
    ) -> int:
        with self.transaction() as db:
            return db.insert(
                "INSERT INTO maintenance (name, spec, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
                (name, json.dumps(spec), reason, by, now.isoformat()),
            )

    def remove_maintenance(self, window_id: int, by: str, now: datetime) -> bool:
        """Stamps a live window removed; False if there is none with that id."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE maintenance SET removed_at=?, removed_by=? WHERE id=? AND removed_at IS NULL",
                (now.isoformat(), by, window_id),
            )
            return cursor.rowcount > 0

    def maintenance_windows(self, *, removed: bool = False) -> list[Any]:
        """Rows of the live windows, or of the removed ones, oldest first."""
        return self.query(
            "SELECT id, name, spec, reason, created_by, created_at, removed_at, removed_by"
            f" FROM maintenance WHERE removed_at IS {'NOT ' if removed else ''}NULL ORDER BY id"
        )

    def maintenance_stamp(self) -> tuple[Any, ...]:
        """Changes whenever a window is added or removed (cheap to read each step)."""
        return tuple(self.query("SELECT count(*), max(id), max(removed_at) FROM maintenance")[0])
