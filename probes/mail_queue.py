"""``mail_queue``: how many messages a Postfix, Exim or Sendmail queue holds, and the oldest's age.

Postfix is read with ``postqueue -j`` (one JSON object per message, Postfix 3.1+), Exim and
Sendmail with ``mailq``. The target's own clock (``date``, printed in the same exec) dates
the messages, so a skewed watcher clock does not age them. Rules decide what is too many
or too old; the probe says ``error`` only when it cannot read the queue.

The monitoring user must be allowed to list the queue: Postfix allows anyone by default
(``authorized_mailq_users``); Exim needs ``queue_list_requires_admin = false`` or the user in
Exim's group; Sendmail must not set ``PrivacyOptions=restrictmailq``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import ClassVar, Literal

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = [
    "MailQueueProbe",
    "MailQueueConfig",
    "QueueReport",
    "parse_postfix",
    "parse_exim",
    "parse_sendmail",
]

# "$@" is the listing command: nothing from the config is spliced into the script text.
# postqueue and exim live in sbin, which an unprivileged login's PATH often lacks.
_WITH_CLOCK = 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; date "+%s %z"; exec "$@"'
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_EXIM_ENTRY = re.compile(r"^\s*(\d+)([smhdw])\s+\S+\s+(\S{6}-\S{6}-\S{2,6})\s+<(.*?)>(.*)$")
_SENDMAIL_ENTRY = re.compile(
    r"^(\S+?)[*X-]?\s+(\d+)\s+\w{3}\s+(\w{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(\S+)"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


class MailQueueConfig(ProbeConfig):
    mta: Literal["postfix", "exim", "sendmail"] = "postfix"
    config_dir: str | None = None
    command: list[str] | None = None

    def listing_command(self) -> list[str]:
        if self.command:
            return list(self.command)
        if self.mta == "postfix":
            return ["postqueue", *(["-c", self.config_dir] if self.config_dir else []), "-j"]
        return ["mailq"]


@dataclass
class QueueReport:
    """What a queue listing said."""

    queued: int = 0
    oldest_age_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def _target_clock(first_line: str) -> datetime | None:
    parts = first_line.split()
    if len(parts) != 2 or not parts[0].isdigit() or not re.fullmatch(r"[+-]\d{4}", parts[1]):
        return None
    sign = -1 if parts[1][0] == "-" else 1
    offset = timedelta(hours=int(parts[1][1:3]), minutes=int(parts[1][3:5])) * sign
    return datetime.fromtimestamp(int(parts[0]), timezone(offset))


def _age_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def parse_postfix(listing: str, now: datetime) -> QueueReport:
    report = QueueReport(counts={"deferred": 0, "active": 0, "hold": 0})
    arrivals = []
    for line in listing.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        report.queued += 1
        queue = str(entry.get("queue_name", ""))
        if queue in report.counts:
            report.counts[queue] += 1
        arrival = entry.get("arrival_time")
        if isinstance(arrival, (int, float)):
            arrivals.append(float(arrival))
        if len(report.lines) < 30:
            rcpts = entry.get("recipients") or []
            first = rcpts[0] if rcpts and isinstance(rcpts[0], dict) else {}
            age = _age_text(now.timestamp() - arrival) if isinstance(arrival, (int, float)) else "?"
            reason = f" ({first['delay_reason']})" if first.get("delay_reason") else ""
            report.lines.append(
                f"{queue:8} {entry.get('queue_id', '?')} {age:>8} {entry.get('sender') or '<>'} -> "
                f"{first.get('address', '?')}{' +' + str(len(rcpts) - 1) if len(rcpts) > 1 else ''}{reason}"
            )
    if arrivals:
        report.oldest_age_s = max(0.0, now.timestamp() - min(arrivals))
    return report


def parse_exim(listing: str) -> QueueReport:
    report = QueueReport(counts={"frozen": 0})
    for line in listing.splitlines():
        match = _EXIM_ENTRY.match(line)
        if match is None:
            continue
        report.queued += 1
        report.oldest_age_s = max(
            report.oldest_age_s, float(int(match.group(1)) * _AGE_UNITS[match.group(2)])
        )
        if "*** frozen ***" in match.group(5):
            report.counts["frozen"] += 1
    return report


def parse_sendmail(listing: str, now: datetime) -> QueueReport:
    """``mailq`` in Sendmail's format (Postfix's ``postqueue -p`` also parses)."""
    report = QueueReport()
    for line in listing.splitlines():
        match = _SENDMAIL_ENTRY.match(line)
        if match is None or match.group(3) not in _MONTHS:
            continue
        report.queued += 1
        when = now.replace(
            month=_MONTHS[match.group(3)],
            day=int(match.group(4)),
            hour=int(match.group(5)),
            minute=int(match.group(6)),
            second=int(match.group(7) or 0),
            microsecond=0,
        )
        if when > now + timedelta(days=1):  # the listing has no year: it was last year
            when = when.replace(year=when.year - 1)
        report.oldest_age_s = max(report.oldest_age_s, (now - when).total_seconds())
    return report


class MailQueueProbe(Probe):
    kind = "mail_queue"
    Config = MailQueueConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {"queued", "oldest_age_s", "deferred", "active", "hold", "frozen"}
    )
    needs_runner = True
    config: MailQueueConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        assert ctx.runner is not None
        cfg = self.config
        command = cfg.listing_command()
        done = ctx.runner.run(["sh", "-c", _WITH_CLOCK, "mail_queue", *command], ctx.timeout)
        clock_line, _, listing = done.stdout.partition("\n")
        evidence = listing + (f"\n--- stderr ---\n{done.stderr}" if done.stderr.strip() else "")
        now = _target_clock(clock_line)
        if now is None:
            return Outcome.error(
                f"cannot read the target's clock: {clock_line[:80]!r}",
                evidence=done.stdout + done.stderr,
            )
        if done.exit_code != 0:
            said = (done.stderr.strip() or listing.strip() or "no output").splitlines()[-1]
            hint = " (not installed?)" if done.exit_code == 127 else ""
            return Outcome.error(
                f"{command[0]} exited {done.exit_code}{hint}: {said}", evidence=evidence
            )
        if cfg.mta == "postfix":
            report = parse_postfix(listing, now)
            if report.lines:
                evidence = "\n".join(report.lines) + (
                    f"\n... {report.queued - len(report.lines)} more"
                    if report.queued > len(report.lines)
                    else ""
                )
        elif cfg.mta == "exim":
            report = parse_exim(listing)
        else:
            report = parse_sendmail(listing, now)
        metrics = {"queued": float(report.queued), "oldest_age_s": round(report.oldest_age_s, 1)}
        metrics.update({k: float(v) for k, v in report.counts.items()})
        if report.queued == 0 and listing.strip() and "empty" not in listing.lower():
            return Outcome.error(
                f"no queue entries recognised in the {cfg.mta} listing (is mta: right?)",
                evidence=evidence,
            )
        if report.queued == 0:
            return Outcome.ok(f"{cfg.mta} queue empty", metrics=metrics, evidence=evidence)
        extra = "".join(f", {v} {k}" for k, v in report.counts.items() if v)
        message = f"{report.queued} messages in the {cfg.mta} queue{extra}, oldest {_age_text(report.oldest_age_s)}"
        return Outcome.ok(message, metrics=metrics, evidence=evidence)
