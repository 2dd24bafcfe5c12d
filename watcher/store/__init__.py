"""The watcher's state: incidents and their timelines, results history, the outbox,
check-ins, maintenance windows, kept alerts, and the small values beside them.

The store owns all SQL: no module outside ``watcher.store`` writes a statement. The
state lives in a SQLite file (the embedded default) or a PostgreSQL database
(``state: postgresql://...``); one schema (``schema``) and one contract (``backend``)
serve both, and the few words their SQL says differently are in ``dialect``.

Modules:
  errors            what the store raises
  schema            the migrations both backends run
  dialect           placeholders, DDL types, buckets, JSON reads per engine
  backend           the Backend contract and the transaction handle ``Tx``
  sqlite_file       the SQLite file's checks and run lock, before it is opened
  sqlite_backend    SQLite: WAL, PRAGMAs, application id and user_version
  postgres_backend  PostgreSQL: psycopg pool, ``watcher_meta``, advisory run lock
  core              one transaction at a time, write health (``writable``)
  incidents, history, outbox, meta, checkins, maintenance, alerts
                    the statements of each kind of state
  copy              ``watcher state copy`` from one backend to another

May import: the standard library, ``probes.base`` (results), ``watcher.incident``
(incidents and events), and psycopg; nothing else of watcher, so every other module
can import the store.

Fencing (a cluster member that lost its lease must not write) plugs into
``StoreCore.transaction``: every write transaction begins there, on both backends.
"""

from __future__ import annotations

from pathlib import Path

from watcher.store.alerts import AlertStore
from watcher.store.backend import Tx
from watcher.store.checkins import CheckinStore
from watcher.store.errors import StateFileError, StateLocked, StateWriteError
from watcher.store.history import ROLLUP_DELAY, HistoryStore, Point
from watcher.store.incidents import IncidentStore
from watcher.store.maintenance import MaintenanceStore
from watcher.store.meta import MetaStore
from watcher.store.outbox import OutboxRow, OutboxStore, Outcome
from watcher.store.postgres_backend import is_postgres_url, redact
from watcher.store.schema import MIGRATIONS, SCHEMA_VERSION
from watcher.store.schema import statements as _statements

__all__ = [
    "MIGRATIONS",
    "ROLLUP_DELAY",
    "SCHEMA_VERSION",
    "OutboxRow",
    "Outcome",
    "Point",
    "StateFileError",
    "StateLocked",
    "StateWriteError",
    "Store",
    "Tx",
    "is_postgres_url",
    "redact",
    "_statements",
]


class Store(
    IncidentStore,
    OutboxStore,
    HistoryStore,
    MetaStore,
    CheckinStore,
    MaintenanceStore,
    AlertStore,
):
    """The watcher's state: a SQLite file path, or a ``postgresql://`` URL. Thread-safe."""

    def __init__(self, state: str | Path) -> None:
        super().__init__(state)

    def acquire_run_lock(self, *, shared: bool = False) -> None:
        """On PostgreSQL: holds the database's run lock while the store is open (raises
        StateLocked if another watcher has it; ``shared``: cluster members hold it
        together). A SQLite file's run lock is taken before the store opens it
        (``sqlite_file.acquire_run_lock``)."""
        if shared:
            self.backend.acquire_run_lock(shared=True)  # type: ignore[call-arg]
        else:
            self.backend.acquire_run_lock()

    def run_locked(self) -> bool:
        """True if a watcher runs on this state."""
        return self.backend.run_locked()
