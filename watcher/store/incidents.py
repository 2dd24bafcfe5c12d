"""Incidents and their timelines. Every change to an incident is written in the same
transaction as the outbox rows it causes (``watcher.store.outbox``): a crash loses
neither."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from watcher.engine.incident import Event, Incident
from watcher.store.backend import Tx
from watcher.store.core import StoreCore

__all__ = ["IncidentStore"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class IncidentStore(StoreCore):
    def save_incident(self, db: Tx, incident: Incident, now: datetime) -> int:
        incident.updated_at = now
        row = (
            incident.fingerprint,
            incident.state,
            incident.priority,
            incident.target,
            incident.group,
            _iso(incident.opened_at),
            _iso(incident.acknowledged_at),
            _iso(incident.resolved_at),
            now.isoformat(),
        )
        if incident.id is None:
            incident.id = db.insert(
                "INSERT INTO incidents (fingerprint, state, priority, target, grp, opened_at, acknowledged_at,"
                " resolved_at, updated_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                row,
            )
        db.execute(
            "UPDATE incidents SET fingerprint=?, state=?, priority=?, target=?, grp=?, opened_at=?,"
            " acknowledged_at=?, resolved_at=?, updated_at=?, data=? WHERE id=?",
            (*row, json.dumps(incident.to_dict()), incident.id),
        )
        self.writes += 1
        return incident.id

    def delete_incident(self, db: Tx, incident_id: int) -> None:
        db.execute("DELETE FROM events WHERE incident_id=?", (incident_id,))
        db.execute("DELETE FROM incidents WHERE id=?", (incident_id,))
        self.writes += 1

    def add_events(self, db: Tx, incident_id: int, events: Iterable[Event]) -> None:
        rows = [
            (
                incident_id,
                e.at.isoformat(),
                e.kind,
                e.message,
                json.dumps(e.data) if e.data else None,
            )
            for e in events
        ]
        if rows:
            db.executemany(
                "INSERT INTO events (incident_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self.writes += len(rows)

    def incident(self, incident_id: int) -> Incident | None:
        rows = self.query("SELECT data FROM incidents WHERE id=?", (incident_id,))
        return Incident.from_dict(json.loads(rows[0]["data"])) if rows else None

    def latest_incident(self, fingerprint: str) -> dict[str, Any] | None:
        """Id, state and priority of the newest incident with this fingerprint."""
        rows = self.query(
            "SELECT id, state, priority FROM incidents WHERE fingerprint=? ORDER BY id DESC LIMIT 1",
            (fingerprint,),
        )
        return (
            {"id": rows[0]["id"], "state": rows[0]["state"], "priority": rows[0]["priority"]}
            if rows
            else None
        )

    def incidents(
        self,
        *,
        states: Iterable[str] | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[Incident]:
        sql = "SELECT data FROM incidents"
        clauses: list[str] = []
        params: list[Any] = []
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if since is not None:
            clauses.append("(resolved_at IS NULL OR resolved_at >= ?)")
            params.append(since.isoformat())
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [Incident.from_dict(json.loads(r["data"])) for r in self.query(sql, params)]

    def incidents_between(self, start: datetime, end: datetime) -> list[Incident]:
        """Incidents opened in [start, end), for reports."""
        rows = self.query(
            "SELECT data FROM incidents WHERE opened_at >= ? AND opened_at < ? ORDER BY opened_at",
            (start.isoformat(), end.isoformat()),
        )
        return [Incident.from_dict(json.loads(r["data"])) for r in rows]

    def working_set(self, reopen_within: timedelta, now: datetime) -> dict[str, Incident]:
        """The newest incident per fingerprint that can still change: active, pending,
        or resolved recently enough to reopen."""
        since = (now - reopen_within).isoformat()
        rows = self.query(
            "SELECT data FROM incidents WHERE id IN (SELECT max(id) FROM incidents GROUP BY fingerprint)"
            " AND (state != 'resolved' OR resolved_at >= ?)",
            (since,),
        )
        out = {}
        for row in rows:
            incident = Incident.from_dict(json.loads(row["data"]))
            out[incident.fingerprint] = incident
        return out

    def events(self, incident_id: int, limit: int = 200) -> list[Event]:
        rows = self.query(
            "SELECT at, kind, message, data FROM events WHERE incident_id=? ORDER BY id DESC LIMIT ?",
            (incident_id, limit),
        )
        return [
            Event(
                r["kind"],
                r["message"],
                datetime.fromisoformat(r["at"]),
                json.loads(r["data"]) if r["data"] else {},
            )
            for r in reversed(rows)
        ]
