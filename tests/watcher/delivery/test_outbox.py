"""The outbox searches the helpdesk for a fingerprint while a rule's hold runs, so the open
when the hold is met goes straight to the create; every case where that could duplicate a
ticket searches again. The real Request Tracker figures are in bench/ticket_bench.py."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import watcher.delivery.outbox
from integrations.base import (
    Integration,
    IntegrationConfig,
    IntegrationEnv,
    TicketContent,
    TicketRef,
    TransientError,
)
from tests.support.helpers import Clock, config_from, result
from watcher.app.pipeline import Engine
from watcher.delivery.outbox import Dispatcher
from watcher.store import Store
from watcher.web.metrics import Metrics

ROUTE = "tickets/helpdesk"
CONFIG = """
site: acme
state: state.db
listen: null
targets:
  - name: web
    host: 127.0.0.1
    probes:
      - http: {url: "http://127.0.0.1:9/"}
      - disk: {}
integrations:
  tickets:
    - webhook: {url: "http://127.0.0.1:9/hook", name: helpdesk}
"""


class Helpdesk(Integration):
    """A helpdesk kept in memory that records what it was asked: the dispatcher's side of
    the contract is what these tests are about."""

    kind = "helpdesk"
    roles = frozenset({"tickets"})

    def __init__(self) -> None:
        super().__init__(
            IntegrationConfig(name="helpdesk"),
            IntegrationEnv(site="", smtp=None, contacts=None, http=None),
            "tickets",
        )  # type: ignore[arg-type]
        self.tickets: dict[str, str] = {}  # id -> fingerprint, all open
        self.calls: list[str] = []
        self.fail_after_create = False

    def find(self, fingerprint: str) -> TicketRef | None:
        self.calls.append("find")
        return next((TicketRef(i, None) for i, f in self.tickets.items() if f == fingerprint), None)

    def open(self, ticket: TicketContent) -> TicketRef:
        self.calls.append("open")
        ticket_id = str(len(self.tickets) + 1)
        self.tickets[ticket_id] = ticket.fingerprint
        if self.fail_after_create:
            self.fail_after_create = False
            raise TransientError("the answer was lost after the ticket was made")
        return TicketRef(ticket_id, None)

    def comment(self, ref: TicketRef, ticket: TicketContent) -> None:
        self.calls.append("comment")


class Watcher:
    def __init__(self, tmp_path: Path, state: str | Path | None = None) -> None:
        self.clock = Clock()
        self.config = config_from(tmp_path, CONFIG)
        self.store = Store(state or self.config.state_path)
        self.helpdesk = Helpdesk()
        self.dispatcher = Dispatcher(
            self.store, {ROUTE: self.helpdesk}, Metrics(), clock=self.clock, base_delay=0.0
        )
        self.engine = Engine(
            self.config, self.store, clock=self.clock, on_hold=self.dispatcher.search_ahead
        )

    def fail(self, *, minutes: float = 1.0, probe: str = "http", **kw: object) -> None:
        self.engine.process(
            [result("web", probe, status="fail", message="HTTP 500", at=self.clock(), **kw)]
        )
        self.clock.advance(minutes=minutes)

    def searches_ahead(self) -> None:
        self.dispatcher._run_searches_ahead(ROUTE)  # what the idle worker thread does

    def deliver(self) -> None:
        assert self.dispatcher.drain(timeout=30)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, state_location: str | Path) -> Watcher:
    w = Watcher(tmp_path, state_location)
    yield w
    w.close()


def test_the_search_made_during_the_hold_spares_the_open_its_search(site: Watcher) -> None:
    site.fail()  # http-down holds for 2m: a pending incident, and a search ahead
    site.searches_ahead()
    assert site.helpdesk.calls == ["find"]
    site.fail()
    site.fail()  # two minutes: the hold is met, the open is queued
    site.deliver()
    assert site.helpdesk.calls == ["find", "open"]
    assert len(site.helpdesk.tickets) == 1


def test_a_ticket_found_ahead_is_searched_for_again_and_adopted(site: Watcher) -> None:
    site.fail()
    [incident] = site.engine.incidents()
    site.helpdesk.tickets["77"] = incident.fingerprint  # made by a watcher that lost its state, say
    site.searches_ahead()
    site.fail()
    site.fail()
    site.deliver()
    assert site.helpdesk.calls == ["find", "find"]
    assert site.store.ticket(incident.id, ROUTE)[0] == "77" and len(site.helpdesk.tickets) == 1


def test_an_open_that_failed_after_the_create_searches_before_it_tries_again(site: Watcher) -> None:
    site.fail()
    site.searches_ahead()
    site.helpdesk.fail_after_create = True
    site.fail()
    site.fail()
    site.deliver()
    assert site.helpdesk.calls == ["find", "open", "find"]  # the retry found and adopted the ticket
    assert len(site.helpdesk.tickets) == 1


def test_a_search_ahead_too_old_is_not_trusted(
    site: Watcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.fail()
    site.searches_ahead()
    monkeypatch.setattr(watcher.delivery.outbox, "SEARCH_AHEAD_FRESH", 0.0)
    site.fail()
    site.fail()
    site.deliver()
    assert site.helpdesk.calls == ["find", "find", "open"]


def test_no_search_ahead_for_a_hold_that_cannot_end_in_a_ticket(site: Watcher) -> None:
    site.fail(reason="slow")  # http-slow: P3 (no ticket) after 5m
    site.searches_ahead()
    assert [i.state for i in site.engine.incidents()] == ["pending"]
    assert site.helpdesk.calls == []


def test_a_failure_without_a_hold_opens_with_its_own_search(site: Watcher) -> None:
    site.fail(
        probe="disk", kind="disk", metrics={"used_percent": 97.0}, labels={"path": "/"}
    )  # disk-critical: P2 at once
    site.searches_ahead()
    site.deliver()
    assert site.helpdesk.calls == ["find", "open"]


def test_a_worker_outlives_a_state_file_error_and_delivers_after_it(
    site: Watcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = site.store.due_actions
    errors = []

    def locked_once(*args: object, **kw: object) -> list:
        if not errors:
            errors.append(1)
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(site.store, "due_actions", locked_once)
    site.engine.on_enqueue = site.dispatcher.wake
    site.dispatcher.start()
    try:
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            time.sleep(0.02)
        site.fail(probe="disk", kind="disk", metrics={"used_percent": 97.0}, labels={"path": "/"})
        while not site.helpdesk.tickets and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        site.dispatcher.stop()
    assert errors and len(site.helpdesk.tickets) == 1


def test_deliver_never_raises_even_for_an_action_it_cannot_read(site: Watcher) -> None:
    site.fail(probe="disk", kind="disk", metrics={"used_percent": 97.0}, labels={"path": "/"})
    [incident] = site.engine.incidents()
    with site.store.transaction() as db:
        site.store.enqueue(
            db,
            incident_id=incident.id + 1,
            integration=ROUTE,
            role="tickets",
            action="open",
            payload={},
            now=site.clock(),
        )
    unreadable = site.store.outbox()[-1]
    assert site.dispatcher.deliver(unreadable) is False
    row = site.store.outbox(states=["pending"])[-1]  # kept, to try again
    assert row.id == unreadable.id and row.attempts == 1 and "TypeError" in (row.last_error or "")
    site.dispatcher.deliver(site.store.outbox()[0])
    assert len(site.helpdesk.tickets) == 1  # the readable one went out


def test_a_helpdesk_added_after_an_incident_was_ticketed_is_not_asked_to_resolve_a_ticket_it_never_had(
    site: Watcher, tmp_path: Path
) -> None:
    (tmp_path / "before").mkdir()
    site.engine.configure(
        config_from(tmp_path / "before", CONFIG.split("integrations:")[0])
    )  # no helpdesk yet
    site.fail(
        probe="disk", kind="disk", metrics={"used_percent": 97.0}, labels={"path": "/"}
    )  # ticketed, to nobody
    site.engine.configure(site.config)  # the helpdesk is added
    for _ in range(2):
        ok = {"used_percent": 10.0, "inodes_used_percent": 1.0}
        site.engine.process(
            [result("web", "disk", kind="disk", metrics=ok, labels={"path": "/"}, at=site.clock())]
        )
        site.clock.advance(minutes=1)
    [incident] = site.engine.incidents()
    assert incident.state == "resolved"
    assert [r.action for r in site.store.outbox()] == ["resolve"]
    site.deliver()
    assert [r.state for r in site.store.outbox()] == [
        "done"
    ]  # nothing to resolve there, not a failure
    assert site.helpdesk.calls == ["find"]  # it was asked whether it had one after all


def test_an_open_interrupted_twice_on_a_searchable_helpdesk_is_searched_and_adopted(
    site: Watcher,
) -> None:
    site.fail(probe="disk", kind="disk", metrics={"used_percent": 97.0}, labels={"path": "/"})
    [incident] = site.engine.incidents()
    site.helpdesk.tickets["41"] = incident.fingerprint  # sent by the watchers that were killed
    with site.store.transaction() as db:  # what two kills mid-attempt leave in the outbox
        db.execute("UPDATE outbox SET attempt_started=?, interrupted=1", (time.time(),))
    site.deliver()
    assert site.helpdesk.calls == ["find"]
    assert [(r.state, r.attempt_started) for r in site.store.outbox()] == [("done", None)]
    assert site.store.ticket(incident.id, ROUTE)[0] == "41" and len(site.helpdesk.tickets) == 1
