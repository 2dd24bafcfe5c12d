"""Alert quality end to end: dependencies, site-wide outages, flapping, maintenance
windows and reminders, through the real engine, store and outbox, with real HTTP
targets and tickets and pages mailed to a real SMTP sink, counted as they arrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig import Rig
from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink

HELPDESK = "support@helpdesk.example"
HOTLINE = "emergency@support.example"


def header(sink: SmtpSink, extra: str = "") -> str:
    return f"""
    site: acme
    state: state.db
    listen: null
    smtp: {{host: 127.0.0.1, port: {sink.port}, from: watcher@acme.example}}
    contacts:
      hotline: [{{name: L2 on call, email: {HOTLINE}}}]
      escalation: []
    integrations:
      tickets: [{{email: {{to: [{HELPDESK}]}}}}]
      paging: [{{email: {{to: hotline}}}}]
    {extra}
    """


class Mailbox:
    """What reached the SMTP sink, sorted the way a helpdesk and a hotline see it."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    def _of(self, rcpt: str) -> list:
        return [m for m in self.sink.messages if rcpt in m.rcpt_tos]

    def tickets(self) -> list[str]:
        """Subjects of tickets opened (a ticket by mail is a mail that is not a reply)."""
        return [m.subject for m in self._of(HELPDESK) if not m.subject.startswith("Re:")]

    def updates(self) -> list[tuple[str, str]]:
        return [(m.subject, m.body) for m in self._of(HELPDESK) if m.subject.startswith("Re:")]

    def pages(self) -> list[str]:
        return [m.subject for m in self._of(HOTLINE) if m.subject.startswith("[Emergency]")]

    def page_resolves(self) -> list[str]:
        return [m.subject for m in self._of(HOTLINE) if m.subject.startswith("[Resolved]")]

    def counts(self) -> tuple[int, int, int, int]:
        return len(self.tickets()), len(self.updates()), len(self.pages()), len(self.page_resolves())


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


def by_target(rig: Rig) -> dict[str, object]:
    """The newest incident of each target."""
    out = {}
    for incident in rig.incidents():
        out[incident.target] = incident
    return out


# ------------------------------------------------------------------ dependencies


def router_site(sink: SmtpSink, server: HTTPTestServer, children: int = 30, extra: str = "") -> str:
    lines = [header(sink, extra), "    targets:", "      - name: router", f'        probes: [{{http: {{url: "{server.url_for("/router")}"}}}}]']
    for n in range(children):
        lines += [
            f"      - name: svc{n:02d}",
            "        depends_on: [router]",
            f'        probes: [{{http: {{url: "{server.url_for(f"/svc{n:02d}")}"}}}}]',
        ]
    return "\n".join(lines) + "\n"


