"""The store's core: which backend holds the state, one transaction at a time, and the
health of writes (``writable``, ``write_problem``, failures counted and logged at most
once a minute)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.store.backend import Backend, Tx
from watcher.store.errors import StateWriteError
from watcher.store.postgres_backend import PostgresBackend, is_postgres_url
from watcher.store.sqlite_backend import SqliteBackend

if TYPE_CHECKING:
    from watcher.store.outbox import Outcome

__all__ = ["StoreCore", "open_backend"]

log = logging.getLogger("watcher.store")

# How often a state that cannot be written is logged while it stays so.
WRITE_PROBLEM_LOG_EVERY = 60.0


def open_backend(state: str | Path) -> Backend:
    """A PostgreSQL URL opens a database, anything else a SQLite file."""
    if is_postgres_url(state):
        return PostgresBackend(str(state))
    return SqliteBackend(state)


class StoreCore:
    """Opens the backend; transactions and reads through it, under one lock."""

    def __init__(self, state: str | Path) -> None:
        self.backend: Backend = open_backend(state)
        self.path: Path | None = getattr(self.backend, "path", None)  # SQLite's file
        self.location = self.backend.location
        self._lock = threading.RLock()
        self.writes = 0  # rows written, for the scale benchmark and /metrics
        self.write_failures = 0  # writes the state refused
        self._write_problem: str | None = None
        self._problem_from_read = False
        # A volume that is nearly full can take one write and refuse the next: the line is
        # kept to one a minute across such flickers, and a recovery is told only after a
        # problem was.
        self._problem_logged = float("-inf")
        self._problem_told = False
        # Delivery attempts in flight in this process, and outcomes not yet written: the
        # actions of both are not handed out again, so nothing is sent twice.
        self._in_flight: set[int] = set()
        self._unrecorded: dict[int, Outcome] = {}
        # A cluster member's fence (``watcher.cluster``): run first in every write
        # transaction, it raises ``Fenced`` once the member's lease is gone; ``claim``
        # takes one outbox row for this member's delivery; ``holds`` is asked right
        # before a delivery is sent.
        self.fence: Callable[[Tx], None] | None = None
        self.claim: Callable[[Tx, int], bool] | None = None
        self.holds: Callable[[], bool] | None = None

    @property
    def dialect(self) -> Any:
        return self.backend.dialect

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.backend, PostgresBackend)

    def close(self) -> None:
        with self._lock:
            if self._unrecorded:
                log.error(
                    "state %s: %d delivery outcomes could not be written; after the"
                    " restart those actions are sent once more, with the same delivery ids",
                    self.location,
                    len(self._unrecorded),
                )
            self.backend.close()

    # ------------------------------------------------------------ write health

    @property
    def writable(self) -> bool:
        """False while the last write failed for the state's sake (full volume,
        read-only, I/O error, database server away); true again after the next write
        that succeeds."""
        return self._write_problem is None

    @property
    def write_problem(self) -> str | None:
        """Why the state cannot be written now, or None."""
        return self._write_problem

    def _write_failed(self, exc: BaseException, *, read: bool = False) -> None:
        self.write_failures += 1
        self._write_problem = " ".join(str(exc).split()) or type(exc).__name__
        self._problem_from_read = read
        now = time.monotonic()
        if now - self._problem_logged >= WRITE_PROBLEM_LOG_EVERY:
            self._problem_logged = now
            self._problem_told = True
            log.error(
                "state %s cannot be written (%s; %d failed writes): deliveries wait,"
                " outcomes already delivered are kept in memory and nothing is sent twice;"
                " free space on its volume, or bring its database server back",
                self.location,
                self._write_problem,
                self.write_failures,
            )

    def _write_succeeded(self) -> None:
        if self._write_problem is not None:
            self._write_problem = None
            if not self._problem_told:
                return
            self._problem_told = False
            log.warning(
                "state %s takes writes again (%d writes had failed)",
                self.location,
                self.write_failures,
            )

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic unit of work; commits on success, rolls back on any exception.
        A write the state refuses for its own sake raises StateWriteError (counted,
        reported). A cluster member's fence runs first (raising ``Fenced``, a
        StateWriteError, once its lease is gone)."""
        with self._lock:
            try:
                with self.backend.transaction() as tx:
                    if self.fence is not None:
                        self.fence(tx)
                    yield tx
            except self.backend.errors as exc:
                if not self.backend.unwritable(exc):
                    raise
                self._write_failed(exc)
                raise StateWriteError(" ".join(str(exc).split())) from exc
            self._write_succeeded()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Rows of one read, by column name or position. On a server that went away the
        read fails as a write would (StateWriteError), and a read that works again ends
        what a read began."""
        if not self.backend.reads_can_fail:
            with self._lock:
                return self.backend.query(sql, tuple(params))
        try:
            rows = self.backend.query(sql, tuple(params))
        except self.backend.errors as exc:
            if not self.backend.unwritable(exc):
                raise
            self._write_failed(exc, read=True)
            raise StateWriteError(" ".join(str(exc).split())) from exc
        if self._problem_from_read and self._write_problem is not None:
            self._write_succeeded()
        return rows
