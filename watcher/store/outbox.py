"""The outbox: what the helpdesks and pagers are to be told, and the tickets they gave.

A delivery is two-phase: a durable "attempting" mark is committed before the call to
the helpdesk or pager, and the outcome after it. An outcome that cannot be written (a
full volume, a database server away) is kept in memory, its action is not handed out
again, and it is written when the state takes writes again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.store.backend import Tx
from watcher.store.core import StoreCore
from watcher.store.errors import StateWriteError

__all__ = ["OutboxRow", "OutboxStore", "Outcome"]

log = logging.getLogger("watcher.store")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    incident_id: int
    integration: str
    role: str
    action: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: str
    due_at: float
    last_error: str | None
    done_at: str | None
    attempt_started: float | None = None  # set: an attempt began and has no outcome yet
    interrupted: int = 0  # attempts a stopped watcher left without an outcome


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery attempt, to be written to the outbox row: ``done``,
    ``failed``, or ``pending`` again (a retry at ``due``); with the ticket it opened or
    found, if any (external id, url)."""

    action_id: int
    state: str
    at: datetime
    error: str | None = None
    due: datetime | None = None
    ticket: tuple[int, str, str, str | None] | None = None  # incident, integration, id, url


class OutboxStore(StoreCore):
    _last_counts: dict[str, int] = {}  # replaced, never changed in place

    def enqueue(
        self,
        db: Tx,
        *,
        incident_id: int,
        integration: str,
        role: str,
        action: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> int:
        action_id = db.insert(
            "INSERT INTO outbox (incident_id, integration, role, action, payload, created_at, due_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                incident_id,
                integration,
                role,
                action,
                json.dumps(payload),
                now.isoformat(),
                now.timestamp(),
            ),
        )
        self.writes += 1
        return action_id

    def due_actions(
        self, now: datetime, limit: int = 50, *, integration: str | None = None
    ) -> list[OutboxRow]:
        """Pending actions whose time has come and that no earlier action for the same
        incident and integration is still waiting on (comments follow their ticket);
        none that this process is delivering or has delivered without writing it yet."""
        only = "AND o.integration=?" if integration is not None else ""
        params: list[Any] = [now.timestamp()]
        if integration is not None:
            params.append(integration)
        held, held_params = self._held_sql("o.id")
        rows = self.query(
            f"SELECT * FROM outbox o WHERE o.state='pending' AND o.due_at <= ? {only} {held}"
            " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.incident_id=o.incident_id"
            " AND p.integration=o.integration AND p.id < o.id AND p.state='pending')"
            " ORDER BY o.id LIMIT ?",
            (*params, *held_params, limit),
        )
        return [_outbox_row(r) for r in rows]

    def next_due(self, integration: str | None = None) -> float | None:
        held, held_params = self._held_sql("id")
        if integration is None:
            row = self.query(
                f"SELECT min(due_at) FROM outbox WHERE state='pending' {held}", held_params
            )
        else:
            row = self.query(
                f"SELECT min(due_at) FROM outbox WHERE state='pending' AND integration=? {held}",
                (integration, *held_params),
            )
        return row[0][0] if row else None

    def _held_sql(self, column: str) -> tuple[str, list[int]]:
        with self._lock:
            held = sorted(self._in_flight | set(self._unrecorded))
        if not held:
            return "", []
        return f"AND {column} NOT IN ({','.join('?' * len(held))})", held

    def mark_attempting(self, action_id: int, now: datetime) -> bool:
        """Commits the "attempting" mark before an action is sent; False (and nothing
        may be sent) if the file cannot take it. A mark still set when the next one is
        made counts as an interrupted attempt."""
        try:
            with self.transaction() as db:
                # In a cluster the row is claimed under a row lock first: another member
                # delivering it keeps it.
                if self.claim is not None and not self.claim(db, action_id):
                    return False
                db.execute(
                    "UPDATE outbox SET interrupted=interrupted"
                    " + CASE WHEN attempt_started IS NULL THEN 0 ELSE 1 END,"
                    " attempt_started=? WHERE id=?",
                    (now.timestamp(), action_id),
                )
        except StateWriteError:
            return False
        if self.holds is not None and not self.holds():
            return False  # the lease ran out since the mark: the next holder sends it
        with self._lock:
            self._in_flight.add(action_id)
        return True

    def record(self, outcome: Outcome) -> bool:
        """Writes a delivery's outcome and clears its attempting mark; if the file cannot
        take it, keeps it to write later (``flush_outcomes``). True if written now."""
        with self._lock:
            self._in_flight.discard(outcome.action_id)
            self._unrecorded[outcome.action_id] = outcome
            return self._write_outcome(outcome)

    def flush_outcomes(self) -> int:
        """Writes the outcomes kept while the file could not take them; how many remain."""
        with self._lock:
            for outcome in list(self._unrecorded.values()):
                if not self._write_outcome(outcome):
                    break
            return len(self._unrecorded)

    def _write_outcome(self, outcome: Outcome) -> bool:
        try:
            with self.transaction() as db:
                db.execute(
                    "UPDATE outbox SET state=?, attempts=attempts+1, last_error=?, due_at=coalesce(?, due_at),"
                    " done_at=?, attempt_started=NULL WHERE id=?",
                    (
                        outcome.state,
                        outcome.error,
                        outcome.due.timestamp() if outcome.due else None,
                        None if outcome.state == "pending" else outcome.at.isoformat(),
                        outcome.action_id,
                    ),
                )
                if outcome.ticket is not None:
                    incident_id, integration, external_id, url = outcome.ticket
                    _set_ticket(db, incident_id, integration, external_id, url, outcome.at)
        except StateWriteError:
            return False
        del self._unrecorded[outcome.action_id]
        return True

    @property
    def unrecorded(self) -> int:
        """Delivery outcomes waiting in memory for the file to take writes."""
        return len(self._unrecorded)

    def outbox(
        self, *, incident_id: int | None = None, states: Iterable[str] | None = None
    ) -> list[OutboxRow]:
        sql = "SELECT * FROM outbox"
        clauses: list[str] = []
        params: list[Any] = []
        if incident_id is not None:
            clauses.append("incident_id=?")
            params.append(incident_id)
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [_outbox_row(r) for r in self.query(sql + " ORDER BY id", params)]

    def outbox_counts(self) -> dict[str, int]:
        """Actions per state. While the state cannot be read (a database server away),
        the last counts read: /metrics keeps answering, and says the state is unwritable."""
        try:
            counts = {
                r[0]: r[1] for r in self.query("SELECT state, count(*) FROM outbox GROUP BY state")
            }
        except StateWriteError:
            return dict(self._last_counts)
        self._last_counts = counts
        return counts

    def mark_done(self, action_id: int, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state='done', done_at=?, attempts=attempts+1, last_error=NULL WHERE id=?",
                (now.isoformat(), action_id),
            )

    def mark_retry(self, action_id: int, error: str, due: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, due_at=? WHERE id=?",
                (error, due.timestamp(), action_id),
            )

    def mark_failed(self, action_id: int, error: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE outbox SET state='failed', attempts=attempts+1, last_error=?, done_at=? WHERE id=?",
                (error, now.isoformat(), action_id),
            )

    # -------------------------------------------------------------------- tickets

    def set_ticket(
        self, incident_id: int, integration: str, external_id: str, url: str | None, now: datetime
    ) -> None:
        with self.transaction() as db:
            _set_ticket(db, incident_id, integration, external_id, url, now)

    def ticket(self, incident_id: int, integration: str) -> tuple[str, str | None] | None:
        rows = self.query(
            "SELECT external_id, url FROM tickets WHERE incident_id=? AND integration=?",
            (incident_id, integration),
        )
        return (rows[0]["external_id"], rows[0]["url"]) if rows else None

    def tickets(self, incident_id: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT integration, external_id, url FROM tickets WHERE incident_id=?", (incident_id,)
        )
        return [dict(r) for r in rows]


def _set_ticket(
    db: Tx, incident_id: int, integration: str, external_id: str, url: str | None, at: datetime
) -> None:
    db.execute(
        "INSERT INTO tickets (incident_id, integration, external_id, url, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (incident_id, integration) DO UPDATE SET"
        " external_id=excluded.external_id, url=excluded.url, created_at=excluded.created_at",
        (incident_id, integration, external_id, url, at.isoformat()),
    )


def _outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        incident_id=r["incident_id"],
        integration=r["integration"],
        role=r["role"],
        action=r["action"],
        payload=json.loads(r["payload"]),
        state=r["state"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        due_at=r["due_at"],
        last_error=r["last_error"],
        done_at=r["done_at"],
        attempt_started=r["attempt_started"],
        interrupted=r["interrupted"],
    )
