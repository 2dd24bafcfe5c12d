"""The embedded backend: one SQLite file in WAL mode, so the CLI reads while the daemon
writes. The file is checked read-only before it is opened (``sqlite_file``): a file that
is not watcher's, is newer, or is damaged is refused untouched."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from watcher.store.backend import Tx
from watcher.store.dialect import SQLITE
from watcher.store.errors import StateFileError
from watcher.store.schema import MIGRATIONS, SCHEMA_VERSION, statements
from watcher.store.sqlite_file import APPLICATION_ID, check_state_file, state_is_locked

__all__ = ["SqliteBackend"]

# SQLite primary result codes that mean the file cannot take writes (not a bug in a query):
# PERM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_UNWRITABLE = {3, 8, 10, 11, 13, 14, 26}


class SqliteBackend:
    """A state file. Not thread-safe by itself: the store serialises its use."""

    dialect = SQLITE
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    reads_can_fail = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(path)
        if str(path) != ":memory:":
            # Before anything writes to it: a refused file stays exactly as it was.
            check_state_file(self.path, SCHEMA_VERSION)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; only a power cut can lose the
            # last commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not self.unwritable(exc):
                raise
            raise StateFileError(
                f"state file {self.path} cannot be opened ({exc}); free space or fix its"
                " permissions, or if it is damaged restore it from a backup or move it aside"
                " (open tickets are adopted by fingerprint from the helpdesks that can be"
                " searched)"
            ) from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateFileError(
                f"state file {self.path} was written by a newer watcher (schema {version},"
                f" this one knows {SCHEMA_VERSION}); run the newer watcher, or point"
                " state: at another file"
            )
        stamped = self._db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements(MIGRATIONS[number]):
                    self._db.execute(SQLITE.ddl(statement))
                self._db.execute(f"PRAGMA user_version={number + 1}")
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            stamped = True
        if not stamped:  # a state file from before watcher marked its files
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(self._db, SQLITE)
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a full volume) can leave the transaction open: the next
            # BEGIN would fail for good.
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def unwritable(self, exc: BaseException) -> bool:
        """True for errors that say the file cannot take writes, not that a query is wrong."""
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _UNWRITABLE

    def acquire_run_lock(self) -> None:
        """Nothing to do here: a file's run lock is taken before it is opened, so that
        its contents are only read under the lock (``sqlite_file.acquire_run_lock``)."""

    def run_locked(self) -> bool:
        return state_is_locked(self.path)

    def close(self) -> None:
        self._db.close()
