"""The escalation chain with a moved clock: when each step is due, that it is notified
exactly once (also across a restart), recorded on the ticket and in the timeline, and
mailed to that step's contact through a real SMTP server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.integrations.site import Site, site_config, unique_site
from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink
from tests.support.helpers import Clock

P1_NOW = """
rules:
  - {name: tcp-down, probe: tcp, when: failed, priority: P1, summary: "{target}: SMTP port not answering ({message})"}
"""
P2_NOW = """
rules:
  - {name: tcp-down, probe: tcp, when: failed, priority: P2, summary: "{target}: SMTP port not answering ({message})"}
"""
MONDAY_0930_IST = datetime.fromisoformat("2026-11-23T04:00:00+00:00")
FRIDAY_1700_IST = datetime.fromisoformat("2026-11-20T11:30:00+00:00")


def contacts(sink: SmtpSink) -> str:
    return f"""
smtp: {{host: 127.0.0.1, port: {sink.port}, from: watcher@acme.example}}
contacts:
  escalation:
    - {{role: Senior Product Manager, name: Priya, email: spm@acme.example}}
    - {{role: VP of Business, email: vp@acme.example}}
    - {{role: CTO, email: cto@acme.example}}
"""


class Chain:
    """A site whose tickets go to a webhook (a real HTTP server) and whose escalation
    contacts are mailed through a real SMTP server; restartable on the same state."""

    def __init__(
        self, directory: Path, sink: SmtpSink, tickets: HTTPTestServer, rules: str, start: datetime
    ) -> None:
        self.directory = directory
        self.clock = Clock(start)
        self.text = site_config(
            unique_site(),
            f"  tickets:\n    - webhook: {{url: '{tickets.url}/tickets'}}",
            extra=contacts(sink),
        )
        self.rules = rules
        self.tickets = tickets
        self.sink = sink
        self.site = self._start()

    def _start(self) -> Site:
        return Site(self.directory, self.text, clock=self.clock, rules=self.rules)

    def restart(self) -> None:
        self.site.close()
        self.site = self._start()

    def at(self, **delta: float) -> None:
        """Moves the clock to ``start + delta`` in five-minute ticks (as the daemon ticks)."""
        target = self.start + timedelta(**delta)
        while self.clock() < target:
            self.clock.now = min(target, self.clock() + timedelta(minutes=5))
            self.site.tick()
            self.site.deliver()

    @property
    def start(self) -> datetime:
        return self.site.incident().opened_at  # type: ignore[return-value]

    def escalations(self) -> list[tuple[str, str]]:
        return [(r.action, r.state) for r in self.site.store.outbox() if r.action == "escalate"]

    def mails(self) -> list[tuple[list[str], str]]:
        return [(m.rcpt_tos, m.subject) for m in self.sink.messages]

    def ticket_comments(self) -> list[str]:
        return [
            json.loads(r.body)["incident"]["text"]
            for r in self.tickets.requests_for("/tickets")
            if json.loads(r.body)["event"] == "ticket.comment"
        ]


@pytest.fixture
def p1(tmp_path: Path, smtp_sink: SmtpSink, http_server: HTTPTestServer) -> Chain:
    chain = Chain(tmp_path, smtp_sink, http_server, P1_NOW, MONDAY_0930_IST)
    chain.site.smtp_refused()
    chain.site.deliver()
    yield chain
    chain.site.close()


def test_an_unacknowledged_p1_climbs_the_chain_each_step_once_also_across_a_restart(
    p1: Chain,
) -> None:
    incident = p1.site.incident()
    assert incident.priority == "P1" and incident.response_due == incident.opened_at + timedelta(
        hours=2
    )
    p1.at(hours=1, minutes=55)
    assert p1.escalations() == [] and p1.mails() == []
    p1.at(hours=2)  # the response deadline passes unacknowledged
    assert p1.escalations() == [("escalate", "done")]
    assert p1.mails() == [
        (
            ["spm@acme.example"],
            f"[Escalation] [P1][{p1.site.config.site}] mail1: SMTP port not answering (connection refused)",
        )
    ]
    body = p1.sink.messages[0].body
    assert body.startswith(
        "Escalated to Priya (Senior Product Manager) (step 1 of 3): response deadline"
    )
    assert "Fingerprint:" in body  # the whole ticket body follows the reason
    assert "Escalated:     1 step of the chain notified" in body
    assert p1.sink.messages[0].headers["X-Watcher-Escalation-Step"] == "1"
    p1.at(hours=3, minutes=55)
    assert len(p1.escalations()) == 1

    p1.restart()  # a restart must neither lose nor repeat a step
    p1.at(hours=3, minutes=59)
    assert len(p1.escalations()) == 1
    p1.at(hours=4)  # the resolution deadline passes unresolved
    assert [m[0] for m in p1.mails()] == [["spm@acme.example"], ["vp@acme.example"]]
    p1.restart()
    p1.at(hours=7, minutes=55)
    assert len(p1.escalations()) == 2
    p1.at(hours=8)  # a second resolution time later: the last step
    p1.restart()
    p1.at(hours=24)
    assert p1.escalations() == [("escalate", "done")] * 3
    assert [m[0] for m in p1.mails()] == [
        ["spm@acme.example"],
        ["vp@acme.example"],
        ["cto@acme.example"],
    ]

    incident = p1.site.incident()
    assert incident.escalation == 3
    events = [e for e in p1.site.store.events(incident.id) if e.kind == "escalated"]
    assert [e.data["contact"] for e in events] == [
        "Priya (Senior Product Manager)",
        "VP of Business",
        "CTO",
    ]
    comments = [c for c in p1.ticket_comments() if c.startswith("Escalated")]
    assert [c.split(" (step")[0] for c in comments] == [
        "Escalated to Priya (Senior Product Manager)",
        "Escalated to VP of Business",
        "Escalated to CTO",
    ]
    assert [
        e.data["deadline"] for e in p1.site.store.events(incident.id) if e.kind == "breach"
    ] == ["response", "resolve", "resolve+1", "resolve+2", "resolve+3"]


def test_a_p1_acknowledged_in_time_escalates_only_when_unresolved(p1: Chain) -> None:
    p1.at(hours=1)
    p1.site.engine.acknowledge(p1.site.incident().id, by="asha", source="cli")
    p1.at(hours=3, minutes=55)
    assert p1.escalations() == []  # the response SLA was met
    p1.at(hours=4)
    assert [m[0] for m in p1.mails()] == [["spm@acme.example"]]
    assert "resolution deadline" in p1.sink.messages[0].body


def test_a_resolved_incident_escalates_no_further(p1: Chain) -> None:
    p1.at(hours=2)
    p1.site.smtp_ok()
    p1.site.smtp_ok()
    p1.at(hours=12)
    assert len(p1.escalations()) == 1


def test_a_p2_raised_friday_1700_ist_breaches_on_monday_and_tuesday(
    tmp_path: Path, smtp_sink: SmtpSink, http_server: HTTPTestServer
) -> None:
    chain = Chain(tmp_path, smtp_sink, http_server, P2_NOW, FRIDAY_1700_IST)
    try:
        chain.site.smtp_refused()
        incident = chain.site.incident()
        # 4 business hours: Friday 17:00-18:00, then Monday 08:00-11:00
        assert incident.response_due == datetime.fromisoformat("2026-11-23T05:30:00+00:00")
        # 2 working days (20 business hours): Friday 1 h, Monday 10 h, Tuesday 08:00-17:00
        assert incident.resolve_due == datetime.fromisoformat("2026-11-24T11:30:00+00:00")
        monday_1055 = chain.clock.now.replace(day=23, hour=5, minute=25)
        chain.at(seconds=(monday_1055 - FRIDAY_1700_IST).total_seconds())
        assert chain.escalations() == []  # the weekend does not count
        chain.at(seconds=(incident.response_due - FRIDAY_1700_IST).total_seconds())
        assert [m[0] for m in chain.mails()] == [["spm@acme.example"]]
        chain.at(seconds=(incident.resolve_due - FRIDAY_1700_IST).total_seconds() - 300)
        assert len(chain.escalations()) == 1
        chain.at(seconds=(incident.resolve_due - FRIDAY_1700_IST).total_seconds())
        assert [m[0] for m in chain.mails()] == [["spm@acme.example"], ["vp@acme.example"]]
        assert chain.sink.messages[1].headers.get("X-Priority") is None  # urgent marks are for P1
    finally:
        chain.site.close()


def test_a_holiday_moves_the_p2_breach_to_the_next_working_day(
    tmp_path: Path, smtp_sink: SmtpSink, http_server: HTTPTestServer
) -> None:
    chain = Chain(tmp_path, smtp_sink, http_server, P2_NOW, FRIDAY_1700_IST)
    chain.site.close()
    chain.text = chain.text.replace(
        "rules: [default, site.yml]",
        "rules: [default, site.yml]\nbusiness_hours: {holidays: [2026-11-23]}",
    )
    chain.site = chain._start()
    try:
        chain.site.smtp_refused()
        assert chain.site.incident().response_due == datetime.fromisoformat(
            "2026-11-24T05:30:00+00:00"
        )  # Tuesday 11:00 IST
    finally:
        chain.site.close()


def test_contacts_without_email_are_recorded_on_the_ticket_only(
    tmp_path: Path, smtp_sink: SmtpSink, http_server: HTTPTestServer
) -> None:
    chain = Chain(tmp_path, smtp_sink, http_server, P1_NOW, MONDAY_0930_IST)
    chain.site.close()
    chain.text = chain.text.replace(
        "{role: Senior Product Manager, name: Priya, email: spm@acme.example}",
        "{role: Senior Product Manager, phone: '+912030458306'}",
    )
    chain.site = chain._start()
    try:
        chain.site.smtp_refused()
        chain.site.deliver()
        chain.at(hours=2)
        assert chain.escalations() == [("escalate", "done")] and chain.mails() == []
        assert any(
            c.startswith("Escalated to Senior Product Manager (step 1 of 3)")
            for c in chain.ticket_comments()
        )
    finally:
        chain.site.close()


def test_without_escalation_contacts_breaches_are_still_noted(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    text = site_config(
        unique_site(),
        f"  tickets:\n    - webhook: {{url: '{http_server.url}/t'}}",
        extra="contacts: {escalation: []}",
    )
    site = Site(tmp_path, text, clock=Clock(MONDAY_0930_IST), rules=P1_NOW)
    try:
        site.smtp_refused()
        site.advance(hours=5)
        site.tick()
        assert [e for e in site.events() if e in ("breach", "escalated")] == ["breach", "breach"]
        # no escalation went out; the one comment is the P1 reminder (remind_every 30m)
        assert [(r.action, r.payload["text"][:10]) for r in site.store.outbox()] == [
            ("open", ""),
            ("comment", "Reminder 1"),
        ]
    finally:
        site.close()


def test_watcher_test_integration_escalation_mails_every_contact(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    from watcher.cli.main import main

    config = tmp_path / "watcher.yml"
    config.write_text(f"site: acme\nlisten: null\n{contacts(smtp_sink)}")
    assert main(["test-integration", "escalation", "-c", str(config)]) == 0
    (mail,) = smtp_sink.messages
    assert sorted(mail.rcpt_tos) == ["cto@acme.example", "spm@acme.example", "vp@acme.example"]
    assert mail.subject.startswith("[TEST]")
