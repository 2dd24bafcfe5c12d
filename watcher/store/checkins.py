"""Pushed heartbeats (``checkins:``): what each job last said and when. The rules about
them live in ``watcher.checkins``; this module only keeps their rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watcher.store.core import StoreCore

__all__ = ["CheckinStore"]

# The columns a check-in's state writes, in order.
CHECKIN_FIELDS = (
    "last_ok_at",
    "last_fail_at",
    "exit_code",
    "note",
    "pings",
    "failures",
    "resumed_at",
)


class CheckinStore(StoreCore):
    def checkin(self, name: str) -> Any | None:
        """The stored row of one check-in (columns as in ``CHECKIN_FIELDS``, plus
        ``name`` and ``first_seen``), or None."""
        rows = self.query("SELECT * FROM checkins WHERE name=?", (name,))
        return rows[0] if rows else None

    def add_checkin(self, name: str, first_seen: datetime) -> None:
        """Records a check-in first seen now; one already there is left as it is."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO checkins (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, first_seen.isoformat()),
            )

    def save_checkin(self, name: str, values: dict[str, Any]) -> None:
        """Writes what a check-in last said; ``values`` holds every ``CHECKIN_FIELDS``."""
        with self.transaction() as db:
            db.execute(
                f"UPDATE checkins SET {', '.join(f + '=?' for f in CHECKIN_FIELDS)} WHERE name=?",
                (*(values[f] for f in CHECKIN_FIELDS), name),
            )
