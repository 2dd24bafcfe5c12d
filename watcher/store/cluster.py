"""The cluster's tables on PostgreSQL: members with epochs and heartbeats, the membership
generation, delivery claims, and the fence every write transaction passes.

A member's lease is its heartbeat measured with the database's clock (``now()``), so a
member whose own clock stalled (paused, swapped out) cannot believe it still holds it.
The generation counts membership changes: ownership of checks is computed from one
generation, and a write made under an older one is refused (``Fenced``), so two members
never both act for one check. SQLite has no cluster: these statements are PostgreSQL's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from watcher.store.backend import Tx
from watcher.store.errors import StateWriteError

__all__ = ["ClusterTables", "Fenced", "Lease", "Member"]

log = logging.getLogger("watcher.store")

_DDL = (
    "CREATE TABLE IF NOT EXISTS cluster_nodes ("
    " name TEXT PRIMARY KEY, epoch BIGINT NOT NULL, member BOOLEAN NOT NULL,"
    " joined_at TIMESTAMPTZ NOT NULL, heartbeat_at TIMESTAMPTZ NOT NULL,"
    " listen TEXT, holds BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS cluster_state (id INTEGER PRIMARY KEY, generation BIGINT NOT NULL)",
    "INSERT INTO cluster_state (id, generation) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS cluster_claims ("
    " action_id BIGINT PRIMARY KEY, node TEXT NOT NULL, epoch BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cluster_once (job TEXT PRIMARY KEY, last_at TIMESTAMPTZ NOT NULL)",
)


class Fenced(StateWriteError):
    """A write refused because this member no longer holds its lease or computed its
    share from an older membership: nothing of the transaction was committed."""


@dataclass(frozen=True)
class Lease:
    """What a member holds: its name, the epoch of its (re)join, the membership
    generation its share was computed from, and the lease in seconds."""

    node: str
    epoch: int
    generation: int
    seconds: float
    members: tuple[str, ...] = ()  # the membership of that generation, sorted


@dataclass(frozen=True)
class Member:
    name: str
    epoch: int
    live: bool
    member: bool
    age: float  # seconds since its heartbeat, by the database's clock
    listen: str | None
    holds: int


class ClusterTables:
    """The cluster's statements (``store`` is a ``watcher.store.Store`` on PostgreSQL).
    The bookkeeping (join, renew, reap) runs on the backend directly, outside the fence
    it maintains; ``once`` runs fenced, as the work it gates."""

    def __init__(self, store: Any) -> None:
        self.store = store
        with store.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (0x57A7C1,))
            for statement in _DDL:
                tx.execute(statement)
        # The last line against two members opening one incident (the fence is the
        # first): at most one unresolved incident per fingerprint, whoever writes it.
        try:
            with store.backend.transaction() as tx:
                tx.execute(
                    "CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_unresolved"
                    " ON incidents (fingerprint) WHERE state <> 'resolved'"
                )
        except store.backend.errors as exc:
            log.error(
                "state %s holds two unresolved incidents for one fingerprint; resolve one"
                " (watcher incidents resolve ID) so the cluster can guard against it (%s)",
                store.location,
                " ".join(str(exc).split()),
            )

    def join(self, node: str, listen: str | None) -> tuple[int, int]:
        """(Re)joins: a new epoch (anything done under the old one is fenced off) and a
        new generation; returns both."""
        with self.store.backend.transaction() as tx:
            epoch = tx.scalar(
                "INSERT INTO cluster_nodes (name, epoch, member, joined_at, heartbeat_at, listen)"
                " VALUES (?, 1, TRUE, now(), now(), ?) ON CONFLICT (name) DO UPDATE SET"
                " epoch=cluster_nodes.epoch + 1, member=TRUE, joined_at=now(),"
                " heartbeat_at=now(), listen=excluded.listen RETURNING epoch",
                (node, listen),
            )
            generation = _bump(tx)
        return int(epoch), generation

    def renew(self, lease: Lease, holds: int) -> bool:
        """Extends the lease if it is still held (same epoch, still a member, heartbeat
        within the lease by the database's clock); False: it was lost, join again."""
        with self.store.backend.transaction() as tx:
            row = tx.execute(
                "UPDATE cluster_nodes SET heartbeat_at=now(), holds=? WHERE name=? AND epoch=?"
                " AND member AND heartbeat_at > now() - make_interval(secs => ?) RETURNING 1",
                (holds, lease.node, lease.epoch, lease.seconds),
            ).fetchone()
        return row is not None

    def reap(self, seconds: float) -> list[str]:
        """Members whose heartbeat is older than the lease stop being members (the
        generation moves, so the survivors take their share); their names."""
        with self.store.backend.transaction() as tx:
            gone = [
                r[0]
                for r in tx.execute(
                    "UPDATE cluster_nodes SET member=FALSE WHERE member"
                    " AND heartbeat_at <= now() - make_interval(secs => ?) RETURNING name",
                    (seconds,),
                ).fetchall()
            ]
            if gone:
                _bump(tx)
        return gone

    def leave(self, lease: Lease) -> None:
        """A clean stop: the others take the share at once, not after the lease."""
        with self.store.backend.transaction() as tx:
            tx.execute(
                "UPDATE cluster_nodes SET member=FALSE WHERE name=? AND epoch=?",
                (lease.node, lease.epoch),
            )
            _bump(tx)

    def membership(self) -> tuple[int, list[str]]:
        """The generation and the names of the members, in one snapshot."""
        with self.store.backend.transaction() as tx:
            generation = tx.scalar("SELECT generation FROM cluster_state WHERE id=1")
            names = [
                r[0]
                for r in tx.execute(
                    "SELECT name FROM cluster_nodes WHERE member ORDER BY name"
                ).fetchall()
            ]
        return int(generation), names

    def members(self, seconds: float) -> list[Member]:
        rows = self.store.query(
            "SELECT name, epoch, member, listen, holds,"
            " extract(epoch FROM now() - heartbeat_at) AS age FROM cluster_nodes ORDER BY name"
        )
        return [
            Member(
                name=r["name"],
                epoch=int(r["epoch"]),
                member=bool(r["member"]),
                live=bool(r["member"]) and float(r["age"]) < seconds,
                age=float(r["age"]),
                listen=r["listen"],
                holds=int(r["holds"]),
            )
            for r in rows
        ]

    @staticmethod
    def check(tx: Tx, lease: Lease) -> None:
        """The fence: raises ``Fenced`` unless this member still holds its lease under
        the generation its share was computed from. Runs first in a write transaction;
        the rows it reads stay share-locked until the commit, so a membership change
        waits for the writes made under the old one."""
        row = tx.execute(
            "SELECT n.epoch, n.member, n.heartbeat_at > now() - make_interval(secs => ?),"
            " s.generation FROM cluster_nodes n, cluster_state s"
            " WHERE n.name=? AND s.id=1 FOR SHARE",
            (lease.seconds, lease.node),
        ).fetchone()
        if row is None:
            raise Fenced(f"cluster member {lease.node} is not in the cluster")
        epoch, member, fresh, generation = row[0], row[1], row[2], row[3]
        if epoch != lease.epoch or not member:
            raise Fenced(f"cluster member {lease.node} rejoined or was dropped")
        if not fresh:
            raise Fenced(f"cluster member {lease.node} lost its lease")
        if generation != lease.generation:
            raise Fenced(f"cluster membership changed under {lease.node}")

    @staticmethod
    def claim(tx: Tx, lease: Lease, action_id: int) -> bool:
        """Takes one outbox row for delivery: False if another live member is delivering
        it (row-locked now, or claimed under an epoch it still holds)."""
        row = tx.execute(
            "SELECT id FROM outbox WHERE id=? AND state='pending' FOR UPDATE SKIP LOCKED",
            (action_id,),
        ).fetchone()
        if row is None:
            return False
        other = tx.execute(
            "SELECT 1 FROM cluster_claims c JOIN cluster_nodes n ON n.name=c.node"
            " WHERE c.action_id=? AND n.epoch=c.epoch AND n.member"
            " AND n.heartbeat_at > now() - make_interval(secs => ?)"
            " AND NOT (c.node=? AND c.epoch=?)",
            (action_id, lease.seconds, lease.node, lease.epoch),
        ).fetchone()
        if other is not None:
            return False
        tx.execute(
            "INSERT INTO cluster_claims (action_id, node, epoch) VALUES (?, ?, ?)"
            " ON CONFLICT (action_id) DO UPDATE SET node=excluded.node, epoch=excluded.epoch",
            (action_id, lease.node, lease.epoch),
        )
        return True

    def once(self, job: str, every: float) -> bool:
        """True for one caller per ``every`` seconds across the cluster (the dead man's
        switch pings once per cluster, whichever member asks)."""
        with self.store.transaction() as tx:
            row = tx.execute(
                "INSERT INTO cluster_once (job, last_at) VALUES (?, now())"
                " ON CONFLICT (job) DO UPDATE SET last_at=now()"
                " WHERE cluster_once.last_at <= now() - make_interval(secs => ?) RETURNING 1",
                (job, every),
            ).fetchone()
        return row is not None


def _bump(tx: Tx) -> int:
    return int(
        tx.scalar(
            "UPDATE cluster_state SET generation=generation + 1 WHERE id=1 RETURNING generation"
        )
    )
