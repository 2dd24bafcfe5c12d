"""A watcher's incident half built from its real parts (config, store, engine, outbox,
helpdesk poller), fed results by hand on a clock the test moves, for the ticket and
paging tests. Probes are left out: the tests say "the SMTP port refused" directly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from probes.base import Result
from tests.support.helpers import Clock, config_from, result
from watcher.app.daemon import build_integrations
from watcher.app.pipeline import Engine
from watcher.delivery.acks import HelpdeskPoller
from watcher.delivery.httpclient import HttpClients
from watcher.delivery.outbox import Dispatcher
from watcher.engine.incident import Incident
from watcher.store import Store
from watcher.web.metrics import Metrics

# Two rules on one TCP check (the SMTP port): refused for a moment is P2, for ten
# minutes P1. The first replaces the shipped pack's tcp-down of the same name.
SITE_RULES = """
rules:
  - name: tcp-down
    probe: tcp
    when: failed
    priority: P2
    summary: "{target}: SMTP port not answering ({message})"
    runbook: https://wiki.acme.example/runbooks/smtp-down
  - name: tcp-down-long
    probe: tcp
    when: failed
    for: 10m
    priority: P1
    summary: "{target}: SMTP down for 10 minutes ({message})"
    runbook: https://wiki.acme.example/runbooks/smtp-down
"""


# A watcher that dies (SIGKILL) right after the helpdesk created the ticket of a failing
# mail1, before it could store the ticket's id. argv: config, "module.IntegrationClass".
_OPEN_THEN_DIE = """
import importlib, os, signal, sys
from datetime import UTC, datetime
from tests.support.helpers import result
from watcher.app.daemon import build_integrations
from watcher.config.load import load_config
from watcher.app.pipeline import Engine
from watcher.delivery.httpclient import HttpClients
from watcher.web.metrics import Metrics
from watcher.delivery.outbox import Dispatcher
from watcher.store import Store

module, name = sys.argv[2].rsplit(".", 1)
integration = getattr(importlib.import_module(module), name)
original = integration.open

def open_then_die(self, ticket):
    ref = original(self, ticket)  # the helpdesk has created the ticket ...
    print("created", ref.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # ... and the watcher dies before storing its id

integration.open = open_then_die
config = load_config(sys.argv[1])
store = Store(config.state_path)
engine = Engine(config, store)
engine.process([result("mail1", "tcp", status="fail", message="connection refused", at=datetime.now(UTC))])
Dispatcher(store, build_integrations(config, HttpClients()), Metrics()).drain()
"""


def killed_after_open(config: Path, integration: str, env: dict[str, str]) -> str:
    """Runs a watcher on ``config`` that is killed right after ``integration`` (e.g.
    ``integrations.redmine.RedmineIntegration``) opened a ticket; returns that ticket's id."""
    child = subprocess.run(
        [sys.executable, "-c", _OPEN_THEN_DIE, str(config), integration],
        env={**os.environ, "PYTHONPATH": str(Path.cwd()), **env},
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    return child.stdout.split()[-1]


def unique_site(prefix: str = "acme") -> str:
    """A site name per test, so fingerprints never collide in a shared helpdesk."""
    return f"{prefix}-{time.time_ns() % 10**12}"


def site_config(site: str, integrations: str, *, extra: str = "") -> str:
    return f"""
site: {site}
state: state.db
listen: null
targets:
  - name: mail1
    host: 127.0.0.1
    description: Postfix relay for the Pune office
    labels: {{role: mail, rack: pune-r2}}
    probes:
      - tcp: {{port: 25}}
rules: [default, site.yml]
{extra}
integrations:
{integrations}
"""


class Site:
    def __init__(
        self,
        directory: Path,
        config_text: str,
        *,
        clock: Clock | None = None,
        environ: dict[str, str] | None = None,
        rules: str = SITE_RULES,
    ) -> None:
        self.directory = directory
        self.clock = clock or Clock()
        self.config = config_from(
            directory, config_text, extra={"site.yml": rules}, environ=environ
        )
        self.store = Store(self.config.state_path)
        self.metrics = Metrics()
        self.http = HttpClients()
        self.integrations = build_integrations(self.config, self.http)
        self.dispatcher = Dispatcher(
            self.store, self.integrations, self.metrics, clock=self.clock, base_delay=5.0
        )
        self.engine = Engine(self.config, self.store, clock=self.clock)
        self.poller = HelpdeskPoller(
            self.engine, self.store, build_integrations(self.config, self.http), clock=self.clock
        )

    # ----------------------------------------------------------------- the world
    def smtp_refused(self, message: str = "connection refused", **kw: Any) -> list[Any]:
        return self.feed(
            status="fail",
            message=message,
            reason="refused",
            evidence=kw.pop(
                "evidence", f"connect 127.0.0.1:25: {message}\nretried once after 1s: {message}"
            ),
            **kw,
        )

    def smtp_ok(self) -> list[Any]:
        return self.feed(status="ok", message="connected in 3 ms", metrics={"connect_s": 0.003})

    def recover(self) -> None:
        """Two good results a minute apart (``resolve_after: 2``), then delivery."""
        for _ in range(2):
            self.advance(minutes=1)
            self.smtp_ok()
        self.deliver()

    def feed(self, **kw: Any) -> list[Any]:
        r: Result = result(target="mail1", probe="tcp", at=self.clock(), **kw)
        steps = self.engine.process([r])
        return steps

    def tick(self) -> list[Any]:
        return self.engine.tick()

    def deliver(self) -> bool:
        return self.dispatcher.drain(timeout=60)

    def advance(self, **delta: float) -> None:
        self.clock.advance(**delta)

    # ------------------------------------------------------------------- reading
    def incident(self) -> Incident:
        (incident,) = [i for i in self.engine.incidents() if i.target == "mail1"]
        return incident

    def actions(self, **kw: Any) -> list[tuple[str, str, str]]:
        return [(r.integration, r.action, r.state) for r in self.store.outbox(**kw)]

    def events(self) -> list[str]:
        return [e.kind for e in self.store.events(self.incident().id or 0)]

    def close(self) -> None:
        self.dispatcher.stop(timeout=5)
        self.poller.stop()
        self.store.close()
