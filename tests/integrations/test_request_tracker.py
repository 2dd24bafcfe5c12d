"""request_tracker against a real Request Tracker 5 (Debian packages, SQLite, REST 2).

The RT instance is shared by the session; every test uses its own site name, so its
fingerprints (and so its tickets) are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integrations.base import PermanentError, TicketRef, TransientError
from integrations.request_tracker import RequestTrackerIntegration
from tests.integrations.site import (
    SITE_RULES,
    Site,
    killed_after_open,
    site_config,
    unique_site,
)
from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.servers.rt import RequestTracker
from tests.support.daemon import Daemon
from watcher.store import Store

pytestmark = pytest.mark.slow


def rt_integration(rt: RequestTracker, **extra: Any) -> str:
    options = {
        "url": rt.url,
        "user": rt.user,
        "password": "${RT_PASSWORD}",
        "queue": rt.queue,
        "poll_every": "1m",
    }
    options.update(extra)
    return "  tickets:\n    - request_tracker: " + json.dumps(options)


def make_site(tmp_path: Path, rt: RequestTracker, *, paging: str = "", **extra: Any) -> Site:
    integrations = rt_integration(rt, **extra) + ("\n  paging:\n" + paging if paging else "")
    return Site(
        tmp_path, site_config(unique_site(), integrations), environ={"RT_PASSWORD": rt.password}
    )


def tickets_for(rt: RequestTracker, fingerprint: str) -> list[dict[str, Any]]:
    return rt.tickets(
        f"CF.{{{rt.cf_name}}} = '{fingerprint}'", fields="Subject,Status,Owner,Priority"
    )


@pytest.fixture
def site(tmp_path: Path, request_tracker: RequestTracker) -> Any:
    s = make_site(tmp_path, request_tracker)
    yield s
    s.close()


# ------------------------------------------------------------------ one ticket


def test_a_p2_opens_exactly_one_ticket_carrying_the_l2_intake(
    site: Site, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    site.smtp_refused()
    assert site.deliver()
    incident = site.incident()
    assert incident.priority == "P2" and incident.state == "open"
    (ticket,) = tickets_for(rt, incident.fingerprint)
    assert (
        ticket["Subject"]
        == f"[P2][{site.config.site}] mail1: SMTP port not answering (connection refused)"
    )
    assert ticket["Status"] == "new"
    full = rt.ticket(int(ticket["id"]))
    assert str(full["Priority"]) == "75"  # P2 in the default map
    assert rt.cf_value(int(ticket["id"])) == incident.fingerprint
    (body,) = rt.comments(int(ticket["id"]), types=("Create",))
    for expected in (
        f"Site:          {site.config.site}",
        "Target:        mail1 (127.0.0.1)",
        "Labels:        rack=pune-r2, role=mail",
        "Priority:      P2 High (business hours)",
        "Respond by:    2026-11-23 13:30 IST",  # Monday 09:30 IST + 4 business hours
        "Resolve by:    2026-11-25 09:30 IST",  # + 2 working days
        "First seen:    2026-11-23 09:30 IST",
        "Occurrences:   1",
        f"Fingerprint:   {incident.fingerprint}",
        "Runbook:       https://wiki.acme.example/runbooks/smtp-down",
        "Evidence (probe output)",
        "connect 127.0.0.1:25: connection refused",  # the logs L2 asks for
        "Recent results of tcp",
        "Automated steps already taken",  # the steps already followed
        "- tcp: fail at 2026-11-23 09:30 IST: connection refused",
    ):
        assert expected in body, f"{expected!r} missing from the ticket:\n{body}"
    assert site.store.ticket(incident.id, "tickets/request_tracker") == (
        ticket["id"],
        f"{rt.url}/Ticket/Display.html?id={ticket['id']}",
    )


def test_more_failures_open_no_new_ticket(site: Site, request_tracker: RequestTracker) -> None:
    for _ in range(5):
        site.smtp_refused()
        site.deliver()
        site.advance(minutes=1)
    incident = site.incident()
    assert incident.occurrences == 5
    assert len(tickets_for(request_tracker, incident.fingerprint)) == 1
    assert [a for a in site.actions() if a[1] == "open"] == [
        ("tickets/request_tracker", "open", "done")
    ]


def test_a_priority_raise_comments_and_changes_the_rt_priority(
    site: Site, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    for _ in range(11):  # refused for ten minutes: tcp-down-long (P1) now holds
        site.smtp_refused()
        site.deliver()
        site.advance(minutes=1)
    incident = site.incident()
    assert incident.priority == "P1"
    (ticket,) = tickets_for(rt, incident.fingerprint)
    tid = int(ticket["id"])
    assert str(rt.ticket(tid)["Priority"]) == "100"
    comments = rt.comments(tid, types=("Comment",))
    assert any(c.startswith("Priority raised from P2 to P1 (tcp-down-long)") for c in comments), (
        comments
    )
    history = rt.history(tid)
    assert any(h.get("Field") == "Priority" and h.get("NewValue") == "100" for h in history)


def test_recovery_resolves_and_a_refire_within_the_window_reopens_the_same_ticket(
    site: Site, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    site.smtp_refused()
    site.deliver()
    fingerprint = site.incident().fingerprint
    (ticket,) = tickets_for(rt, fingerprint)
    tid = int(ticket["id"])
    site.advance(minutes=1)
    site.smtp_ok()
    site.advance(minutes=1)
    site.smtp_ok()  # resolve_after: 2
    site.deliver()
    assert site.incident().state == "resolved"
    assert rt.ticket(tid)["Status"] == "resolved"
    assert any(
        "Resolved: recovered: connected in 3 ms" in c for c in rt.comments(tid, types=("Comment",))
    )
    site.advance(minutes=20)  # within reopen_within (1h)
    site.smtp_refused(message="connection timed out")
    site.deliver()
    assert site.incident().state == "open" and site.incident().reopen_count == 1
    assert [int(t["id"]) for t in tickets_for(rt, fingerprint)] == [tid]
    assert rt.ticket(tid)["Status"] == "new"  # back in the queue for someone to take
    assert any(c.startswith("Failing again:") for c in rt.comments(tid, types=("Comment",)))


# ------------------------------------------------------------- failures of RT


def test_rt_down_while_an_incident_opens_queues_it_and_delivers_once_when_back(
    site: Site, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    rt.stop()
    try:
        site.smtp_refused()
        assert site.deliver()
        (row,) = site.store.outbox(states=["pending"])
        assert (
            row.action == "open"
            and row.attempts == 1
            and "ConnectionError" in (row.last_error or "")
        )
        site.advance(minutes=1)
        site.smtp_refused()  # the watcher goes on tracking while RT is away
        site.deliver()
    finally:
        rt.start()
    site.advance(minutes=15)  # past the backoff
    assert site.deliver()
    incident = site.incident()
    assert len(tickets_for(rt, incident.fingerprint)) == 1
    assert site.store.outbox(states=["pending"]) == []
    assert [a for a in site.actions() if a[1] == "open"] == [
        ("tickets/request_tracker", "open", "done")
    ]
    assert site.metrics.tickets_opened.labels("tickets/request_tracker")._value.get() == 1


def test_a_watcher_killed_after_rt_created_the_ticket_still_has_one_ticket_after_restart(
    tmp_path: Path, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    port = free_port()
    site_name = unique_site("crash")
    text = site_config(site_name, rt_integration(rt)).replace(
        "listen: null", f"listen: 127.0.0.1:{port}"
    )
    text = text.replace(
        "tcp: {port: 25}", f"tcp: {{port: {free_port()}, interval: 1s}}"
    )  # nothing listens
    config = tmp_path / "watcher.yml"
    config.write_text(text)
    (tmp_path / "site.yml").write_text(SITE_RULES)
    created = killed_after_open(
        config,
        "integrations.request_tracker.RequestTrackerIntegration",
        {"RT_PASSWORD": rt.password},
    )
    store = Store(tmp_path / "state.db")
    (incident,) = store.incidents()
    assert store.ticket(incident.id, "tickets/request_tracker") is None  # the id was never stored
    assert [r.action for r in store.outbox(states=["pending"])] == ["open"]
    store.close()
    assert [t["id"] for t in tickets_for(rt, incident.fingerprint)] == [created]

    daemon = Daemon(config, port, env={"RT_PASSWORD": rt.password}).start()
    try:
        store = Store(tmp_path / "state.db")
        daemon.wait_for(
            lambda: store.ticket(incident.id, "tickets/request_tracker"),
            60,
            "the ticket to be adopted",
        )
        assert store.ticket(incident.id, "tickets/request_tracker")[0] == created
        daemon.wait_for(
            lambda: store.incident(incident.id).occurrences >= 3, 30, "more failing results"
        )
    finally:
        assert daemon.stop() == 0
    assert [t["id"] for t in tickets_for(rt, incident.fingerprint)] == [created]
    assert "adopted existing ticket" in daemon.log()
    store.close()


def test_a_bad_password_is_a_permanent_error_that_surfaces(
    tmp_path: Path, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    s = Site(
        tmp_path,
        site_config(unique_site(), rt_integration(rt)),
        environ={"RT_PASSWORD": "not-the-password"},
    )
    try:
        s.smtp_refused()
        s.deliver()
        (row,) = s.store.outbox()
        assert row.state == "failed" and "HTTP 401" in (row.last_error or "")
        assert (
            s.metrics.outbox_failures.labels("tickets/request_tracker", "permanent")._value.get()
            == 1
        )
    finally:
        s.close()


def test_an_rt_that_answers_503_is_retried_honouring_retry_after(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_response(
        "/REST/2.0/tickets", status=503, body='{"message":"busy"}', headers={"Retry-After": "120"}
    )
    http_server.set_response(
        "/REST/2.0/ticket", status=503, body='{"message":"busy"}', headers={"Retry-After": "120"}
    )
    s = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - request_tracker: "
            + json.dumps({"url": http_server.url, "token": "t0k3n-x"}),
        ),
    )
    try:
        s.smtp_refused()
        s.deliver()
        (row,) = s.store.outbox()
        assert row.state == "pending" and row.attempts == 1
        assert row.due_at - s.clock().timestamp() >= 120  # not before RT said
    finally:
        s.close()


# ------------------------------------------------------------ acknowledgement


def test_taking_the_ticket_in_rt_acknowledges_the_incident_and_stops_repaging(
    tmp_path: Path, request_tracker: RequestTracker, http_server: HTTPTestServer
) -> None:
    rt = request_tracker
    pager = f"    - webhook: {{url: '{http_server.url}/page'}}"
    s = make_site(tmp_path, rt, paging=pager)
    try:
        for _ in range(11):  # a P1: paged at once
            s.smtp_refused()
            s.tick()
            s.deliver()
            s.advance(minutes=1)
        incident = s.incident()
        assert incident.priority == "P1" and incident.page_count == 1
        assert s.poller.poll(force=True) == []  # nobody has it yet: nothing changes
        s.advance(minutes=30)
        s.tick()
        s.deliver()
        assert s.incident().page_count == 2  # repaged after 30 minutes unacknowledged
        (ticket,) = tickets_for(rt, incident.fingerprint)
        rt.take(int(ticket["id"]))
        s.advance(minutes=1)
        assert s.poller.poll() == [incident.id]  # a minute since the last poll: due
        acked = s.incident()
        assert acked.state == "acknowledged" and acked.acknowledged_by == rt.engineer
        assert acked.acknowledged_at <= acked.response_due  # the response SLA is met
        for _ in range(4):  # two hours on: no more pages
            s.advance(minutes=30)
            s.smtp_refused()
            s.tick()
            s.deliver()
        assert s.incident().page_count == 2
        pages = [json.loads(r.body)["event"] for r in http_server.requests if r.path == "/page"]
        assert pages == ["page.trigger", "page.trigger", "page.acknowledge"]
        assert "acknowledged" in s.events()
        # the helpdesk knows: watcher adds no "acknowledged" comment of its own
        assert not any(
            "Acknowledged by" in c for c in rt.comments(int(ticket["id"]), types=("Comment",))
        )
    finally:
        s.close()


def test_a_ticket_moved_to_open_counts_as_taken(
    site: Site, request_tracker: RequestTracker
) -> None:
    site.smtp_refused()
    site.deliver()
    (ticket,) = tickets_for(request_tracker, site.incident().fingerprint)
    assert site.poller.poll(force=True) == []
    request_tracker.set_status(int(ticket["id"]), "open")
    assert site.poller.poll(force=True) == [site.incident().id]
    assert site.incident().acknowledged_by == "request_tracker user"


def test_polling_stays_modest(site: Site, request_tracker: RequestTracker) -> None:
    site.smtp_refused()
    site.deliver()
    assert site.poller.poll() == []  # first round: asks
    calls: list[str] = []
    (integration,) = site.poller._integrations.values()
    original = integration.status
    integration.status = lambda ref: calls.append(ref.id) or original(ref)  # type: ignore[method-assign]
    site.advance(seconds=30)
    site.poller.poll()
    assert calls == []  # poll_every: 1m
    site.advance(seconds=30)
    site.poller.poll()
    assert len(calls) == 1


# --------------------------------------------------------------- the contract


def test_the_integration_by_itself(tmp_path: Path, request_tracker: RequestTracker) -> None:
    rt = request_tracker
    s = Site(
        tmp_path,
        site_config(
            unique_site(), rt_integration(rt, token="${RT_TOKEN}", password=None, user=None)
        ),
        environ={"RT_TOKEN": rt.token},
    )
    try:
        integration = s.integrations["tickets/request_tracker"]
        assert isinstance(integration, RequestTrackerIntegration)
        assert integration.find("w-nothing-has-this") is None
        s.smtp_refused()
        s.deliver()
        fingerprint = s.incident().fingerprint
        ref = integration.find(fingerprint)
        assert ref is not None and ref.url and ref.url.endswith(f"id={ref.id}")
        assert integration.status(ref).state == "new" and not integration.status(ref).taken
        rt.set_status(int(ref.id), "resolved")
        assert integration.find(fingerprint) is None  # a resolved ticket is not adopted
        with pytest.raises(PermanentError):
            integration.comment(TicketRef("999999"), _content(fingerprint))
    finally:
        s.close()


def test_unreachable_rt_is_transient(tmp_path: Path) -> None:
    s = Site(
        tmp_path,
        site_config(
            unique_site(),
            "  tickets:\n    - request_tracker: "
            + json.dumps(
                {"url": f"http://127.0.0.1:{free_port()}", "token": "t0k3n-y", "timeout": "2s"}
            ),
        ),
    )
    try:
        with pytest.raises(TransientError):
            s.integrations["tickets/request_tracker"].find("wabc")
    finally:
        s.close()


def _content(fingerprint: str) -> Any:
    from integrations.base import TicketContent

    return TicketContent(
        incident_id=1,
        fingerprint=fingerprint,
        site="s",
        target="t",
        host=None,
        priority="P2",
        priority_name="High",
        summary="x",
        subject="[P2][s] t: x",
        body="b",
        state="open",
        text="a comment",
    )


def test_watcher_test_integration_opens_and_resolves_a_marked_ticket(
    tmp_path: Path, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    config = tmp_path / "watcher.yml"
    config.write_text(
        site_config(unique_site("cli"), rt_integration(rt)).replace(
            "rules: [default, site.yml]", ""
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "watcher.cli",
            "test-integration",
            "request_tracker",
            "-c",
            str(config),
        ],
        env={**os.environ, "RT_PASSWORD": rt.password},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "test ticket created" in out.stdout and "test ticket resolved" in out.stdout
    ticket_id = out.stdout.split("test ticket created: ")[1].split()[0]
    ticket = rt.ticket(int(ticket_id))
    assert ticket["Subject"].startswith("[TEST]") and ticket["Status"] == "resolved"


def test_the_running_daemon_polls_rt_and_takes_the_acknowledgement(
    tmp_path: Path, request_tracker: RequestTracker
) -> None:
    rt = request_tracker
    port = free_port()
    text = site_config(unique_site("daemon"), rt_integration(rt, poll_every="1s")).replace(
        "listen: null", f"listen: 127.0.0.1:{port}"
    )
    config = tmp_path / "watcher.yml"
    config.write_text(
        text.replace("tcp: {port: 25}", f"tcp: {{port: {free_port()}, interval: 1s}}")
    )
    (tmp_path / "site.yml").write_text(SITE_RULES)
    daemon = Daemon(config, port, env={"RT_PASSWORD": rt.password}).start()
    store = Store(tmp_path / "state.db")
    try:
        daemon.wait_for(
            lambda: (
                store.incidents()
                and store.ticket(store.incidents()[0].id, "tickets/request_tracker")
            ),
            60,
            "the ticket",
        )
        (incident,) = store.incidents()
        ticket_id, _ = store.ticket(incident.id, "tickets/request_tracker")
        rt.take(int(ticket_id))
        acked = daemon.wait_for(
            lambda: (
                store.incident(incident.id).state == "acknowledged" and store.incident(incident.id)
            ),
            30,
            "the acknowledgement from RT",
        )
        assert acked.acknowledged_by == rt.engineer
        assert any(
            e.kind == "acknowledged" and "via helpdesk" in e.message
            for e in store.events(incident.id)
        )
    finally:
        store.close()
        assert daemon.stop() == 0


def test_a_custom_field_rt_does_not_apply_is_reported_loudly(
    tmp_path: Path, request_tracker: RequestTracker, caplog: pytest.LogCaptureFixture
) -> None:
    s = make_site(tmp_path, request_tracker, fingerprint_field="No Such Field")
    try:
        s.smtp_refused()
        s.deliver()
        assert [r.state for r in s.store.outbox()] == [
            "done"
        ]  # the ticket is there, never opened twice
        assert any(
            "has no 'No Such Field' value" in r.getMessage() and r.levelname == "ERROR"
            for r in caplog.records
        )
    finally:
        s.close()
