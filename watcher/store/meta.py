"""Small things the store keeps: named values (``meta``, e.g. how far history is rolled
up) and the ack and resolve requests the CLI queues for the daemon (``commands``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watcher.store.backend import Tx
from watcher.store.core import StoreCore

__all__ = ["MetaStore"]


class MetaStore(StoreCore):
    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            self._set_meta(db, key, value)

    def _meta(self, db: Tx, key: str, default: str) -> str:
        value = db.scalar("SELECT value FROM meta WHERE key=?", (key,))
        return default if value is None else value

    def _set_meta(self, db: Tx, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------------- commands

    def request(self, kind: str, incident_id: int, by: str, note: str, now: datetime) -> int:
        """Queues a request (ack, resolve) for whichever process owns the incidents."""
        with self.transaction() as db:
            return db.insert(
                "INSERT INTO commands (kind, incident_id, requested_by, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (kind, incident_id, by, note, now.isoformat()),
            )

    def pending_requests(self) -> list[Any]:
        return self.query("SELECT * FROM commands WHERE done_at IS NULL ORDER BY id")

    def finish_request(self, request_id: int, outcome: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE commands SET done_at=?, outcome=? WHERE id=?",
                (now.isoformat(), outcome, request_id),
            )

    def request_outcome(self, request_id: int) -> str | None:
        rows = self.query(
            "SELECT outcome FROM commands WHERE id=? AND done_at IS NOT NULL", (request_id,)
        )
        return rows[0]["outcome"] if rows else None
