"""Alert quality end to end: dependencies, site-wide outages, flapping, maintenance
windows and reminders, through the real engine, store and outbox, with real HTTP
targets and tickets and pages mailed to a real SMTP sink, counted as they arrive."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.servers.httpd import HTTPTestServer
from tests.servers.mail import SmtpSink
from tests.servers.prometheus import promtool_check_metrics
from tests.support.helpers import config_from
from tests.support.rig import Rig
from watcher.config.models import ConfigError
from watcher.web.metrics import Metrics

HELPDESK = "support@helpdesk.example"
HOTLINE = "emergency@support.example"


def header(sink: SmtpSink, extra: str = "") -> str:
    extra = textwrap.indent(textwrap.dedent(extra).strip(), "    ").lstrip()
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
        return (
            len(self.tickets()),
            len(self.updates()),
            len(self.pages()),
            len(self.page_resolves()),
        )


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
    lines = [
        header(sink, extra),
        "    targets:",
        "      - name: router",
        f'        probes: [{{http: {{url: "{server.url_for("/router")}"}}}}]',
    ]
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

    http_server.set_default(
        status=503, body="no route to host"
    )  # the router and everything behind it
    rig.rounds(3)  # http-down holds for 2m: the third round opens
    smtp_sink.wait_for_messages(2)
    rig.rounds(5)  # and it stays that way
    incidents = by_target(rig)
    router = incidents.pop("router")
    assert (router.state, router.priority, router.ticketed, router.paged) == (
        "open",
        "P1",
        True,
        True,
    )
    assert len(incidents) == 30
    assert {
        (i.state, i.suppressed, i.linked_to, i.link, i.ticketed, i.paged)
        for i in incidents.values()
    } == {("open", "parent", router.id, "parent", False, False)}
    assert mail.counts() == (1, 0, 1, 0)
    metrics = Metrics()
    metrics.watch_state(rig.engine.incident_counts, rig.store.outbox_counts, rig.engine.held_counts)
    text = metrics.exposition().decode()
    assert 'watcher_incidents_held{reason="parent"} 30.0' in text
    assert 'watcher_incidents_held{reason="maintenance"} 0.0' in text
    assert 'watcher_incidents_open{priority="P1"} 31.0' in text
    ok, output = promtool_check_metrics(text)
    assert ok, output
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


def one_service(
    sink: SmtpSink,
    server: HTTPTestServer,
    extra: str = "",
    target_extra: str = "",
    rules: str = "[default]",
) -> str:
    return (
        header(sink, extra)
        + f"""
    rules: {rules}
    targets:
      - name: shop
        {target_extra}
        probes: [{{http: {{url: "{server.url_for("/health")}"}}}}]
    """
    )


def flip(server: HTTPTestServer, failing: bool) -> None:
    server.set_response(
        "/health", status=503 if failing else 200, body="overloaded" if failing else "OK"
    )


def test_a_service_up_and_down_every_round_for_20_rounds_is_one_ticket_marked_flapping_once(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(
        one_service(smtp_sink, http_server, rules="[default, site.yml]"),
        extra={"site.yml": FIRE_AT_ONCE},
    )
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
    rig = rig_factory(
        one_service(
            smtp_sink, http_server, "defaults: {resolve_after: 1}", rules="[default, site.yml]"
        ),
        extra={"site.yml": FIRE_AT_ONCE},
    )
    for n in range(20):
        flip(http_server, failing=n % 2 == 0)
        rig.round()
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping) == ("open", True)
    actions = [r.action for r in rig.outbox()]
    # rounds 1-5 before it could tell (5 changes in 10 results): open, resolve, reopen,
    # resolve, reopen; then one flapping comment and nothing for the next 14 rounds
    assert actions == [
        "open",
        "page",
        "resolve",
        "page_resolve",
        "reopen",
        "page",
        "resolve",
        "page_resolve",
        "reopen",
        "page",
        "comment",
    ]
    assert len(Mailbox(smtp_sink).tickets()) == 1


def test_flapping_can_be_turned_off(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(
        one_service(
            smtp_sink, http_server, "flapping: {enabled: false}", rules="[default, site.yml]"
        ),
        extra={"site.yml": FIRE_AT_ONCE},
    )
    for n in range(12):
        flip(http_server, failing=n % 2 == 0)
        rig.round()
    flip(http_server, failing=False)
    rig.rounds(2)
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping) == ("resolved", False)
    assert [r.action for r in rig.outbox()] == ["open", "page", "resolve", "page_resolve"]


def test_a_target_can_have_flap_detection_of_its_own(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    # the site's detection is off; this one target's is on, with a shorter window
    rig = rig_factory(
        one_service(
            smtp_sink,
            http_server,
            "flapping: {enabled: false}\ndefaults: {resolve_after: 1}",
            target_extra="flapping: {window: 4, high: 60, low: 30}",
            rules="[default, site.yml]",
        ),
        extra={"site.yml": FIRE_AT_ONCE},
    )
    for n in range(10):
        flip(http_server, failing=n % 2 == 0)
        rig.round()
    [incident] = rig.incidents()
    assert (incident.state, incident.flapping) == ("open", True)
    assert rig.engine.held_counts()["flapping"] == 1
    # 3 changes in the last 4 results: flapping from the 4th round, so only the first
    # churn of open, resolve, reopen reached the helpdesk
    assert [r.action for r in rig.outbox()] == [
        "open",
        "page",
        "resolve",
        "page_resolve",
        "reopen",
        "page",
        "comment",
    ]


def test_a_target_s_flapping_settings_are_checked_like_the_site_s(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from(
            tmp_path,
            """
            site: acme
            targets:
              - name: shop
                flapping: {high: 20, low: 40}
                probes: [{tcp: {port: 1}}]
            """,
        )
    assert "watcher.yml:4:" in str(caught.value) and "low (40) must be below high (20)" in str(
        caught.value
    )


# ------------------------------------------------------------------ maintenance windows

# The rig's clock starts on Monday 2026-11-23 at 09:30 IST and moves a minute a round.
WINDOW_0932_0942 = """
maintenance:
  - {name: shop-upgrade, targets: [shop], start: "2026-11-23 09:32", end: "2026-11-23 09:42", reason: new release}
