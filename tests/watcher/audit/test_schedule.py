"""Scheduled audits: mailed to a real SMTP server at their slot, exactly once per slot,
also across restarts; retried while the relay is down; delivered by the running daemon."""

from __future__ import annotations

import email
import email.policy
import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.servers.base import wait_until
from tests.support.audit_history import compact, series
from tests.support.helpers import Clock, config_from
from watcher.audit.schedule import AuditScheduler
from watcher.config.models import Config
from watcher.delivery.mail import send_mail
from watcher.store import Store

IST = ZoneInfo("Asia/Kolkata")


def _ist(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=IST)


def _config(
    directory: Path, port: int, audit: str = "{every: mon 08:00, to: [managers]}", smtp: str = ""
) -> Config:
    text = f"""
    site: acme-pune
    state: state/watcher.db
    listen: null
    smtp: {{host: 127.0.0.1, port: {port}, from: watcher@acme.example{smtp}}}
    contacts:
      managers: [{{name: IT manager, email: it-manager@acme.example}}, {{role: CIO, email: cio@acme.example}}]
    audits:
      - {audit}
    """
    return config_from(directory, textwrap.dedent(text), environ={})


def _history(store: Store, end: datetime) -> None:
    # /var on mail1: 61% a month ago, one point a day: nine days from full at the slot
    series(
        store,
        "mail1",
        "disk",
        lambda day, rng: {"used_percent": 61 + day + rng.gauss(0, 0.5)},
        labels={"path": "/var"},
        end=end,
    )
    compact(store, end)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "watcher.db")
    yield s
    s.close()


def _scheduler(store: Store, config: Config, clock: Clock, **kw) -> AuditScheduler:
    return AuditScheduler(store, lambda: config, clock=clock, **kw)


def test_a_new_schedule_mails_at_its_next_slot_once_also_across_a_restart(
    tmp_path: Path, store: Store, smtp_sink
) -> None:
    config = _config(tmp_path, smtp_sink.port)
    _history(store, _ist(23, 8))
    clock = Clock(_ist(23, 7, 59))
    first = _scheduler(store, config, clock)
    assert [d.outcome for d in first.run_due()] == ["baseline"]  # last Monday's slot is not mailed
    clock.now = _ist(23, 8)
    [delivery] = first.run_due()
    assert (delivery.outcome, delivery.slot) == ("sent", _ist(23, 8))
    [mail] = smtp_sink.wait_for_messages(1)
    assert mail.rcpt_tos == ["it-manager@acme.example", "cio@acme.example"]
    assert (
        mail.message["Subject"].strip()
        == "[acme-pune] Server and usage audit, 16 Nov to 23 Nov 2026: 1 high"
    )
    message = mail.message
    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert html.count("<svg ") == 1 and "Content-Security-Policy" in html
    assert "/var on mail1 full in about 9 days at the current rate" in text
    assert (
        message["X-Watcher-Audit"] == "mon 08:00" and message["Auto-Submitted"] == "auto-generated"
    )
    clock.now = _ist(23, 8, 5)
    assert first.run_due() == []
    restarted = _scheduler(store, config, clock)  # a new process on the same state file
    clock.now = _ist(23, 9)
    assert restarted.run_due() == []
    assert len(smtp_sink.messages) == 1
    clock.now = _ist(30, 8)
    assert [d.outcome for d in restarted.run_due()] == ["sent"]
    second = smtp_sink.wait_for_messages(2)[1]
    assert (
        second.message["Subject"].strip()
        == "[acme-pune] Server and usage audit, 23 Nov to 30 Nov 2026: nothing urgent"
    )
    assert second.message["Message-ID"] != message["Message-ID"]


def test_a_watcher_down_at_the_slot_mails_only_the_newest_missed_report(
    tmp_path: Path, store: Store, smtp_sink
) -> None:
    config = _config(
        tmp_path, smtp_sink.port, "{every: mon 08:00, since: 7d, to: [managers], format: md}"
    )
    _history(store, _ist(23, 8))
    clock = Clock(_ist(22, 12))
    _scheduler(store, config, clock).run_due()
    clock.now = _ist(25, 15)  # down over Monday, back on Wednesday
    [delivery] = _scheduler(store, config, clock).run_due()
    assert delivery.slot == _ist(23, 8)
    mail = smtp_sink.wait_for_messages(1)[0]
    assert "16 Nov 2026 to 23 Nov 2026 (7d)" in mail.body  # the slot's week, not up to Wednesday
    clock.now = datetime(2026, 12, 16, 12, tzinfo=IST)  # three more Mondays missed
    assert [(d.slot, d.outcome) for d in _scheduler(store, config, clock).run_due()] == [
        (datetime(2026, 12, 14, 8, tzinfo=IST), "sent")
    ]
    assert len(smtp_sink.wait_for_messages(2)) == 2


