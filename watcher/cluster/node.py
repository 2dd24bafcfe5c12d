"""This process as a member of the site's cluster.

A member joins (a new epoch, a new membership generation), then every third of the
lease renews its heartbeat, reaps members whose heartbeat is older than the lease, and
reads the membership. When the generation moved it recomputes its share of the checks
and calls ``on_change`` (the engine reloads what the others wrote) before it writes
under the new generation. A renewal that fails (the lease ran out: the process was
paused, the database was away) means the member rejoins under a new epoch, so nothing
believed before is written after.

Two clocks guard the lease: the database's (the fence compares the heartbeat with
``now()`` in the same transaction as the write) and this process's monotonic clock
(``holds``, asked right before a delivery is sent, is false once a lease's worth of
time passed since the last renewal began, a pause included).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from watcher.cluster.partition import owner
from watcher.store.backend import Tx
from watcher.store.cluster import ClusterTables, Fenced, Lease
from watcher.store.errors import StateLocked

__all__ = ["ClusterNode", "OUTAGE_KEY", "default_node_name"]

log = logging.getLogger("watcher.cluster")

# Site-wide work that is not one target's (outage grouping, reminders of outages) goes
# to the leader.
OUTAGE_KEY = "\0site"


def default_node_name() -> str:
    return socket.gethostname() or "watcher"


class ClusterNode:
    """One member; ``fence``, ``claim`` and ``holds`` are what the store calls."""

    def __init__(
        self,
        store: Any,
        name: str,
        lease: float,
        *,
        listen: str | None = None,
        on_change: Callable[[], None] | None = None,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.seconds = lease
        self.listen = listen
        self.on_change = on_change or (lambda: None)
        self.on_beat = on_beat or (lambda: None)  # after each renewal: read the others' work
        self.tables = ClusterTables(store)
        self._lease: Lease | None = None
        self._members: tuple[str, ...] = ()
        self._pinned = threading.local()
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cluster", daemon=True)
        self.changes = 0  # shares recomputed, for /metrics
        self.renewals = 0
        self.connected = False

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Joins before the first check runs (raises if the database is away, and
        StateLocked if a live member already has this name)."""
        self._wait_for_namesake()
        self._join()
        self._thread.start()

    def _wait_for_namesake(self) -> None:
        """A member of this name that renews its lease is another live process (two on
        one host need ``--node``); one that stopped renewing (killed, restarted at once)
        is waited out, at most one lease."""
        deadline = time.monotonic() + self.seconds + 1
        first: float | None = None
        while True:
            same = [m for m in self.tables.members(self.seconds) if m.name == self.name]
            if not same or not same[0].live:
                return
            if first is not None and same[0].age < first:
                raise StateLocked(
                    f"another watcher is running on {self.store.location} as cluster member"
                    f" {self.name}; give this one another name (watcher run --node NAME)"
                )
            first = same[0].age
            if time.monotonic() > deadline:
                return
            time.sleep(min(1.0, self.seconds / 3))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                self.tables.leave(lease)
            except Exception as exc:  # the others reap it after the lease instead
                log.warning("cluster: could not leave cleanly (%s)", exc)

    def _join(self) -> None:
        self._lease = None  # nothing is written between the old epoch and the reload
        started = time.monotonic()
        epoch, _ = self.tables.join(self.name, self.listen)
        self._valid_until = started + self.seconds
        self.connected = True
        log.info("cluster: %s joined with epoch %d", self.name, epoch)
        self._adopt(epoch)

    def _adopt(self, epoch: int) -> None:
        """Reads the membership, reloads the engine, then writes under it."""
        self._lease = None
        generation, names = self.tables.membership()
        self._members = tuple(names)
        self.on_change()
        self.changes += 1
        self._lease = Lease(self.name, epoch, generation, self.seconds, tuple(names))
        log.info(
            "cluster: generation %d, members %s; %s leads",
            generation,
            ", ".join(names),
            self.leader or "nobody",
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.seconds / 3)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.beat()
            except Exception as exc:  # the database is away: the lease runs out, the fence holds
                if self.connected:
                    log.error("cluster: cannot reach the database (%s)", " ".join(str(exc).split()))
                self.connected = False

    def beat(self) -> None:
        """One renewal: renew (or rejoin), reap the dead, follow the membership."""
        lease = self._lease
        started = time.monotonic()
        if lease is None or not self.tables.renew(lease, self.holding):
            log.warning("cluster: %s lost its lease; rejoining", self.name)
            self._join()
            return
        self._valid_until = started + self.seconds
        self.renewals += 1
        self.connected = True
        gone = self.tables.reap(self.seconds)
        if gone:
            log.warning("cluster: %s stopped renewing; its checks move", ", ".join(gone))
        generation, _ = self.tables.membership()
        if generation != lease.generation:
            self._adopt(lease.epoch)
        else:
            self.on_beat()

    # ------------------------------------------------------------- what it holds

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    @property
    def leader(self) -> str | None:
        return self._members[0] if self._members else None

    @property
    def is_leader(self) -> bool:
        return self._lease is not None and self.leader == self.name and self.holds()

    @property
    def holding(self) -> int:
        return getattr(self, "_holding", 0)

    @holding.setter
    def holding(self, count: int) -> None:
        self._holding = count

    def owns(self, key: str) -> bool:
        """True if this member runs the checks of target ``key`` under its lease (the
        lease pinned by this thread, if any: see ``pin``)."""
        lease = getattr(self._pinned, "lease", None) or self._lease
        if lease is None:
            return False
        if key == OUTAGE_KEY:
            return bool(lease.members) and lease.members[0] == self.name
        return owner(key, lease.members) == self.name

    @contextmanager
    def pin(self) -> Iterator[None]:
        """Within the block, this thread decides and writes under one lease: what it
        finds it owns is what the fence checks, so a share that moved meanwhile
        refuses the write instead of letting it through under the new membership."""
        self._pinned.lease = self._lease
        try:
            yield
        finally:
            self._pinned.lease = None

    def holds(self) -> bool:
        return self._lease is not None and time.monotonic() < self._valid_until

    # ---------------------------------------------------------- the store's hooks

    def fence(self, tx: Tx) -> None:
        pinned = getattr(self._pinned, "lease", None)
        lease = self._lease
        if pinned is not None and pinned is not lease:
            raise Fenced(f"cluster member {self.name}'s share moved during the decision")
        if lease is None or not self.holds():
            raise Fenced(f"cluster member {self.name} holds no lease")
        try:
            ClusterTables.check(tx, lease)
        except Fenced:
            self._wake.set()  # follow the change now, not at the next renewal
            raise

    def claim(self, tx: Tx, action_id: int) -> bool:
        lease = self._lease
        if lease is None:
            return False
        return ClusterTables.claim(tx, lease, action_id)
