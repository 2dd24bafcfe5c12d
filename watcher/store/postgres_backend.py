"""The shared backend: a PostgreSQL database, through psycopg 3 and its pool.

``state: postgresql://user:pass@host:5432/db`` (or ``postgres://``); libpq's environment
(``PGPASSWORD``, ``PGSSLMODE``, ``PGSSLROOTCERT``...) and URL parameters such as
``sslmode`` are honoured, as libpq reads them. A database is watcher's when it holds
``watcher_meta`` (its schema version, stamped by the first migration run); one that
holds other tables without it is refused untouched, as is one from a newer watcher.
Migrations run under a transaction-scoped advisory lock, so two watchers starting at
once migrate once. No message shows the password.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from watcher.store.backend import Tx
from watcher.store.dialect import POSTGRES, Dialect
from watcher.store.errors import StateFileError, StateLocked
from watcher.store.schema import MIGRATIONS, SCHEMA_VERSION, statements
from watcher.store.sqlite_file import APPLICATION_ID

__all__ = ["PgRow", "PostgresBackend", "is_postgres_url", "redact"]

SCHEMES = ("postgresql://", "postgres://")
# The pool logs each failed reconnection; the store reports a server away once a minute.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
CONNECT_TIMEOUT = 5  # seconds libpq waits for a server before it gives up
POOL_WAIT = 5.0  # seconds a transaction waits for a connection while the server is away


def is_postgres_url(state: object) -> bool:
    return isinstance(state, str) and state.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL as shown in messages: no password, no parameters."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        rest = userinfo.split(":", 1)[0] + "@" + hostpart
    return f"{scheme}://{rest}"


class PgRow(tuple):  # noqa: SLOT001 - a row carries its column index
    """A row readable by column name or position, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    index = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class PostgresBackend:
    """A watcher database on a PostgreSQL server. Thread-safe: each transaction and read
    takes a pooled connection; a connection the server dropped is replaced."""

    dialect: Dialect = POSTGRES
    reads_can_fail = True

    def __init__(self, url: str) -> None:
        self.location = redact(url)
        try:
            import psycopg
            import psycopg_pool
        except ImportError:
            raise StateFileError(
                f"state: {self.location} is a PostgreSQL database but psycopg is not"
                " installed; install watcher with its dependencies (pip install watcher)"
            ) from None
        self._psycopg = psycopg
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error, psycopg_pool.PoolTimeout)
        self._url = url
        self._run_lock: Any = None
        try:
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StateFileError(
                f"state database {self.location} cannot be used: {_one_line(exc)}"
            ) from None
        self._pool_lock = threading.Lock()
        self._down = False  # the server went away: reach it directly before the pool again
        try:
            self._pool = self._new_pool()
        except psycopg_pool.PoolTimeout:
            raise StateFileError(
                f"state database {self.location} cannot be reached (it answered once, then"
                " not again)"
            ) from None

    def _new_pool(self) -> Any:
        import psycopg_pool

        pool = psycopg_pool.ConnectionPool(
            self._url,
            min_size=1,
            max_size=4,
            timeout=POOL_WAIT,
            open=False,
            name="watcher-state",
            check=psycopg_pool.ConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "row_factory": _row_factory,
                "connect_timeout": CONNECT_TIMEOUT,
            },
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except BaseException:
            pool.close()
            raise
        return pool

    def _revive(self) -> None:
        """After the server went away: one direct connection says at once whether it is
        back (the pool would wait out its growing reconnect delays); if it is, a new pool
        takes over. Raises the driver's error while it is still away."""
        with self._pool_lock:
            if not self._down:
                return
            self._psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT).close()
            old, self._pool = self._pool, self._new_pool()
            self._down = False
        old.close(timeout=1.0)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._down:
            self._revive()
        pool = self._pool
        try:
            conn = pool.getconn()
        except self.errors:
            self._down = True
            raise
        try:
            yield conn
        except self._psycopg.OperationalError:
            self._down = True
            raise
        finally:
            pool.putconn(conn)

    def _migrate(self, conn: Any) -> None:
        with conn.transaction():
            # Another key than the run lock's: a migration is not a running watcher.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPLICATION_ID + 1,))
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = current_schema()"
                )
            }
            if "watcher_meta" not in tables:
                if tables:
                    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
                    raise StateFileError(
                        f"state database {self.location} holds tables that are not watcher's"
                        f" ({shown}); point state: at an empty database (watcher creates its"
                        " tables) and leave this one to its owner"
                    )
                conn.execute(
                    "CREATE TABLE watcher_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                conn.execute(
                    "INSERT INTO watcher_meta VALUES ('application', 'watcher'),"
                    " ('schema_version', '0')"
                )
            row = conn.execute(
                "SELECT value FROM watcher_meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StateFileError(
                    f"state database {self.location} was written by a newer watcher (schema"
                    f" {version}, this one knows {SCHEMA_VERSION}); run the newer watcher,"
                    " or point state: at another database"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in statements(MIGRATIONS[number]):
                    conn.execute(POSTGRES.ddl(statement))
            if version < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO watcher_meta VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            yield Tx(conn, POSTGRES)

    def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(POSTGRES.sql(sql), tuple(params)).fetchall()

    def unwritable(self, exc: BaseException) -> bool:
        """True when the server cannot take writes now (gone, restarting, full, read-only),
        not when a query is wrong."""
        errors = self._psycopg.errors
        return isinstance(
            exc,
            (
                self._psycopg.OperationalError,
                self._psycopg.InterfaceError,
                errors.DiskFull,
                errors.ReadOnlySqlTransaction,
                errors.InsufficientResources,
            ),
        )

    def acquire_run_lock(self, *, shared: bool = False) -> None:
        """Holds a session advisory lock for as long as this store is open, so that a
        second watcher refuses to run on the same database; raises StateLocked. The
        members of a cluster (watcher/cluster) each hold it shared: the CLI still sees
        that watchers run."""
        conn = self._psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT, autocommit=True)
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        row = conn.execute(f"SELECT {take}(%s)", (APPLICATION_ID,)).fetchone()
        assert row is not None  # a SELECT of a function call returns its one row
        held = row[0]
        if not held:
            conn.close()
            raise StateLocked(
                f"another watcher is running on {self.location}; stop it, or give this one"
                " its own state:"
            )
        self._run_lock = conn

    def run_locked(self) -> bool:
        """True if a watcher holds the run lock of this database."""
        return bool(
            self.query(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND ((classid::bigint << 32) | objid::bigint) = ?",
                (APPLICATION_ID,),
            )
        )

    def close(self) -> None:
        self._pool.close()
        if self._run_lock is not None:
            self._run_lock.close()
            self._run_lock = None
