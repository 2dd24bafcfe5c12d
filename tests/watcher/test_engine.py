"""The engine: what it keeps in memory stays what the state file says, across failed
transactions, reloads and long runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Clock, config_from, result
from watcher.engine import Engine
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
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.clock = Clock()
        self.config = config_from(directory, CONFIG)
        self.store = Store(self.config.state_path)
        self.engine = Engine(self.config, self.store, clock=self.clock)

    def disk(self, target: str, used: float) -> None:
        self.engine.process(
            [
                result(
                    target, "disk", kind="disk", metrics={"used_percent": used, "inodes_used_percent": 1.0},
                    labels={"path": "/"}, at=self.clock(),
                )
            ]
        )

    def http(self, status: str) -> None:
        self.engine.process([result("web", "http", status=status, message=f"HTTP {status}", at=self.clock())])

    def actions(self, target: str | None = None) -> list[str]:
        ids = {i.id for i in self.store.incidents() if target is None or i.target == target}
        return [f"{r.integration.split('/')[0]}:{r.action}" for r in self.store.outbox() if r.incident_id in ids]

    def reload(self, text: str) -> None:
        (self.directory / "watcher.yml").write_text(text)
        self.engine.configure(config_from(self.directory, text))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
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
        result(t, "disk", kind="disk", metrics={"used_percent": 97.0}, labels={"path": "/"}, at=site.clock())
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