"""


def ist(rig: Rig) -> str:
    return rig.clock().astimezone(rig.config.calendar.tz).strftime("%H:%M")


def run_until(rig: Rig, hhmm: str, **kw: object) -> None:
    """Rounds until the round at ``hhmm`` IST (today) is done."""
    tz = rig.config.calendar.tz
    today = rig.clock().astimezone(tz).date()
    end = datetime.combine(today, datetime.strptime(hhmm, "%H:%M").time(), tz)
    while rig.clock() <= end:
        rig.round(**kw)


def test_a_failure_through_a_maintenance_window_is_ticketed_once_at_its_end(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(one_service(smtp_sink, http_server, WINDOW_0932_0942))
    mail = Mailbox(smtp_sink)
    run_until(rig, "09:31")
    flip(http_server, failing=True)
    run_until(rig, "09:41")
    [incident] = rig.incidents()
    assert (incident.state, incident.suppressed, incident.ticketed, incident.paged) == (
        "open",
        "maintenance",
        False,
        False,
    )
    assert incident.suppressed_why == "maintenance 'shop-upgrade' until 2026-11-23 09:42 IST"
    assert mail.counts() == (0, 0, 0, 0) and rig.outbox() == []
    rig.round()  # 09:42: the window is over and the site still fails
    smtp_sink.wait_for_messages(2)
    run_until(rig, "09:55")
    assert mail.counts() == (1, 0, 1, 0)
    [incident] = rig.incidents()
    assert (
        incident.suppressed is None
        and incident.notified_at.astimezone(rig.config.calendar.tz).strftime("%H:%M") == "09:42"
    )
    # the SLA runs from when the helpdesk was told: respond by 11:42 IST
    assert incident.response_due.astimezone(rig.config.calendar.tz).strftime("%H:%M") == "11:42"
    [ticket] = [m for m in smtp_sink.messages if HELPDESK in m.rcpt_tos]
    assert "notifications held back: maintenance 'shop-upgrade'" in ticket.body
    assert "Respond by:    2026-11-23 11:42 IST" in ticket.body


@pytest.mark.parametrize("recovered_at", ["09:36", "09:42"])
def test_a_failure_that_recovers_before_the_window_ends_sends_nothing(
    recovered_at: str, http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(one_service(smtp_sink, http_server, WINDOW_0932_0942))
    run_until(rig, "09:31")
    flip(http_server, failing=True)
    before = (datetime.strptime(recovered_at, "%H:%M") - timedelta(minutes=1)).strftime("%H:%M")
    run_until(rig, before)
    assert rig.incidents()[0].state == "open"
    flip(http_server, failing=False)  # at 09:42 the ok result comes in the round the window ends
    run_until(rig, "09:59")
    [incident] = rig.incidents()
    assert incident.state == "resolved"
    assert rig.outbox() == [] and smtp_sink.messages == []


def test_an_incident_ticketed_before_a_window_is_still_resolved_during_it_and_never_repaged(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    window = """
    maintenance:
      - {name: night-work, targets: ["sh*"], start: "2026-11-23 09:40", duration: 2h}
    """
    rig = rig_factory(one_service(smtp_sink, http_server, window))
    flip(http_server, failing=True)
    run_until(rig, "09:39")
    assert [r.action for r in rig.outbox()] == ["open", "page"]
    run_until(
        rig, "11:20", minutes=10
    )  # P1 would be repaged every 30m and reminded; not in the window
    [incident] = rig.incidents()
    assert (
        incident.suppressed == "maintenance"
        and incident.page_count == 1
        and incident.reminders == 0
    )
    assert incident.breaches == []  # its deadlines stand still while the window lasts
    flip(http_server, failing=False)
    rig.rounds(2)
    assert [r.action for r in rig.outbox()] == ["open", "page", "resolve", "page_resolve"]
    assert Mailbox(smtp_sink).counts() == (1, 1, 1, 1)


def test_a_restart_in_the_middle_of_a_window_sends_the_held_ticket_once_at_its_end(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    text = one_service(smtp_sink, http_server, WINDOW_0932_0942)
    rig = Rig(tmp_path, text)
    try:
        run_until(rig, "09:31")
        flip(http_server, failing=True)
        run_until(rig, "09:37")
        assert rig.incidents()[0].suppressed == "maintenance"
    finally:
        rig.close()
    rig = Rig(tmp_path, text, clock=rig.clock)  # a new process on the same state file
    try:
        run_until(rig, "09:41")
        assert rig.outbox() == []
        rig.round()
        smtp_sink.wait_for_messages(2)
        rig.close()
        rig = Rig(tmp_path, text, clock=rig.clock)  # and once more after the release
        run_until(rig, "09:50")
        assert Mailbox(smtp_sink).counts() == (1, 0, 1, 0)
        assert [r.action for r in rig.outbox()] == ["open", "page"]
    finally:
        rig.close()


@pytest.mark.parametrize(
    "window",
    [
        # every day from 09:32 to 09:42 IST, by label
        '{name: daily, labels: {tier: web}, from: "09:32", to: "09:42"}',
        # the same by cron, in UTC
        '{name: cron, targets: [shop], cron: "2 4 * * *", duration: 10m, timezone: UTC}',
        # Mondays, crossing into the window from the day before is not needed here
        '{name: monday, targets: ["*"], days: [mon], from: "09:32", to: "09:42", timezone: Asia/Kolkata}',
    ],
)
def test_recurring_windows_hold_notifications_while_on(
    window: str, http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(
        one_service(smtp_sink, http_server, f"maintenance: [{window}]", "labels: {tier: web}")
    )
    run_until(rig, "09:31")
    flip(http_server, failing=True)
    run_until(rig, "09:41")
    assert rig.outbox() == []
    rig.round()
    assert [r.action for r in rig.outbox()] == ["open", "page"]


# ------------------------------------------------------------------ site-wide outages

OUTAGE = """
outages:
  - name: mail-cluster
    labels: {role: mail}
    min_failing: 5
    window: 5m
    wait: 1m
    update_every: 10m
    summary: "mail cluster degraded: {failing} of {total} targets failing"
