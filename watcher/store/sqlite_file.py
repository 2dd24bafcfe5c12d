"""The state file as a file: whose it is, whether it is whole, and who runs on it.

Before the store opens a file (and switches it to WAL, or adds a table) this module
looks at it read-only and refuses, in one sentence naming the file and what to do,
anything that is not a watcher database this watcher can use: another program's
database, a newer watcher's, a truncated or overwritten file, a directory. Watcher's
own databases carry ``PRAGMA application_id``; those written before it did are
recognised by their tables and stamped when they open.

The run lock is held on the file's identity (its device and inode, through ``flock`` on
the file itself) and beside its resolved path, so no symlink or hard link lets a second
watcher run on the same state. May import only the standard library and
``watcher.store.errors``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
from pathlib import Path

from watcher.store.errors import StateFileError, StateLocked

__all__ = [
    "APPLICATION_ID",
    "StateFileError",
    "StateLocked",
    "acquire_run_lock",
    "check_state_file",
    "release_run_lock",
    "state_is_locked",
]

# "Wtch": PRAGMA application_id of every state file this watcher writes.
APPLICATION_ID = 0x57746368
SQLITE_MAGIC = b"SQLite format 3\x00"
# The tables the first schema made: a file without application_id that has all of them
# is a state file from a watcher that did not stamp its files yet.
FIRST_SCHEMA_TABLES = frozenset(
    {"incidents", "events", "results", "latest", "rollup", "outbox", "tickets", "meta", "commands"}
)
RECOVER = (
    "restore it from a backup, or move it aside and start again"
    " (open tickets are adopted by fingerprint from the helpdesks that can be searched)"
)


def check_state_file(path: Path, schema_version: int, *, contents: bool = True) -> None:
    """Raises StateFileError unless ``path`` is missing, empty, or a watcher database of
    ``schema_version`` or older. Reads only; changes nothing in a refused file.

    ``contents=False`` reads the file's header only. The full check reads the schema
    through SQLite, which may create the ``-shm`` and ``-wal`` files of a database in WAL
    mode: make it under the run lock, so that it never touches a file another watcher
    runs on."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateFileError(f"state file {path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StateFileError(
            f"state file {path} is a directory; point state: at a file in it"
            f" (e.g. {path / 'watcher.db'}) or move the directory aside"
        )
    if not stat.S_ISREG(info.st_mode):
        raise StateFileError(f"state file {path} is not a regular file; point state: at a file")
    if info.st_size == 0:
        return  # a new file (touch), or one a crash left before its first page
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise StateFileError(f"state file {path} cannot be read: {exc.strerror}") from None
    if len(header) < 100 and SQLITE_MAGIC.startswith(header[:16]):
        raise StateFileError(f"state file {path} is truncated; {RECOVER}")
    if not header.startswith(SQLITE_MAGIC):
        raise StateFileError(
            f"state file {path} is not a SQLite database (overwritten or damaged); {RECOVER}"
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is only valid when the change counter matches its copy. With a WAL
    # beside it the file may lag behind its header (a checkpoint cut short by a kill):
    # SQLite itself judges such a file below.
    counted = header[24:28] == header[92:96] and pages > 0
    wal = path.with_name(path.name + "-wal")
    settled = not wal.exists() or wal.stat().st_size == 0
    if page_size < 512 or page_size & (page_size - 1):
        raise StateFileError(f"state file {path} is damaged (bad header); {RECOVER}")
    if settled and (info.st_size % page_size or (counted and info.st_size < pages * page_size)):
        raise StateFileError(f"state file {path} is truncated; {RECOVER}")
    app_id = int.from_bytes(header[68:72], "big", signed=True)
    if app_id not in (0, APPLICATION_ID):
        raise StateFileError(
            f"state file {path} is another program's SQLite database (application id"
            f" {app_id:#x}), not watcher's; point state: at a new file (watcher creates it)"
            " and leave this one to its owner"
        )
    if settled and app_id == APPLICATION_ID:
        # With nothing in a WAL, the header is the whole truth: no need to open the file.
        _check_version(path, int.from_bytes(header[60:64], "big", signed=True), schema_version)
        return
    if contents:
        _check_contents(path, schema_version, settled=settled)


def _check_version(path: Path, version: int, schema_version: int) -> None:
    if version > schema_version:
        raise StateFileError(
            f"state file {path} was written by a newer watcher (schema {version}, this one"
            f" knows {schema_version}); run the newer watcher, or point state: at another file"
        )


def _check_contents(path: Path, schema_version: int, *, settled: bool) -> None:
    """Application id, schema version and tables, as SQLite reads them. A settled file
    (no WAL content) is opened immutable, so SQLite creates no ``-wal`` or ``-shm`` beside
    it; else read-only, with the WAL a killed watcher left."""
    mode = "immutable=1" if settled else "mode=ro"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StateFileError(f"state file {path} cannot be opened: {exc}; {RECOVER}") from None
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise StateFileError(f"state file {path} is damaged ({exc}); {RECOVER}") from None
    finally:
        db.close()
    ours = app_id == APPLICATION_ID or (
        app_id == 0 and version >= 1 and tables >= FIRST_SCHEMA_TABLES
    )
    if not ours and app_id == 0 and version == 0 and not tables:
        return  # an empty SQLite database: nothing in it to lose
    if not ours:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        what = f"tables: {shown}" if tables else f"application id {app_id:#x}"
        raise StateFileError(
            f"state file {path} is another program's SQLite database ({what}), not watcher's;"
            " point state: at a new file (watcher creates it) and leave this one to its owner"
        )
    _check_version(path, version, schema_version)


# ------------------------------------------------------------------------- run lock


def _lock_path(state: Path) -> Path:
    real = state.resolve()
    return real.with_name(real.name + ".lock")


def acquire_run_lock(state: Path) -> tuple[int, int]:
    """Holds the run lock for as long as the process lives: ``flock`` on the state file
    itself (its inode, whatever path or link leads to it) and on ``<resolved path>.lock``,
    which also tells the pid. Creates an empty state file if there is none. Returns the
    two descriptors for ``release_run_lock``; raises StateLocked if another watcher has it.

    ``flock`` locks never interfere with the POSIX locks SQLite takes on the same file.
    The descriptor on the state file stays open until the store is closed: closing a
    descriptor on a SQLite file drops the locks SQLite holds on it in this process.
    """
    real = state.resolve()
    real.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(_lock_path(state), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        state_fd = os.open(real, os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        os.close(lock_fd)
        raise StateFileError(f"state file {state} cannot be opened: {exc.strerror}") from None
    try:
        for fd in (lock_fd, state_fd):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(state_fd)
        os.close(lock_fd)
        shown = f"{state} (that is {real})" if real != state.absolute() else str(state)
        raise StateLocked(
            f"another watcher is running on {shown}; stop it, or give this one its own state:"
        ) from None
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, str(os.getpid()).encode())
    return lock_fd, state_fd


def release_run_lock(fds: tuple[int, int], state: Path | None = None) -> None:
    """Lets the run lock go; with ``state``, also removes its lock file (a watcher that
    refused the file leaves nothing beside it)."""
    if state is not None:
        with contextlib.suppress(OSError):
            _lock_path(state).unlink()
    for fd in fds:
        os.close(fd)


# Descriptors opened to test a state file's lock stay open for the life of the process:
# closing one would drop the POSIX locks this process's SQLite connection holds on it.
_probe_fds: dict[tuple[int, int], int] = {}


def state_is_locked(state: Path) -> bool:
    """True if a watcher runs on this state file, under any path or link."""
    try:
        lock_fd = os.open(_lock_path(state), os.O_RDWR)
    except FileNotFoundError:
        pass
    else:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(lock_fd)
    try:
        info = os.stat(state)
    except OSError:
        return False
    key = (info.st_dev, info.st_ino)
    fd = _probe_fds.get(key)
    if fd is None:
        try:
            fd = _probe_fds[key] = os.open(state, os.O_RDONLY)
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False
