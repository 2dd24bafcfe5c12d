"""email against a real SMTP sink: what a receiver needs to drop a repeated mail."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from integrations.base import TicketRef
from tests.integrations.hosted import build, content
from tests.servers.mail import SmtpSink


def test_every_mail_carries_its_delivery_id_and_the_open_a_stable_message_id(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    mail = build(
        tmp_path,
        "email",
        {"to": ["support@helpdesk.example"], "smtp": {"host": "127.0.0.1", "port": smtp_sink.port}},
    )
    ticket = replace(content(), delivery_id=17, action="open")
    first = mail.open(ticket)
    again = mail.open(ticket)  # a repeat after a crash between sending and recording
    mail.comment(TicketRef(first.id), replace(ticket, delivery_id=18, text="still down"))
    assert first == again
    opened, repeated, commented = smtp_sink.messages
    assert opened.headers["X-Watcher-Delivery"] == repeated.headers["X-Watcher-Delivery"] == "17"
    assert opened.headers["Message-ID"] == repeated.headers["Message-ID"] == first.id
    assert commented.headers["X-Watcher-Delivery"] == "18"
