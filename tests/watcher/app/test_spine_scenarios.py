"""The spine end to end on real servers: a failing web server becomes one incident, one
ticket mailed to the helpdesk and one emergency page; recovery resolves; a refire reopens."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.disk import SmallFs
from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink
from tests.support.rig import Rig


def _mail_config(sink: SmtpSink, url: str, extra: str = "") -> str:
    return f"""
    site: acme
    state: state.db
    listen: null
    smtp: {{host: 127.0.0.1, port: {sink.port}, from: watcher@acme.example}}
    contacts:
      hotline: [{{name: L2 on call, email: emergency@support.example}}]
    integrations:
      tickets: [{{email: {{to: [support@helpdesk.example]}}}}]
      paging: [{{email: {{to: hotline}}}}]
    targets:
      - name: shop
        host: 127.0.0.1
        labels: {{role: web}}
        probes:
          - http: {{url: "{url}"}}
    {extra}
    """


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator:
    rigs: list[Rig] = []

    def make(text: str, **kw: object) -> Rig:
        rig = Rig(tmp_path, text, **kw)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


def test_a_failing_site_opens_one_incident_one_ticket_and_one_page(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(_mail_config(smtp_sink, http_server.url_for("/health")))
    rig.round()
    assert rig.incidents() == [] and smtp_sink.messages == []

    http_server.set_response("/health", status=503, body="maintenance gone wrong")
    rig.rounds(2)  # the shipped http-down rule holds for 2m: still pending
    assert [i.state for i in rig.incidents()] == ["pending"]
    assert smtp_sink.messages == []
    rig.round()
    incidents = rig.incidents()
    assert [(i.state, i.priority) for i in incidents] == [("open", "P1")]
    mails = smtp_sink.wait_for_messages(2)
    ticket = next(m for m in mails if "support@helpdesk.example" in m.rcpt_tos)
    page = next(m for m in mails if "emergency@support.example" in m.rcpt_tos)
    assert ticket.subject.startswith("[P1][acme] shop: web service down")
    assert (
        "HTTP 503" in ticket.body and "Respond by:" in ticket.body and "Fingerprint:" in ticket.body
    )
    assert "maintenance gone wrong" in ticket.body  # the evidence
    assert page.subject.startswith("[Emergency] [P1][acme] shop")

    rig.rounds(5)  # still failing: nothing new goes out
    assert len(smtp_sink.messages) == 2
    assert len(rig.incidents()) == 1

    http_server.set_response("/health", status=200, body="OK")
    rig.rounds(2)
    assert rig.incidents()[0].state == "resolved"
    assert len(smtp_sink.messages) == 4
    resolved = smtp_sink.messages[2:]
    assert {m.subject.split(" ", 1)[0] for m in resolved} == {"Re:", "[Resolved]"}
    assert any(m.headers.get("In-Reply-To") == ticket.headers["Message-ID"] for m in resolved)

    http_server.set_response("/health", status=500)
    rig.rounds(3)
    incidents = rig.incidents()
    assert len(incidents) == 1 and incidents[0].state == "open" and incidents[0].reopen_count == 1
    mails = smtp_sink.wait_for_messages(6)
    reopened = [m for m in mails[4:] if "support@helpdesk.example" in m.rcpt_tos]
    assert (
        len(reopened) == 1
        and reopened[0].headers.get("In-Reply-To") == ticket.headers["Message-ID"]
    )
    assert any(m.subject.startswith("[Emergency]") for m in mails[4:])
    assert all(r.state == "done" for r in rig.outbox())


def test_a_filling_disk_is_one_incident_raised_from_p3_to_p2(
    small_fs: SmallFs, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(
        f"""
        site: acme
        state: state.db
        listen: null
        smtp: {{host: 127.0.0.1, port: {smtp_sink.port}}}
        integrations:
          tickets: [{{email: {{to: [support@helpdesk.example]}}}}]
        targets:
          - name: files1
            probes: [{{disk: {{paths: ["{small_fs.path}"]}}}}]
        """
    )
    small_fs.fill_to(50)
    rig.round()
    assert rig.incidents() == []
    small_fs.fill_to(88)
    rig.round()
    [incident] = rig.incidents()
    assert (incident.state, incident.priority, incident.item) == ("open", "P3", str(small_fs.path))
    assert smtp_sink.messages == []  # P3: no ticket by itself
    small_fs.fill_to(97)
    rig.round()
    [incident] = rig.incidents()
    assert incident.priority == "P2"
    [mail] = smtp_sink.wait_for_messages(1)
    assert mail.subject.startswith(f"[P2][acme] files1: {small_fs.path} is 9")
    events = [e.kind for e in rig.store.events(incident.id)]
    assert events == ["opened", "raised"]
    small_fs.fill_to(10)
    rig.rounds(2)
    assert rig.incidents()[0].state == "resolved"


def test_the_webhook_posts_signed_json_that_a_real_server_verifies(
    http_server: HTTPTestServer, http_server_factory, rig_factory
) -> None:
    receiver = http_server_factory()
    receiver.set_response(
        "/hooks/watcher",
        status=200,
        body='{"id": "T-1"}',
        headers={"Content-Type": "application/json"},
    )
    secret = "whsec-9f8e7d6c5b4a"
    rig = rig_factory(
        f"""
        site: acme
        state: state.db
        listen: null
        integrations:
          tickets: [{{webhook: {{url: "{receiver.url_for("/hooks/watcher")}", secret: "${{HOOK_SECRET}}"}}}}]
        targets:
          - name: shop
            probes: [{{http: {{url: "{http_server.url_for("/")}"}}}}]
        """,
        environ={"HOOK_SECRET": secret},
    )
    http_server.set_default(status=500)
    rig.rounds(3)
    [request] = receiver.requests_for("/hooks/watcher")
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Watcher-Signature"], expected)
    payload = json.loads(request.body)
    assert payload["event"] == "ticket.open" and payload["incident"]["priority"] == "P1"
    assert payload["incident"]["subject"].startswith("[P1][acme] shop")
    assert rig.store.tickets(rig.incidents()[0].id)[0]["external_id"] == "T-1"
    assert secret not in request.body.decode()


def test_an_smtp_outage_queues_the_ticket_and_delivers_it_once_when_back(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(_mail_config(smtp_sink, http_server.url_for("/")))
    smtp_sink.stop()
    http_server.set_default(status=502)
    rig.rounds(3)
    [incident] = rig.incidents()
    assert incident.state == "open"
    pending = rig.outbox(states=["pending"])
    assert {r.action for r in pending} == {"open", "page"}
    assert all(r.attempts >= 1 and "unreachable" in (r.last_error or "") for r in pending)
    rig.rounds(3, deliver=True)  # still down: retried with backoff, nothing lost
    assert len(rig.outbox(states=["pending"])) == 2
    smtp_sink.start()
    rig.advance(minutes=15)
    rig.round()
    assert [r.state for r in rig.outbox()] == ["done", "done"]
    mails = smtp_sink.wait_for_messages(2)
    rig.rounds(3)
    assert len(smtp_sink.messages) == len(mails) == 2
