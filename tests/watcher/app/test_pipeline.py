"""The engine: what it keeps in memory stays what the state file says, across failed
transactions, reloads and long runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import Clock, config_from, result
from watcher.app.pipeline import Engine
from watcher.store import Store

CONFIG = """
site: acme
state: state.db
listen: null
contacts:
  hotline: [{name: L2 on call, email: hotline@acme.example}]
targets:
  - name: web
    probes: [{http: {url: "http://127.0.0.1:9/"}}, {disk: {}}]
  - name: db
    probes: [{disk: {}}]
integrations:
  tickets: [{webhook: {url: "http://127.0.0.1:9/hook", name: helpdesk}}]
  paging: [{webhook: {url: "http://127.0.0.1:9/page", name: pager}}]
"""


class Site:
    def __init__(self, directory: Path, state: str | Path | None = None) -> None:
        self.directory = directory
        self.clock = Clock()
        self.config = config_from(directory, CONFIG)
        self.store = Store(state or self.config.state_path)
        self.engine = Engine(self.config, self.store, clock=self.clock)

    def disk(self, target: str, used: float) -> None:
        self.engine.process(
            [
                result(
                    target,
                    "disk",
                    kind="disk",
                    metrics={"used_percent": used, "inodes_used_percent": 1.0},
                    labels={"path": "/"},
                    at=self.clock(),
                )
            ]
        )

    def http(self, status: str) -> None:
        self.engine.process(
            [result("web", "http", status=status, message=f"HTTP {status}", at=self.clock())]
        )

    def actions(self, target: str | None = None) -> list[str]:
        ids = {i.id for i in self.store.incidents() if target is None or i.target == target}
        return [
            f"{r.integration.split('/')[0]}:{r.action}"
            for r in self.store.outbox()
            if r.incident_id in ids
        ]

    def reload(self, text: str) -> None:
        (self.directory / "watcher.yml").write_text(text)
        self.engine.configure(config_from(self.directory, text))


@pytest.fixture
def site(tmp_path: Path, state_location: str | Path) -> Iterator[Site]:
    s = Site(tmp_path, state_location)
    yield s
    s.store.close()


def test_a_batch_whose_transaction_fails_leaves_nothing_behind_in_memory(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = site.store.add_events
    calls = []

    def failing_once(db: sqlite3.Connection, incident_id: int, events: object) -> None:
        calls.append(incident_id)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(db, incident_id, events)  # type: ignore[arg-type]

    monkeypatch.setattr(site.store, "add_events", failing_once)
    batch = [
        result(
            t,
            "disk",
            kind="disk",
            metrics={"used_percent": 97.0},
            labels={"path": "/"},
            at=site.clock(),
        )
        for t in ("web", "db")
    ]
    with pytest.raises(sqlite3.OperationalError):
        site.engine.process(batch)  # web's incident was applied, db's failed: all rolled back
    monkeypatch.undo()
    assert site.engine.incidents() == [] and site.store.incidents() == []

    site.clock.advance(minutes=1)
    site.disk("web", 97.0)
    site.disk("db", 97.0)
    # each one opened and owed its ticket, in the state file as in memory
    assert sorted((i.id, i.target) for i in site.engine.incidents()) == sorted(
        (i.id, i.target) for i in site.store.incidents()
    )
    assert site.actions("web") == ["tickets:open"] and site.actions("db") == ["tickets:open"]


def test_an_incident_resolved_too_long_ago_to_reopen_leaves_the_working_set(site: Site) -> None:
    site.disk("db", 97.0)  # disk-critical: P2 at once
    for _ in range(2):
        site.clock.advance(minutes=1)
        site.disk("db", 10.0)
    [incident] = site.engine.incidents()
    assert incident.state == "resolved"
    site.clock.advance(minutes=59)
    site.engine.tick()
    assert [i.id for i in site.engine.incidents()] == [incident.id]  # it may still reopen
    site.clock.advance(minutes=2)
    site.engine.tick()
    assert site.engine.incidents() == []  # as after a restart: the state file keeps it
    assert site.store.incident(incident.id).state == "resolved"  # type: ignore[union-attr]
    site.disk("db", 97.0)
    assert [i.id for i in site.engine.incidents()] != [incident.id]  # a new one, a new ticket


def test_a_late_result_of_a_target_a_reload_removed_is_not_kept_as_latest(site: Site) -> None:
    site.reload(CONFIG.replace("  - name: db\n    probes: [{disk: {}}]\n", ""))
    site.disk("db", 10.0)  # its check was still running when the reload came
    assert {r.target for r in site.engine.latest()} == set()


def test_an_incident_whose_check_leaves_the_config_resolves_and_stops_paging(site: Site) -> None:
    for _ in range(3):  # http-down: P1 after 2m, ticketed and paged
        site.http("fail")
        site.clock.advance(minutes=1)
    assert site.actions("web") == ["tickets:open", "paging:page"]
    site.reload(CONFIG.replace('{http: {url: "http://127.0.0.1:9/"}}, ', ""))
    site.clock.advance(minutes=31)
    site.engine.tick()
    [incident] = site.store.incidents()
    assert incident.state == "resolved" and incident.probe == "http"
    assert site.actions("web") == [
        "tickets:open",
        "paging:page",
        "tickets:resolve",
        "paging:page_resolve",
    ]
    site.clock.advance(minutes=60)
    site.engine.tick()
    assert len(site.actions("web")) == 4  # no repage, no escalation
