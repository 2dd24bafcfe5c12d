"""``watcher maintenance``: list, add and remove maintenance windows.

    watcher maintenance add db-upgrade --target db1 --duration 2h --reason "PostgreSQL 16"
    watcher maintenance add backups --label role=files --cron "0 2 * * *" --duration 1h
    watcher maintenance add lab --label env=lab --days sat,sun --from 00:00 --to 24:00
    watcher maintenance list [--all] [--json]
    watcher maintenance remove 3

Windows go into the state file, so this works whether or not the daemon runs; a running
daemon picks them up at its next step. Windows written in watcher.yml are listed too
(remove those from the file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "maintenance", parents=[common], help="list, add or remove maintenance windows"
    )
    actions = p.add_subparsers(dest="maintenance_action", metavar="ACTION")

    q = actions.add_parser(
        "list", parents=[common], help="windows on now and to come (--all: ended too)"
    )
    q.add_argument("--all", action="store_true", help="include ended and removed windows")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    q = actions.add_parser("add", parents=[common], help="add a window (one-off, cron or weekly)")
    q.add_argument("name")
    q.add_argument("--target", action="append", default=[], help="target name or glob (repeatable)")
    q.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label the targets carry (repeatable)",
    )
    q.add_argument("--start", help='when it begins: now (default), +30m, or "2026-11-28 22:00"')
    q.add_argument("--end", help="when it ends (a one-off window)")
    q.add_argument("--duration", help="how long it (or each occurrence) lasts, e.g. 2h")
    q.add_argument("--cron", help='a recurring start, e.g. "0 2 * * *" (with --duration)')
    q.add_argument("--days", help="weekly: mon,tue,... (with --from and --to; default every day)")
    q.add_argument("--from", dest="from_", metavar="HH:MM", help="weekly: start time of day")
    q.add_argument(
        "--to",
        metavar="HH:MM",
        help="weekly: end time of day (earlier than --from: crosses midnight)",
    )
    q.add_argument("--timezone", help="default: business_hours.timezone")
    q.add_argument("--reason", default="", help="shown in incident timelines and tickets")
    q.add_argument("--by", default=os.environ.get("USER", "cli"), help="who adds it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_add)

    q = actions.add_parser("remove", parents=[common], help="end a stored window now")
    q.add_argument("id", type=int)
    q.add_argument("--by", default=os.environ.get("USER", "cli"))
    q.set_defaults(func=cmd_remove)

    p.set_defaults(func=cmd_list, all=False, json=False)  # plain `watcher maintenance` lists


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from watcher.config.load import load_for_reading
    from watcher.store import Store

    config = load_for_reading(args.config)
    return config, Store(config.state_location)


def cmd_add(args: argparse.Namespace) -> int:
    from watcher.engine.maintenance import Window, add_window, check_windows, window_from_request

    config, store = _open(args)
    try:
        labels = {}
        for item in args.label:
            key, sep, value = item.partition("=")
            if not sep or not key:
                print(f"--label {item!r}: write KEY=VALUE, e.g. --label role=mail", file=sys.stderr)
                return 2
            labels[key] = value
        now = datetime.now(UTC)
        timezone = config.model.business_hours.timezone
        request = {
            "name": args.name,
            "targets": args.target,
            "labels": labels,
            "start": args.start,
            "end": args.end,
            "duration": args.duration,
            "cron": args.cron,
            "days": [d.strip() for d in args.days.split(",")] if args.days else None,
            "from": args.from_,
            "to": args.to,
            "timezone": args.timezone,
            "reason": args.reason,
        }
        try:
            window = window_from_request(request, default_timezone=timezone, now=now)
        except ValueError as exc:
            print(f"watcher maintenance add: {exc}", file=sys.stderr)
            return 2
        problems = check_windows([window], config.targets, [o.name for o in config.model.outages])
        if problems:
            print(
                "watcher maintenance add: "
                + "; ".join(f"{p[2]}{' (' + p[3] + ')' if p[3] else ''}" for p in problems),
                file=sys.stderr,
            )
            return 2
        window_id = add_window(store, window, by=args.by, now=now)
        view = Window(
            window, window.timezone or timezone, id=window_id, created_by=args.by, created_at=now
        ).view(now)
        if args.json:
            print(json.dumps(view, indent=2))
        else:
            print(
                f"maintenance window {window_id} {window.name!r} added: {view['when']}, {view['state']}"
            )
        return 0
    finally:
        store.close()


def cmd_list(args: argparse.Namespace) -> int:
    from watcher.engine.maintenance import Maintenance

    config, store = _open(args)
    try:
        now = datetime.now(UTC)
        maintenance = Maintenance(store)
        maintenance.configure(config.model.maintenance, config.model.business_hours.timezone)
        maintenance.refresh()
        views = [w.view(now) for w in maintenance.windows]
        if args.all:
            views += _removed(store)
        else:
            views = [v for v in views if v["state"] != "ended"]
        if args.json:
            print(json.dumps(views, indent=2))
            return 0
        if not views:
            print(
                "no maintenance windows"
                + ("" if args.all else " on now or to come (--all for ended ones)")
            )
            return 0
        rows: list[tuple[object, ...]] = []
        for v in views:
            covers = ", ".join([*v["targets"], *(f"{k}={val}" for k, val in v["labels"].items())])
            rows.append(
                (
                    str(v["id"] or "-"),
                    v["name"],
                    v["source"],
                    v["state"],
                    v["when"],
                    covers,
                    v["reason"],
                )
            )
        _table(["ID", "NAME", "SOURCE", "STATE", "WHEN", "COVERS", "REASON"], rows)
        return 0
    finally:
        store.close()


def _removed(store: Any) -> list[dict[str, Any]]:
    out = []
    for row in store.maintenance_windows(removed=True):
        spec = json.loads(row["spec"])
        out.append(
            {
                "id": row["id"],
                "name": row["name"],
                "source": "store",
                "targets": spec.get("targets", []),
                "labels": spec.get("labels", {}),
                "when": f"removed {row['removed_at'][:16]} by {row['removed_by']}",
                "reason": row["reason"],
                "active": False,
                "state": "removed",
                "created_by": row["created_by"],
                "created_at": row["created_at"],
                "spec": spec,
            }
        )
    return out


def cmd_remove(args: argparse.Namespace) -> int:
    from watcher.engine.maintenance import remove_window

    config, store = _open(args)
    try:
        if remove_window(store, args.id, by=args.by, now=datetime.now(UTC)):
            print(
                f"maintenance window {args.id} removed; held notifications go out at the daemon's next step"
            )
            return 0
        names = [w.name for w in config.model.maintenance]
        hint = (
            f" (windows in {args.config} are removed by editing it: {', '.join(names)})"
            if names
            else ""
        )
        print(f"no stored maintenance window {args.id}{hint}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _table(header: list[str], rows: list[tuple[object, ...]]) -> None:
    from watcher.cli.main import _table as table

    table(header, rows)