def test_a_router_down_is_one_ticket_and_one_page_and_its_children_are_linked_not_ticketed(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(router_site(smtp_sink, http_server))
    mail = Mailbox(smtp_sink)
    rig.round()
    assert rig.incidents() == []

    http_server.set_default(status=503, body="no route to host")  # the router and everything behind it
    rig.rounds(3)  # http-down holds for 2m: the third round opens
    smtp_sink.wait_for_messages(2)
    rig.rounds(5)  # and it stays that way
    incidents = by_target(rig)
    router = incidents.pop("router")
    assert (router.state, router.priority, router.ticketed, router.paged) == ("open", "P1", True, True)
    assert len(incidents) == 30
    assert {(i.state, i.suppressed, i.linked_to, i.link, i.ticketed, i.paged) for i in incidents.values()} == {
        ("open", "parent", router.id, "parent", False, False)
    }
    assert mail.counts() == (1, 0, 1, 0)
    assert mail.tickets()[0].startswith("[P1][acme] router: web service down")
    assert {r.incident_id for r in rig.outbox()} == {router.id}
    kinds = [e.kind for e in rig.store.events(incidents["svc07"].id)]
    assert kinds == ["suppressed", "opened"]

    # the router comes back; two services behind it are still broken
    http_server.set_default(status=200, body="OK")
    http_server.set_response("/svc03", status=500, body="db pool exhausted")
    http_server.set_response("/svc17", status=500, body="disk full")
    rig.round()
    smtp_sink.wait_for_messages(6)
    rig.rounds(3)
    incidents = by_target(rig)
    router = incidents.pop("router")
    assert router.state == "resolved"
    still = {name for name, i in incidents.items() if i.state == "open"}
    assert still == {"svc03", "svc17"}
    assert all(i.state == "resolved" for name, i in incidents.items() if name not in still)
    assert sorted(s.split(" (")[0] for s in mail.tickets()[1:]) == [
        "[P1][acme] svc03: web service down",
        "[P1][acme] svc17: web service down",
    ]
    # 3 tickets, 3 pages in all; the router's ticket and page resolved; no other update
    assert mail.counts() == (3, 1, 3, 1)
    assert all(i.suppressed is None for i in incidents.values())
    released = [e.kind for e in rig.store.events(incidents["svc03"].id)]
    assert released == ["suppressed", "opened", "released", "paged"]
    assert all(r.state == "done" for r in rig.outbox())


# ------------------------------------------------------------------ flapping

# A site rule that fires at the first failure: the kind of check that flaps into tickets.
FIRE_AT_ONCE = """
rules:
  - {name: http-down, probe: http, when: failed, priority: P1, summary: "{target}: web service down"}
"""


def one_service(sink: SmtpSink, server: HTTPTestServer, extra: str = "", target_extra: str = "") -> str:
    return header(sink, extra) + f"""
    rules: [default, site.yml]
    targets:
      - name: shop
        {target_extra}
        probes: [{{http: {{url: "{server.url_for('/health')}"}}}}]
    """


def flip(server: HTTPTestServer, failing: bool) -> None:
    server.set_response("/health", status=503 if failing else 200, body="overloaded" if failing else "OK")


def test_a_service_up_and_down_every_round_for_20_rounds_is_one_ticket_marked_flapping_once(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(one_service(smtp_sink, http_server), extra={"site.yml": FIRE_AT_ONCE})
    mail = Mailbox(smtp_sink)
    for n in range(20):
        flip(http_server, failing=n % 2 == 0)
        rig.round()
    smtp_sink.wait_for_messages(3)
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping, incident.reopen_count) == ("open", True, 0)
    # one ticket, one page, one comment saying it flaps; no resolve, no reopen
    assert mail.counts() == (1, 1, 1, 0)
    [(subject, body)] = mail.updates()
    assert body.startswith("Flapping: shop changed state 5 times in its last 6 results")
    # stable and ok again: without flapping it would resolve after 2 ok results; it
    # resolves once fewer than 25% of the last 10 results changed state: the 7th
    flip(http_server, failing=False)
    rig.rounds(6)
    assert rig.incidents()[0].state == "open"
    rig.round()
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping) == ("resolved", False)
    smtp_sink.wait_for_messages(5)
    assert mail.counts() == (1, 2, 1, 1)
    assert mail.updates()[-1][1].startswith("Resolved: stable again and ok")
    kinds = [e.kind for e in rig.store.events(incident.id)]
    assert kinds == ["opened", "paged", "flapping", "stable", "resolved"]


def test_flapping_stops_the_resolve_reopen_churn_once_detected(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    # resolve_after: 1 resolves at the first ok result: the churn flapping detection ends
    rig = rig_factory(one_service(smtp_sink, http_server, "defaults: {resolve_after: 1}"), extra={"site.yml": FIRE_AT_ONCE})
    for n in range(20):
        flip(http_server, failing=n % 2 == 0)
        rig.round()
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping) == ("open", True)
    actions = [r.action for r in rig.outbox()]
    # rounds 1-5 before it could tell (5 changes in 10 results): open, resolve, reopen,
    # resolve, reopen; then one flapping comment and nothing for the next 14 rounds
    assert actions == [
        "open", "page",
        "resolve", "page_resolve", "reopen", "page",
        "resolve", "page_resolve", "reopen", "page",
        "comment",
    ]
    assert len(Mailbox(smtp_sink).tickets()) == 1


def test_flapping_can_be_turned_off(http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory) -> None:
    rig = rig_factory(one_service(smtp_sink, http_server, "flapping: {enabled: false}"), extra={"site.yml": FIRE_AT_ONCE})
    for n in range(12):
        flip(http_server, failing=n % 2 == 0)
        rig.round()
    flip(http_server, failing=False)
    rig.rounds(2)
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping) == ("resolved", False)
    assert [r.action for r in rig.outbox()] == ["open", "page", "resolve", "page_resolve"]
