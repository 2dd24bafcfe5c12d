"""Scheduled audits: built at their time and mailed through the ``smtp:`` relay, once per slot.

Each ``audits:`` entry remembers its last slot in the store, so a restart neither skips
nor repeats a report. A new schedule starts with the next slot (adding a Monday report
on a Tuesday does not mail last Monday's); a watcher that was down at a slot mails that
slot's report when it comes back, but only the newest one missed. A relay that is down
is retried with backoff until the next slot; a refusal that a retry cannot fix (bad
login, unknown recipient) is logged and waits for the next slot.

The one window where a report can go twice is a crash between the relay accepting the
message and the store recording it; the resent message has the same Message-ID, so
mail systems that dedupe on it show one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from integrations.base import PermanentError, TransientError
from watcher.audit.build import build_audit
from watcher.audit.figures import Audit
from watcher.audit.recommend import audit_counts
from watcher.audit.report_html import render_html
from watcher.audit.report_md import render_markdown
from watcher.config.models import AuditSchedule, Config, SmtpSettings
from watcher.config.thresholds import Thresholds
from watcher.delivery.httpclient import HttpClients
from watcher.delivery.mail import build_message, send_mail
from watcher.schedule.every import parse_every
from watcher.store import Store

__all__ = ["AuditScheduler", "Delivery", "audit_message", "render", "POLL_EVERY"]

log = logging.getLogger("watcher.audit")

POLL_EVERY = 30.0
RETRY_FIRST = timedelta(minutes=2)
RETRY_MAX = timedelta(hours=1)

Sender = Callable[[SmtpSettings, EmailMessage], None]


def render(audit: Audit, fmt: str) -> str:
    if fmt == "json":
        return audit.to_json()
    if fmt == "md":
        return render_markdown(audit)
    return render_html(audit)


_EXTENSIONS = {
    "html": ("html", "text/html"),
    "json": ("json", "application/json"),
    "md": ("md", "text/markdown"),
}


def audit_message(
    audit: Audit,
    schedule: AuditSchedule,
    *,
    sender: str,
    to: list[str],
    message_id: str | None = None,
) -> EmailMessage:
    """The report as mail: HTML inline (with a Markdown text part) or as an attachment."""
    tz = ZoneInfo(audit.timezone)
    counts = audit_counts(audit)
    urgent = (
        ", ".join(f"{counts[s]} {s}" for s in ("critical", "high") if counts[s]) or "nothing urgent"
    )
    period = f"{audit.start.astimezone(tz):%d %b} to {audit.end.astimezone(tz):%d %b %Y}"
    subject = schedule.subject or f"[{audit.site}] Server and usage audit, {period}: {urgent}"
    text = render_markdown(audit)
    html: str | None = None
    attachments: list[tuple[str, str, bytes]] = []
    if schedule.attach:
        extension, mime = _EXTENSIONS[schedule.format]
        name = f"audit-{audit.site}-{audit.end.astimezone(tz):%Y-%m-%d}.{extension}"
        attachments.append((name, mime, render(audit, schedule.format).encode()))
    elif schedule.format == "html":
        html = render_html(audit)
    elif schedule.format == "json":
        text = audit.to_json()
    return build_message(
        sender=sender,
        to=to,
        subject=subject,
        text=text,
        html=html,
        headers={"X-Watcher-Site": audit.site, "X-Watcher-Audit": schedule.key},
        attachments=attachments,
        message_id=message_id,
    )


@dataclass
class Delivery:
    """What one due schedule did: ``sent``, ``retry`` (relay down), ``failed`` or ``baseline``."""

    key: str
    slot: datetime
    outcome: str
    detail: str = ""


class AuditScheduler:
    """Runs the config's ``audits:`` at their times; ``run_due()`` is one look at the clock."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        http: HttpClients | None = None,
        send: Sender | None = None,
        poll_every: float = POLL_EVERY,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.http = http or HttpClients()
        self.send: Sender = send or (
            lambda settings, message: send_mail(settings, message, self.http)
        )
        self.poll_every = poll_every
        self.looks = 0  # how often the clock was looked at, for tests and health
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leads: Callable[[], bool] = lambda: True
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="audits", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leads():  # in a cluster, the leader mails the audits
                    self.run_due()
            except Exception:  # a broken report must not stop the next one
                log.exception("scheduled audit failed")
            self._stop.wait(self.poll_every)

    # ------------------------------------------------------------------- the work

    def run_due(self) -> list[Delivery]:
        """Builds and mails every audit whose slot has come and was not mailed yet."""
        with self._lock:
            config = self.config()
            now = self.clock()
            tz = ZoneInfo(config.model.business_hours.timezone)
            done = [
                d
                for s in config.model.audits
                if (d := self._run_one(config, s, now, tz)) is not None
            ]
            self.looks += 1
            return done

    def _state_key(self, schedule: AuditSchedule) -> str:
        return f"audit:{schedule.key}"

    def _state(self, schedule: AuditSchedule) -> dict[str, Any] | None:
        raw = self.store.get_meta(self._state_key(schedule))
        return json.loads(raw) if raw else None

    def _save(self, schedule: AuditSchedule, **state: Any) -> None:
        self.store.set_meta(self._state_key(schedule), json.dumps(state))

    def _run_one(
        self, config: Config, schedule: AuditSchedule, now: datetime, tz: ZoneInfo
    ) -> Delivery | None:
        every = parse_every(schedule.every)
        slot = every.last_slot(now, tz)
        state = self._state(schedule)
        if state is None:
            # first sight of this schedule: its runs start with the next slot
            self._save(schedule, slot=slot.isoformat(), outcome="baseline", attempts=0)
            log.info(
                "audit %s scheduled %s; first report at %s",
                schedule.key,
                schedule.every,
                every.next_slot(now, tz),
            )
            return Delivery(schedule.key, slot, "baseline")
        last = datetime.fromisoformat(state["slot"])
        attempts = int(state.get("attempts", 0))
        if slot > last:
            attempts = 0
        elif slot == last and state["outcome"] in ("retry", "sending"):
            if state["outcome"] == "retry" and now.timestamp() < float(state.get("next_try", 0)):
                return None
        else:
            return None
        return self._deliver(config, schedule, every.previous(slot, tz), slot, attempts, now)

    def _deliver(
        self,
        config: Config,
        schedule: AuditSchedule,
        previous: datetime,
        slot: datetime,
        attempts: int,
        now: datetime,
    ) -> Delivery:
        m = config.model
        to = schedule.recipients(m.contacts)
        attempts += 1
        self._save(schedule, slot=slot.isoformat(), outcome="sending", attempts=attempts)
        since = schedule.since or (slot - previous)
        digest = hashlib.sha256(
            f"{m.site}\0{schedule.key}\0{slot.isoformat()}".encode()
        ).hexdigest()[:20]
        assert m.smtp is not None  # the config check insists on it
        delay = min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_MAX)
        try:
            audit = build_audit(
                self.store,
                config,
                since=since,
                now=slot.astimezone(UTC),
                thresholds=Thresholds.from_mapping(schedule.thresholds),
            )
            message = audit_message(
                audit, schedule, sender=m.smtp.sender, to=to, message_id=f"<audit-{digest}@watcher>"
            )
        except Exception as exc:  # a bug in a report: log it, try again later, keep the daemon
            log.exception("audit %s for %s could not be built", schedule.key, slot)
            self._save(
                schedule,
                slot=slot.isoformat(),
                outcome="retry",
                attempts=attempts,
                next_try=(now + delay).timestamp(),
                error=f"{type(exc).__name__}: {exc}",
            )
            return Delivery(schedule.key, slot, "retry", str(exc))
        try:
            self.send(m.smtp, message)
        except TransientError as exc:
            self._save(
                schedule,
                slot=slot.isoformat(),
                outcome="retry",
                attempts=attempts,
                next_try=(now + delay).timestamp(),
                error=str(exc),
            )
            log.warning(
                "audit %s for %s not mailed (retry in %s): %s", schedule.key, slot, delay, exc
            )
            return Delivery(schedule.key, slot, "retry", str(exc))
        except PermanentError as exc:
            self._save(
                schedule, slot=slot.isoformat(), outcome="failed", attempts=attempts, error=str(exc)
            )
            log.error(
                "audit %s for %s not mailed, and a retry will not help: %s", schedule.key, slot, exc
            )
            return Delivery(schedule.key, slot, "failed", str(exc))
        self._save(
            schedule,
            slot=slot.isoformat(),
            outcome="sent",
            attempts=attempts,
            sent_at=now.isoformat(),
        )
        log.info("audit %s for %s mailed to %s", schedule.key, slot, ", ".join(to))
        return Delivery(schedule.key, slot, "sent", ", ".join(to))
