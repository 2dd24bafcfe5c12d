"""The SQLite state file's checks and run lock now live in ``watcher.store.sqlite_file``;
this name stays so that existing imports keep working."""

from watcher.store.sqlite_file import *  # noqa: F403
from watcher.store.sqlite_file import __all__  # noqa: F401