def test_a_relay_that_is_down_is_retried_until_the_report_goes(
    tmp_path: Path, store: Store, smtp_sink
) -> None:
    config = _config(tmp_path, smtp_sink.port)
    clock = Clock(_ist(23, 7))
    scheduler = _scheduler(store, config, clock)
    scheduler.run_due()
    smtp_sink.stop()
    clock.now = _ist(23, 8)
    [delivery] = scheduler.run_due()
    assert delivery.outcome == "retry" and "unreachable" in delivery.detail
    state = json.loads(store.get_meta("audit:mon 08:00"))
    assert state["outcome"] == "retry" and state["next_try"] == pytest.approx(
        (_ist(23, 8) + timedelta(minutes=2)).timestamp()
    )
    clock.now = _ist(23, 8, 1)
    assert scheduler.run_due() == []  # not before the backoff
    smtp_sink.start()
    clock.now = _ist(23, 8, 3)
    assert [d.outcome for d in scheduler.run_due()] == ["sent"]
    clock.now = _ist(23, 9)
    assert scheduler.run_due() == []
    assert len(smtp_sink.wait_for_messages(1)) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_refused_login_is_not_retried_before_the_next_slot(
    tmp_path: Path, store: Store, smtp_sink_factory
) -> None:
    sink = smtp_sink_factory(auth=("watcher", "right-password"), auth_require_tls=False)
    config = config_from(
        tmp_path,
        textwrap.dedent(f"""
        site: acme-pune
        state: state/watcher.db
        smtp: {{host: 127.0.0.1, port: {sink.port}, from: watcher@acme.example, user: watcher, password: "${{SMTP_PASSWORD}}"}}
        audits: [{{every: "daily 07:00", to: [ops@acme.example]}}]
        """),
        environ={"SMTP_PASSWORD": "wrong-password"},
    )
    clock = Clock(_ist(23, 6))
    scheduler = _scheduler(store, config, clock)
    scheduler.run_due()
    clock.now = _ist(23, 7)
    [delivery] = scheduler.run_due()
    assert delivery.outcome == "failed" and "refused the login" in delivery.detail
    assert "wrong-password" not in store.get_meta("audit:daily 07:00")
    clock.now = _ist(23, 12)
    assert scheduler.run_due() == []
    assert sink.messages == []


def test_the_report_can_go_as_an_attachment(tmp_path: Path, store: Store, smtp_sink) -> None:
    config = _config(
        tmp_path,
        smtp_sink.port,
        '{name: weekly, every: "mon 08:00", to: [managers, ops@acme.example], attach: true, subject: "Weekly audit"}',
    )
    _history(store, _ist(23, 8))
    clock = Clock(_ist(23, 7))
    scheduler = _scheduler(store, config, clock)
    scheduler.run_due()
    clock.now = _ist(23, 8, 30)
    scheduler.run_due()
    mail = smtp_sink.wait_for_messages(1)[0]
    assert mail.message["Subject"] == "Weekly audit" and "ops@acme.example" in mail.rcpt_tos
    [attachment] = list(mail.message.iter_attachments())
    assert attachment.get_filename() == "audit-acme-pune-2026-11-23.html"
    assert attachment.get_content_type() == "text/html"
    assert attachment.get_content().count("<svg ") == 1
    assert "full in about 9 days" in mail.message.get_body(preferencelist=("plain",)).get_content()


def test_a_crash_while_sending_resends_with_the_same_message_id(
    tmp_path: Path, store: Store, smtp_sink
) -> None:
    config = _config(tmp_path, smtp_sink.port)
    clock = Clock(_ist(23, 7))

    def send_then_crash(settings, message) -> None:
        send_mail(settings, message)
        raise SystemExit("killed after the relay took the message")

    crashing = _scheduler(store, config, clock, send=send_then_crash)
    crashing.run_due()
    clock.now = _ist(23, 8)
    with pytest.raises(SystemExit):
        crashing.run_due()
    _scheduler(store, config, clock).run_due()
    first, second = smtp_sink.wait_for_messages(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert _scheduler(store, config, clock).run_due() == []


# ------------------------------------------------------------------------ the daemon


@pytest.mark.slow
def test_the_running_daemon_mails_the_weekly_audit_through_postfix(
    tmp_path: Path, fresh_mail_server
) -> None:
    """A real watcher (App) with a Monday 08:00 audit: mailed once through Postfix into the
    manager's mailbox, read back over IMAP; a restart in the same week mails nothing."""
    from watcher.app.daemon import App

    mail = fresh_mail_server
    config_path = tmp_path / "watcher.yml"
    config_path.write_text(
        textwrap.dedent(f"""
        site: acme-pune
        state: state/watcher.db
        listen: null
        smtp: {{host: 127.0.0.1, port: {mail.smtp_port}, from: watcher@localhost}}
        contacts:
          managers: [{{name: IT manager, email: {mail.address}}}]
        audits:
          - {{every: "mon 08:00", since: 7d, to: [managers]}}
        """)
    )
    store = Store(tmp_path / "state" / "watcher.db")
    _history(store, _ist(23, 8))
    store.close()
    clock = Clock(_ist(23, 7, 58))

    def run(advance_to: datetime | None) -> None:
        app = App(config_path)
        app.audits.clock = clock
        app.audits.poll_every = 0.05
        app.start()
        try:
            looked = app.audits.looks
            wait_until(
                lambda: app.audits.looks >= looked + 2, 10, "the audit thread to look at the clock"
            )
            if advance_to is not None:
                clock.now = advance_to
                mail.wait_for_messages(1, timeout=20)
            looked = app.audits.looks
            wait_until(lambda: app.audits.looks >= looked + 5, 10, "more looks at the clock")
        finally:
            app.stop()
            app.shutdown()

    run(_ist(23, 8))
    run(None)  # restarted at 08:00 plus a little: the slot is already done
    [message] = mail.messages()
    assert (
        message["Subject"].strip()
        == "[acme-pune] Server and usage audit, 16 Nov to 23 Nov 2026: 1 high"
    )
    html = message.get_body(preferencelist=("html",)).get_content()
    assert (
        "/var on mail1 full in about 9 days at the current rate" in html
        and html.count("<svg ") == 1
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["To"] == mail.address
