"""The contract between the store and where its state lives.

``Backend`` is what SQLite (``sqlite_backend``) and PostgreSQL (``postgres_backend``)
each implement: open and migrate the state, hand out one transaction at a time as a
context manager, run reads, and tell a failure of the place (a full volume, a server
gone) from a failure of a query. ``Tx`` is the handle a transaction gives the store's
modules; nothing outside ``watcher.store`` runs SQL through it.

Fencing plugs in here: a cluster member's write transaction can check its epoch (one
``SELECT`` against the lease row, raising if another member took over) right after
``transaction`` begins, before any write; both backends run the same statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from watcher.store.dialect import Dialect

__all__ = ["Backend", "Cursor", "Row", "Tx"]


class Row(Protocol):
    """A result row: by column name or by position (``sqlite3.Row`` and ``PgRow``)."""

    def __getitem__(self, key: str | int) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx:
    """One open transaction: statements written with ``?`` placeholders, run in the
    backend's dialect."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Cursor:
        return self._conn.execute(self.dialect.sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.cursor().executemany(self.dialect.sql(sql), rows)

    def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs an INSERT into a table with an ``id`` key; the new row's id."""
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return row[0] if row else None


class Backend(Protocol):
    """Where the state lives. Errors of the engine's driver propagate raw; the store asks
    ``unwritable`` which of them mean the place cannot take writes now."""

    dialect: Dialect
    location: str  # shown in messages: a path, or a URL without its password
    errors: tuple[type[BaseException], ...]  # the driver's error classes
    reads_can_fail: bool  # a server that goes away fails reads as well as writes

    def transaction(self) -> AbstractContextManager[Tx]: ...

    def query(self, sql: str, params: Sequence[Any]) -> list[Any]: ...

    def unwritable(self, exc: BaseException) -> bool: ...

    def acquire_run_lock(self) -> None:
        """Holds this state's run lock while the backend is open, or raises StateLocked."""

    def run_locked(self) -> bool:
        """True if a watcher holds this state's run lock."""

    def close(self) -> None: ...
