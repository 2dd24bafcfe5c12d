"""``watcher state copy --from watcher.db --to postgresql://...``: moves a site's state to
another backend, open incidents, tickets and outbox included, so the watcher that runs
on the new state adopts them (no second ticket)."""

from __future__ import annotations

import argparse
from typing import Any

from watcher.store import StateFileError, StateLocked, redact
from watcher.store.copy import copy_state
from watcher.store.postgres_backend import is_postgres_url
from watcher.store.sqlite_file import state_is_locked

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("state", help="move the state to another backend")
    actions = p.add_subparsers(dest="state_action", required=True)
    c = actions.add_parser(
        "copy", help="copy every row of one state into an empty one (stop the watcher first)"
    )
    c.add_argument("--from", dest="source", required=True, help="a SQLite file or a URL")
    c.add_argument("--to", dest="destination", required=True, help="a postgresql:// URL or file")
    c.set_defaults(func=cmd_state_copy)


def cmd_state_copy(args: argparse.Namespace) -> int:
    from pathlib import Path

    source: str | Path = args.source if is_postgres_url(args.source) else Path(args.source)
    if isinstance(source, Path) and not source.is_file():
        raise StateFileError(f"no state file at {source}: nothing to copy")
    if isinstance(source, Path) and state_is_locked(source):
        raise StateLocked(f"a watcher is running on {source}; stop it before copying its state")
    destination: str | Path = (
        args.destination if is_postgres_url(args.destination) else Path(args.destination)
    )
    shown = redact(args.destination) if is_postgres_url(args.destination) else args.destination
    counts = copy_state(source, destination)
    print(f"copied {sum(counts.values())} rows to {shown}")
    return 0
