"""``watcher audit``: the server and usage audit of a period, as HTML, JSON or Markdown.

watcher audit                              last 30 days, HTML on standard output
watcher audit --since 7d --format md       last week, Markdown
watcher audit --out audit.html             into a file
watcher audit --schedule weekly --mail     what a scheduled audit would mail, mailed now
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.config.load import load_config, load_for_reading
from watcher.config.models import AuditSchedule
from watcher.core.durations import parse_duration

__all__ = ["register", "cmd_audit"]

EXIT_OK, EXIT_FAILING, EXIT_CONFIG = 0, 1, 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("audit", parents=[common], help="write a server and usage audit report")
    p.add_argument(
        "--since", help="the period before now: 7d, 30d, 12w (default 30d, or the schedule's)"
    )
    p.add_argument("--format", choices=["html", "json", "md"], help="html (default), json or md")
    p.add_argument("--out", help="write the report to this file instead of standard output")
    p.add_argument(
        "--at",
        help="end the period at this time (ISO 8601, e.g. 2026-11-23T08:00+05:30) instead of now",
    )
    p.add_argument(
        "--schedule",
        help="take period, format and thresholds from this audits: entry (its name or every)",
    )
    p.add_argument(
        "--mail",
        action="store_true",
        help="mail the report now, to the schedule's recipients or --to",
    )
    p.add_argument(
        "--to", action="append", help="mail the report to this address (repeatable; implies --mail)"
    )
    p.set_defaults(func=cmd_audit)


def _fail(message: str, code: int = EXIT_CONFIG) -> int:
    print(f"watcher audit: {message}", file=sys.stderr)
    return code


def cmd_audit(args: argparse.Namespace) -> int:
    from watcher.audit.build import build_audit
    from watcher.audit.recommend import audit_counts
    from watcher.audit.schedule import render
    from watcher.config.thresholds import Thresholds
    from watcher.store import Store

    # only mailing the report needs the relay's secrets
    config = (load_config if args.mail or args.to else load_for_reading)(args.config)
    m = config.model
    schedule: AuditSchedule | None = None
    if args.schedule:
        schedule = next((a for a in m.audits if args.schedule in (a.name, a.every)), None)
        if schedule is None:
            known = ", ".join(a.key for a in m.audits) or "none configured"
            return _fail(f"no audits: entry named {args.schedule!r} (audits: {known})")
    try:
        since = (
            parse_duration(args.since)
            if args.since
            else schedule.since
            if schedule and schedule.since
            else None
        )
        end = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    except ValueError as exc:
        return _fail(str(exc))
    if end.tzinfo is None:
        end = end.replace(tzinfo=config.calendar.tz)
    if since is None:
        since = (
            _schedule_period(schedule, end, config.calendar.timezone)
            if schedule
            else timedelta(days=30)
        )
    if since <= timedelta(0):
        return _fail("--since must be longer than zero")
    fmt = args.format or (schedule.format if schedule else "html")
    if not config.state_is_database and not config.state_path.exists():
        return _fail(
            f"no history at {config.state_path}: watcher has not run here yet", EXIT_FAILING
        )
    store = Store(config.state_location)
    try:
        audit = build_audit(
            store,
            config,
            since=since,
            now=end,
            thresholds=Thresholds.from_mapping(schedule.thresholds if schedule else None),
        )
    finally:
        store.close()
    text = render(audit, fmt)
    counts = audit_counts(audit)
    summary = f"{len(audit.recommendations)} recommendations ({counts['critical']} critical, {counts['high']} high)"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: {summary}", file=sys.stderr)
    elif not (args.mail or args.to):
        sys.stdout.write(text)
    if args.mail or args.to:
        return _mail(args, config, audit, schedule, fmt)
    return EXIT_OK


def _schedule_period(schedule: AuditSchedule, end: datetime, timezone: str) -> timedelta:
    from zoneinfo import ZoneInfo

    from watcher.schedule.every import parse_every

    tz = ZoneInfo(timezone)
    every = parse_every(schedule.every)
    slot = every.last_slot(end, tz)
    return slot - every.previous(slot, tz)


def _mail(
    args: argparse.Namespace, config: Any, audit: Any, schedule: AuditSchedule | None, fmt: str
) -> int:
    from integrations.base import DeliveryError
    from watcher.audit.schedule import audit_message
    from watcher.delivery.mail import send_mail

    m = config.model
    if m.smtp is None:
        return _fail("mailing needs the smtp: relay in the config")
    if schedule is None:
        schedule = AuditSchedule(every="daily 00:00", to=args.to or ["managers"], format=fmt)
    to = list(args.to) if args.to else schedule.recipients(m.contacts)
    if not to:
        return _fail("nobody to mail: give --to ADDRESS or emails to contacts.managers")
    message = audit_message(audit, schedule, sender=m.smtp.sender, to=to)
    try:
        send_mail(m.smtp, message)
    except DeliveryError as exc:
        kind = "temporary, try again" if exc.retry else "permanent"
        return _fail(f"mail not sent ({kind}): {exc}", EXIT_FAILING)
    print(f"mailed the audit to {', '.join(to)}", file=sys.stderr)
    return EXIT_OK