"""


def mail_cluster(sink: SmtpSink, server: HTTPTestServer, extra: str = OUTAGE, size: int = 9) -> str:
    lines = [header(sink, extra), "    targets:"]
    for n in range(1, size + 1):
        lines += [
            f"      - name: mail{n}",
            "        labels: {role: mail}",
            f'        probes: [{{http: {{url: "{server.url_for(f"/mail{n}")}"}}}}]',
        ]
    lines += [
        "      - name: intranet",
        f'        probes: [{{http: {{url: "{server.url_for("/intranet")}"}}}}]',
    ]
    return "\n".join(lines) + "\n"


def fail(server: HTTPTestServer, *names: str, status: int = 503) -> None:
    for name in names:
        server.set_response(
            f"/{name}", status=status, body=f"{name} unreachable" if status >= 400 else "OK"
        )


def test_seven_of_nine_failing_together_is_one_outage_ticket_kept_up_to_date(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(mail_cluster(smtp_sink, http_server))
    mail = Mailbox(smtp_sink)
    run_until(rig, "09:30")
    fail(http_server, *[f"mail{n}" for n in range(1, 8)])
    run_until(rig, "09:33")  # http-down holds 2m: the seven open together at 09:33
    smtp_sink.wait_for_messages(2)
    incidents = by_target(rig)
    outage = incidents.pop("mail-cluster")
    assert (outage.state, outage.priority, outage.members, outage.total_members) == (
        "open",
        "P1",
        [f"mail{n}" for n in range(1, 8)],
        9,
    )
    assert {
        (i.suppressed, i.linked_to, i.link, i.ticketed, i.paged) for i in incidents.values()
    } == {("outage", outage.id, "outage", False, False)}
    assert len(incidents) == 7
    assert mail.tickets() == [
        "[P1][acme] mail-cluster: mail cluster degraded: 7 of 9 targets failing"
    ]
    assert mail.counts() == (1, 0, 1, 0)
    [ticket] = [m for m in smtp_sink.messages if HELPDESK in m.rcpt_tos]
    assert "7 of 9 targets failing: mail1, mail2, mail3, mail4, mail5, mail6, mail7" in ticket.body
    assert "mail4: failing since" in ticket.body and "mail4: web service down" in ticket.body

    fail(http_server, "mail8")  # a member joins (opens at 09:37) ...
    run_until(rig, "09:39")
    fail(http_server, "mail1", "mail2", status=200)  # ... two recover (at 09:40)
    run_until(rig, "09:42")
    assert mail.counts() == (1, 0, 1, 0)  # the ticket heard of it at most every 10 minutes
    run_until(rig, "09:43")
    smtp_sink.wait_for_messages(3)
    [(subject, body)] = mail.updates()
    assert body.startswith("Now 6 of 9 failing; joined: mail8; recovered: mail1, mail2.")
    outage = by_target(rig)["mail-cluster"]
    assert outage.summary == "mail cluster degraded: 6 of 9 targets failing"
    assert by_target(rig)["mail8"].linked_to == outage.id

    fail(http_server, *[f"mail{n}" for n in range(3, 9)], status=200)
    run_until(rig, "09:50")
    smtp_sink.wait_for_messages(5)
    assert all(i.state == "resolved" for i in rig.incidents())
    # one ticket, one page; one update comment, one resolve, one page resolved; no member ever told
    assert mail.counts() == (1, 2, 1, 1)
    assert mail.updates()[-1][1].startswith("Resolved: all 9 targets of mail-cluster are ok again")
    assert {r.incident_id for r in rig.outbox()} == {outage.id}


def test_fewer_failing_than_the_threshold_are_ticketed_each_after_the_wait(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(mail_cluster(smtp_sink, http_server))
    run_until(rig, "09:30")
    fail(http_server, "mail2", "mail5", "mail9")
    run_until(rig, "09:33")
    assert rig.outbox() == []  # opened, waiting up to 1m to see whether more follow
    assert {i.suppressed for i in rig.incidents()} == {"grouping"}
    run_until(rig, "09:34")
    assert sorted((r.action, r.incident_id) for r in rig.outbox()) == sorted(
        [("open", i.id) for i in rig.incidents()] + [("page", i.id) for i in rig.incidents()]
    )
    assert len(Mailbox(smtp_sink).tickets()) == 3
    assert "mail-cluster" not in by_target(rig)


def test_half_of_a_group_failing_opens_the_outage_by_percent(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    outage = """
    outages:
      - {name: mail-cluster, labels: {role: mail}, min_percent: 50, wait: 0s}
    """
    rig = rig_factory(mail_cluster(smtp_sink, http_server, outage, size=4))
    fail(http_server, "mail1", "mail3")
    run_until(rig, "09:35")
    assert Mailbox(smtp_sink).tickets() == ["[P1][acme] mail-cluster: 2 of 4 targets failing"]
    assert [(i.target, i.suppressed) for i in rig.incidents() if i.target != "mail-cluster"] == [
        ("mail1", "outage"),
        ("mail3", "outage"),
    ]


def test_an_outage_resolved_by_hand_hands_its_still_failing_members_their_own_tickets(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(mail_cluster(smtp_sink, http_server))
    fail(http_server, *[f"mail{n}" for n in range(1, 6)])
    run_until(rig, "09:33")
    outage = by_target(rig)["mail-cluster"]
    rig.engine.resolve(outage.id, by="ops")
    rig.round()
    assert len(Mailbox(smtp_sink).tickets()) == 1 + 5
    # the resolved outage stays resolved: these failures began long before the window
    run_until(rig, "09:45")
    assert by_target(rig)["mail-cluster"].state == "resolved"
    assert len(Mailbox(smtp_sink).tickets()) == 6


# ------------------------------------------------------------------ reminders


def reminders(mail: Mailbox) -> list[str]:
    return [body.split(":")[0] for _, body in mail.updates() if body.startswith("Reminder")]


def test_an_unacknowledged_p1_is_reminded_on_its_ticket_every_30m_three_times_at_most(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(one_service(smtp_sink, http_server))
    mail = Mailbox(smtp_sink)
    flip(http_server, failing=True)
    run_until(rig, "09:32")  # opened at 09:32
    run_until(rig, "13:00", minutes=5)
    smtp_sink.wait_for_messages(1 + 3 + 7)
    assert reminders(mail) == ["Reminder 1 of 3", "Reminder 2 of 3", "Reminder 3 of 3"]
    times = [
        e.at.astimezone(rig.config.calendar.tz).strftime("%H:%M")
        for e in rig.store.events(rig.incidents()[0].id)
        if e.kind == "reminded"
    ]
    assert times == ["10:03", "10:33", "11:03"]  # rounds every 5 minutes from 09:33
    # the hotline hears on its own schedule: a page, then a repage every 30m until someone acknowledges
    assert len(mail.pages()) == 1 + 6 and mail.counts()[0] == 1


def test_acknowledging_stops_the_reminders(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(one_service(smtp_sink, http_server))
    flip(http_server, failing=True)
    run_until(rig, "10:05", minutes=5)
    [incident] = rig.incidents()
    assert incident.reminders == 1
    rig.engine.acknowledge(incident.id, by="asha", source="cli")
    run_until(rig, "13:00", minutes=5)
    [incident] = rig.incidents()
    assert (incident.state, incident.reminders) == ("acknowledged", 1)
    assert [body.split(":")[0].strip() for _, body in Mailbox(smtp_sink).updates()] == [
        "Reminder 1 of 3",
        "Acknowledged by asha via cli.",
    ]


def test_a_p2_is_reminded_every_4_business_hours(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    p2 = """
    rules:
      - {name: http-down, probe: http, when: failed, priority: P2, summary: "{target}: web service down"}
    """
    rig = rig_factory(
        one_service(smtp_sink, http_server, rules="[default, site.yml]"), extra={"site.yml": p2}
    )
    flip(http_server, failing=True)
    rig.round()  # Monday 09:30 IST: opened
    run_until(rig, "23:59", minutes=30)  # business hours end at 18:00
    [incident] = rig.incidents()
    times = [
        e.at.astimezone(rig.config.calendar.tz).strftime("%a %H:%M")
        for e in rig.store.events(incident.id)
        if e.kind == "reminded"
    ]
    assert times == ["Mon 13:31", "Mon 17:31"]  # rounds every 30 minutes from 09:31
    rig.advance(hours=8)  # Tuesday 08:00 and on
    run_until(rig, "12:00", minutes=30)
    times = [
        e.at.astimezone(rig.config.calendar.tz).strftime("%a %H:%M")
        for e in rig.store.events(incident.id)
        if e.kind == "reminded"
    ]
    assert times == [
        "Mon 13:31",
        "Mon 17:31",
        "Tue 11:31",
    ]  # 29 minutes on Monday, 3h31m on Tuesday


def test_a_restart_while_children_are_suppressed_sends_nothing_twice(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    text = router_site(smtp_sink, http_server, children=3)
    mail = Mailbox(smtp_sink)
    rig = Rig(tmp_path, text)
    try:
        http_server.set_default(status=503)
        rig.rounds(4)
        smtp_sink.wait_for_messages(2)
        assert {i.suppressed for i in rig.incidents() if i.target != "router"} == {"parent"}
    finally:
        rig.close()
    rig = Rig(tmp_path, text, clock=rig.clock)  # restarted while the router is down
    try:
        rig.rounds(3)
        assert mail.counts() == (1, 0, 1, 0)
        children = [i for i in rig.incidents() if i.target != "router"]
        assert {(i.suppressed, i.linked_to) for i in children} == {
            ("parent", rig.incidents()[0].id)
        }
        http_server.set_default(status=200)
        http_server.set_response("/svc01", status=500)
        rig.round()
        smtp_sink.wait_for_messages(4)
    finally:
        rig.close()
    rig = Rig(tmp_path, text, clock=rig.clock)  # and again after the release
    try:
        rig.rounds(3)
        smtp_sink.wait_for_messages(6)
        # the router: ticket, page, resolve, page resolved; svc01: its own ticket and page, once
        assert mail.counts() == (2, 1, 2, 1)
        assert [i.target for i in rig.incidents() if i.state == "open"] == ["svc01"]
        assert len([r for r in rig.outbox() if r.action == "open"]) == 2
    finally:
        rig.close()


def test_a_child_checked_before_its_router_waits_for_the_router_s_next_check(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    children = ["svc00", "svc01", "svc02"]
    rig = rig_factory(
        router_site(smtp_sink, http_server, children=3, extra="rules: [default, site.yml]"),
        extra={"site.yml": FIRE_AT_ONCE},
    )
    rig.round()
    http_server.set_default(status=503)
    rig.round(targets=children)  # the children's checks come first this time
    assert {i.suppressed_why for i in rig.incidents()} == {"waiting for router's next check"}
    assert rig.outbox() == []
    rig.round(targets=["router"])  # 1 minute later, within the router's interval plus timeout
    router = by_target(rig)["router"]
    assert {(i.suppressed, i.linked_to) for i in rig.incidents() if i.target != "router"} == {
        ("parent", router.id)
    }
    assert [(r.incident_id, r.action) for r in rig.outbox()] == [
        (router.id, "open"),
        (router.id, "page"),
    ]


def test_a_child_whose_router_answers_is_ticketed_after_the_router_s_check(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    rig = rig_factory(
        router_site(smtp_sink, http_server, children=1, extra="rules: [default, site.yml]"),
        extra={"site.yml": FIRE_AT_ONCE},
    )
    http_server.set_response("/svc00", status=500)
    rig.round(targets=["svc00"])
    assert rig.outbox() == []
    rig.round(targets=["router"])  # the router answers: the child's problem is its own
    assert [r.action for r in rig.outbox()] == ["open", "page"]


def test_watcher_incidents_shows_what_is_held_back_and_why(
    tmp_path: Path,
    http_server: HTTPTestServer,
    smtp_sink: SmtpSink,
    rig_factory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from watcher.cli.main import main

    rig = rig_factory(router_site(smtp_sink, http_server, children=2))
    http_server.set_default(status=503)
    rig.rounds(3)
    router = by_target(rig)["router"]
    assert main(["incidents", "-c", str(tmp_path / "watcher.yml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "NOTE"
    assert sum(line.rstrip().endswith(f"child of #{router.id}") for line in lines) == 2
    assert main(["incidents", "--json", "-c", str(tmp_path / "watcher.yml")]) == 0
    views = {v["target"]: v for v in json.loads(capsys.readouterr().out)}
    assert views["svc01"]["suppressed"] == "parent" and views["svc01"]["linked_to"] == router.id
    assert views["svc01"]["suppressed_why"] == f"router is down (incident {router.id})"
    assert views["router"]["suppressed"] is None and views["router"]["ticketed"] is True


def test_the_audit_judges_the_sla_of_what_people_were_told_only(
    http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:
    from watcher.audit.build import build_audit

    rig = rig_factory(router_site(smtp_sink, http_server, children=4))
    http_server.set_default(status=503)
    rig.rounds(3)
    rig.advance(hours=5)  # past the P1 response (2h) and resolution (4h) deadlines
    rig.round()
    audit = build_audit(rig.store, rig.config, since=timedelta(days=1), now=rig.clock())
    [p1] = [p for p in audit.incidents.by_priority if p.priority == "P1"]
    assert p1.opened == 5  # the router and its four children
    assert (p1.response.missed, p1.resolution.missed) == (1, 1)  # the router only
    assert [m["target"] for m in audit.incidents.missed] == ["router"]


def test_an_outage_whose_group_leaves_the_config_resolves_and_hands_back_its_members(
    tmp_path: Path, http_server: HTTPTestServer, smtp_sink: SmtpSink, rig_factory
) -> None:

    rig = rig_factory(mail_cluster(smtp_sink, http_server))
    fail(http_server, *[f"mail{n}" for n in range(1, 6)])
    run_until(rig, "09:33")
    assert Mailbox(smtp_sink).counts() == (1, 0, 1, 0)
    rig.engine.configure(
        config_from(tmp_path, mail_cluster(smtp_sink, http_server, extra=""))
    )  # a reload
    rig.round()
    smtp_sink.wait_for_messages(2 + 2 + 10)
    assert by_target(rig)["mail-cluster"].state == "resolved"
    assert Mailbox(smtp_sink).counts() == (6, 1, 6, 1)
