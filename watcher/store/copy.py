"""``watcher state copy``: moves a site's state to another backend (typically a SQLite
file to a PostgreSQL database) with everything in it: open incidents and their
timelines, tickets, the outbox (pending, attempting and delivered rows, with their ids,
so deliveries keep their delivery ids), history, check-ins, maintenance windows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watcher.store.errors import StateFileError
from watcher.store.schema import TABLES

__all__ = ["copy_state"]

BATCH = 2000


def copy_state(
    source: str | Path, destination: str | Path, *, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Copies every row of ``source`` into ``destination``, which must hold no state yet;
    how many rows each table had. One transaction: a failed copy leaves nothing."""
    from watcher.store import Store

    src = Store(source)
    try:
        dst = Store(destination)
    except BaseException:
        src.close()
        raise
    try:
        for table in ("incidents", "outbox", "results"):
            if dst.query(f"SELECT 1 FROM {table} LIMIT 1"):
                raise StateFileError(
                    f"state {dst.location} already holds {table}; copy into an empty state"
                )
        counts: dict[str, int] = {}
        with dst.transaction() as db:
            for table in TABLES:
                rows = src.query(f"SELECT * FROM {table}")
                counts[table] = len(rows)
                if not rows:
                    continue
                columns = list(rows[0].keys())
                if table == "meta":
                    db.execute("DELETE FROM meta")
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})"
                )
                for start in range(0, len(rows), BATCH):
                    db.executemany(sql, [tuple(r) for r in rows[start : start + BATCH]])
                if "id" in columns:
                    renumber = db.dialect.renumber(table)
                    if renumber:
                        db.execute(renumber)
                say(f"{table}: {len(rows)} rows")
        return counts
    finally:
        dst.close()
        src.close()
