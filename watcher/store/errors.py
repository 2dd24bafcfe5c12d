"""What the store raises: a state that cannot be used, one that cannot be written now,
and one another watcher runs on. Standard library only."""

from __future__ import annotations

__all__ = ["StateFileError", "StateLocked", "StateWriteError"]


class StateFileError(Exception):
    """The state (a file, or a PostgreSQL database) cannot be used; the message names it
    (never with a password) and says what to do."""


class StateLocked(RuntimeError):
    """Another watcher runs on this state (through this path or another)."""


class StateWriteError(Exception):
    """A write failed because of where the state lives, not because of a query: a full or
    read-only volume, an I/O error, a PostgreSQL server that went away. The store has
    counted and reported it; callers retry later."""
