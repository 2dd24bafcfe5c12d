"""A watcher assembled from its real parts, driven round by round with a hand-moved clock.

The probes, engine, store, outbox and integrations are the production ones; only the
scheduler's timetable is replaced by ``rig.round()``, so a test can say "three minutes
of failures" without waiting three minutes.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from probes.base import Result, run_probe
from tests.support.helpers import Clock, config_from
from watcher.app.daemon import build_integrations, build_jobs
from watcher.app.pipeline import Engine
from watcher.config.models import Config
from watcher.delivery.httpclient import HttpClients
from watcher.delivery.outbox import Dispatcher
from watcher.schedule.scheduler import Job
from watcher.store import Store
from watcher.transports import Runners
from watcher.web.metrics import Metrics


class Rig:
    def __init__(
        self, directory: Path, config_text: str, *, clock: Clock | None = None, **kw: Any
    ) -> None:
        self.directory = directory
        self.clock = clock or Clock()
        self.config: Config = config_from(directory, config_text, **kw)
        self.store = Store(self.config.state_path)
        self.metrics = Metrics()
        self.http = HttpClients()
        self.runners = Runners(self.config.model)
        self.integrations = build_integrations(self.config, self.http)
        self.dispatcher = Dispatcher(
            self.store, self.integrations, self.metrics, clock=self.clock, base_delay=5.0
        )
        self.engine = Engine(self.config, self.store, clock=self.clock)
        self.jobs: list[Job] = build_jobs(self.config, self.http, self.runners)

    def round(
        self, *, minutes: float = 1.0, deliver: bool = True, targets: list[str] | None = None
    ) -> list[Result]:
        """Runs every check once at the current time, feeds the engine, delivers, then
        moves the clock on by ``minutes``."""
        results: list[Result] = []
        for job in self.jobs:
            if targets is None or job.target.name in targets:
                results.extend(run_probe(job.probe, job.ctx, job.spec.id, clock=self.clock))
        self.engine.process(results)
        self.engine.tick()
        if deliver:
            self.dispatcher.drain(timeout=60)
        self.clock.advance(minutes=minutes)
        return results

    def rounds(self, count: int, **kw: Any) -> None:
        for _ in range(count):
            self.round(**kw)

    def advance(self, **delta: float) -> None:
        self.clock.now += timedelta(**delta)

    def incidents(self) -> list[Any]:
        return sorted(self.store.incidents(limit=10_000), key=lambda i: i.id)

    def outbox(self, **kw: Any) -> list[Any]:
        return self.store.outbox(**kw)

    def close(self) -> None:
        for integration in self.integrations.values():
            integration.close()
        self.runners.close()
        self.store.close()
