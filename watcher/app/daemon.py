"""Wires a loaded config into a running watcher: store, engine, outbox, scheduler, web
(whose own answers are in :mod:`watcher.web.api`).

``App`` is what ``watcher run`` runs. It holds the state file's run lock, so two watchers
never share one state file (and never deliver the same action twice).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import ChainMap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import integrations as integration_registry
from integrations.base import Integration, IntegrationEnv
from probes.base import ProbeContext, Result
from watcher import __version__
from watcher.app.pipeline import Engine
from watcher.audit.schedule import AuditScheduler
from watcher.cluster import ClusterNode, default_node_name
from watcher.cluster.deadman import DeadMansSwitch
from watcher.cluster.metrics import ClusterCollector
from watcher.cluster.node import OUTAGE_KEY
from watcher.config.load import load_config
from watcher.config.models import Config, ConfigError
from watcher.delivery.acks import HelpdeskPoller
from watcher.delivery.escalation import ESCALATION_ROUTE, EscalationMailer
from watcher.delivery.httpclient import HttpClients
from watcher.delivery.outbox import Dispatcher
from watcher.engine import tracker
from watcher.schedule.scheduler import Job, Scheduler
from watcher.store import SCHEMA_VERSION, StateWriteError, Store
from watcher.store.sqlite_file import (
    StateLocked,
    acquire_run_lock,
    check_state_file,
    release_run_lock,
)
from watcher.transports import Runners
from watcher.web.api import DaemonApi
from watcher.web.checkins import attach as attach_checkins
from watcher.web.metrics import Metrics
from watcher.web.server import (
    WebServer,
)

__all__ = ["App", "build_jobs", "build_integrations", "StateLocked", "configure_logging"]

log = logging.getLogger("watcher")

TICK_EVERY = 5.0
BATCH_WINDOW = 0.1
COMPACT_EVERY = 3600.0
# SIGTERM to exit within 5 s, whatever checks and deliveries are doing.
SHUTDOWN_BUDGET = 4.0


def configure_logging(level: str) -> None:
    from watcher.core.secret import redact

    class _Redacting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact(super().format(record))

    handler = logging.StreamHandler()
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def tune_malloc(arenas: int = 2, mmap_threshold: int = 256 * 1024) -> None:
    """Keeps glibc's malloc from holding on to memory the daemon has freed.

    By default every thread that allocates gets an arena of its own, up to 8 per core, and
    what it frees stays there; and after a large buffer is freed (a /metrics exposition of
    tens of MB at 30,000 checks) glibc raises its mmap threshold, so the next ones come
    from the heap and stay in the process. Two arenas and a fixed threshold held about
    100 MB less RSS at 10,000 targets, for no speed that could be measured. Linux and
    glibc only; ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_`` set by hand win.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        libc = ctypes.CDLL(None)
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(-8, arenas)  # M_ARENA_MAX
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD, which also stops it moving


def build_integrations(config: Config, http: HttpClients) -> dict[str, Integration]:
    env = IntegrationEnv.of(config.model, http)
    out: dict[str, Integration] = {}
    for role, kind, cfg in config.model.integrations.entries():
        cls = integration_registry.integration_class(kind)
        out[f"{role}/{cfg.name or kind}"] = cls(cfg, env, role)
    if any(c.email for c in config.model.contacts.escalation):
        out[ESCALATION_ROUTE] = EscalationMailer(env)
    return out


def build_jobs(
    config: Config, http: HttpClients, runners: Runners, services: dict[str, Any] | None = None
) -> list[Job]:
    m = config.model
    jobs = []
    for target in m.targets:
        runner = None
        for spec in target.probe_specs():
            cls = spec.probe_class
            every, within = target.timing(spec, m.defaults)
            interval, timeout = every.total_seconds(), within.total_seconds()
            # a kind with its own slow pace (du: daily) is not rechecked unless asked to
            retry = next(
                (r for r in (spec.config.retry_interval, target.retry_interval) if r is not None),
                None,
            )  # 0s on a probe or target turns rechecks off there: not "unset"
            if retry is None and cls.default_interval is None:
                retry = m.defaults.retry_interval
            # A probe that reports a recovered item for a while (agent_checkins) needs this
            # many rounds of it to resolve the item's incident under this config.
            to_resolve = tracker.results_to_resolve(
                m.defaults.resolve_after, (target.flapping or m.flapping).settings()
            )
            if cls.needs_runner and runner is None:
                runner = runners.for_target(target)
            ctx = ProbeContext(
                site=m.site,
                target=target.name,
                host=target.host,
                labels=target.labels,
                timeout=timeout,
                http=http,
                runner=runner if cls.needs_runner else None,
                services=ChainMap({"results_to_resolve": to_resolve}, services or {}),
            )
            retry_s = retry.total_seconds() if retry else None
            jobs.append(Job(target, spec, cls(spec.config), ctx, interval, timeout, retry_s))
    return jobs


class ResultSink:
    """The engine's single thread: takes results in batches, runs the clock-driven work."""

    def __init__(self, engine: Engine, store: Store, config_getter: Callable[[], Config]) -> None:
        self.engine = engine
        self.store = store
        self.config = config_getter
        self.queue: queue.Queue[list[Result]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._last_tick = 0.0
        self._last_compact = 0.0
        self._last_batch = 0.0
        self.last_loop = time.monotonic()

    def put(self, results: list[Result]) -> None:
        self.queue.put(results)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():  # else the engine is still busy with a batch
            self._drain()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and time.monotonic() - self.last_loop < 60

    def _drain(self) -> None:
        batch: list[Result] = []
        while True:
            try:
                batch.extend(self.queue.get_nowait())
            except queue.Empty:
                break
        if batch:
            self.engine.process(batch)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            batch: list[Result] = []
            try:
                batch.extend(self.queue.get(timeout=0.5))
                # Under load, one transaction per BATCH_WINDOW for whatever arrived (at 500
                # checks/s, one per result was ~400 commits a second); after a quiet spell
                # the first result goes through at once, so a failure waits for nothing.
                gather_until = self._last_batch + BATCH_WINDOW
                while len(batch) < 2000:
                    left = gather_until - time.monotonic()
                    batch.extend(
                        self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
                    )
            except queue.Empty:
                pass
            if batch:
                self._last_batch = time.monotonic()
            try:
                if batch:
                    self.engine.process(batch)
                self.apply_requests()
                now = time.monotonic()
                if now - self._last_tick >= TICK_EVERY:
                    self._last_tick = now
                    self.engine.tick()
                if now - self._last_compact >= COMPACT_EVERY:
                    self._last_compact = now
                    h = self.config().model.history
                    self.store.compact(datetime.now(UTC), raw=h.raw, hourly=h.hourly, daily=h.daily)
            except StateWriteError:
                pass  # the store reports a state file it cannot write, once a minute
            except Exception:  # a bad batch must not stop incident tracking for good
                log.exception("engine error")

    def apply_requests(self) -> None:
        apply_requests(self.engine, self.store)


def apply_requests(engine: Engine, store: Store) -> None:
    """Carries out ack and resolve requests queued by the CLI."""
    for request in store.pending_requests():
        incident_id, by, note = request["incident_id"], request["requested_by"], request["note"]
        stored = store.incident(incident_id)
        if stored is not None and not engine.mine(stored):
            continue  # another cluster member decides for it, and applies it
        if request["kind"] == "ack":
            incident = engine.acknowledge(incident_id, by=by, source="cli")
        elif request["kind"] == "resolve":
            incident = engine.resolve(incident_id, by=by, note=note)
        else:
            incident = None
        outcome = f"{incident.state}" if incident else "no such incident"
        store.finish_request(request["id"], outcome, engine.clock())


class App:
    def __init__(
        self,
        config_path: str | Path,
        *,
        config: Config | None = None,
        node: str | None = None,
        listen: str | None = None,
    ) -> None:
        tune_malloc()  # before the threads that would each take an arena
        self.config_path = Path(config_path)
        self.config = config or load_config(self.config_path)
        self.listen = listen or self.config.model.listen
        self.node_name = node
        self.cluster: ClusterNode | None = None
        # What the header tells is refused before a lock file appears beside the file;
        # the store reads the rest under the lock, and a refusal takes the lock file away.
        self._lock_fds: tuple[int, int] | None = None
        if self.config.state_is_database:
            # On PostgreSQL every watcher of the config is a cluster member: each holds
            # the run lock shared, and the cluster's leases share the work.
            self.store = Store(self.config.state_location)
            try:
                self.store.acquire_run_lock(shared=True)
            except BaseException:
                self.store.close()
                raise
        else:
            check_state_file(self.config.state_path, SCHEMA_VERSION, contents=False)
            self._lock_fds = acquire_run_lock(self.config.state_path)
            try:
                self.store = Store(self.config.state_path)
            except BaseException:
                release_run_lock(self._lock_fds, self.config.state_path)
                raise
        self.metrics = Metrics()
        self.http = HttpClients()
        self.runners = Runners(self.config.model, base_dir=self.config.base_dir)
        self.services: dict[str, Any] = {}
        self.dispatcher = Dispatcher(
            self.store, build_integrations(self.config, self.http), self.metrics
        )
        self.engine = Engine(
            self.config,
            self.store,
            on_enqueue=self.dispatcher.wake,
            on_hold=self.dispatcher.search_ahead,
        )
        self.sink = ResultSink(self.engine, self.store, lambda: self.config)
        self.services["previous_results"] = lambda target, probe: [
            r for r in self.store.latest(target) if r.probe == probe
        ]
        self.checkins = attach_checkins(
            self.config,
            self.store,
            clock=lambda: self.engine.clock(),
            on_results=self.sink.put,
            add_ticker=self.engine.add_ticker,
        )
        self.audits = AuditScheduler(self.store, lambda: self.config, http=self.http)
        self.poller = HelpdeskPoller(
            self.engine, self.store, build_integrations(self.config, self.http)
        )
        if self.store.is_postgres:
            self._join_cluster()
        self.scheduler = self._scheduler(self.config)
        self.metrics.watch_results(self._own_latest, lambda: self.config.model)
        self.metrics.watch_state(
            self.engine.incident_counts, self.store.outbox_counts, self.engine.held_counts
        )
        self.metrics.watch_state_file(
            lambda: self.store.writable, lambda: self.store.write_failures
        )
        self.web: WebServer | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.started_at = datetime.now(UTC)

    def _scheduler(self, config: Config) -> Scheduler:
        cluster = self.cluster
        return Scheduler(
            build_jobs(config, self.http, self.runners, self.services),
            workers=config.model.workers,
            on_results=self.sink.put,
            metrics=self.metrics,
            jitter=config.model.defaults.jitter,
            owns=(lambda job: cluster.owns(job.target.name)) if cluster else None,
        )

    def _join_cluster(self) -> None:
        """Makes this watcher a member of the site's cluster (PostgreSQL state): its
        checks, incidents and deliveries are fenced by its lease (watcher/cluster)."""
        node = ClusterNode(
            self.store,
            self.node_name or default_node_name(),
            self.config.model.cluster.lease.total_seconds(),
            listen=self.listen,
            on_change=lambda: self.engine.reload(),
            on_beat=self._follow_others,
        )
        self.cluster = node
        self.engine.owns = node.owns
        self.engine.owns_outages = lambda: node.owns(OUTAGE_KEY)
        self.engine.pin = node.pin
        self.poller.leads = lambda: node.is_leader
        self.audits.leads = lambda: node.is_leader
        self.store.fence = node.fence
        self.store.claim = node.claim
        self.store.holds = node.holds
        node.start()
        self.metrics.registry.register(
            ClusterCollector(node, lambda: [t.name for t in self.config.model.targets])
        )
        self.deadman = DeadMansSwitch(node, lambda: self.config.model.dead_mans_switch)

    def _follow_others(self) -> None:
        """At each renewal: what the other members decided and heard (incidents, latest
        results, check-ins taken by any member) is read again, for the whole site's view
        and for parents, outages and check-ins judged here."""
        self.engine.reload(others_only=True)
        self.checkins.forget_cached()

    def _own_latest(self) -> list[Result]:
        """The latest results /metrics exports: in a cluster, those of the checks this
        member runs (each member's scrape is its own share; together the site)."""
        if self.cluster is None:
            return self.engine.latest()
        return [r for r in self.engine.latest() if self.cluster.owns(r.target)]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        m = self.config.model
        if self.listen:
            self.web = WebServer(self.listen, api_token=m.api_token)
            self._routes(self.web)
            self.web.start()
        self.dispatcher.start()
        self.sink.start()
        self.audits.start()
        self.poller.start()
        self.scheduler.start()
        if self.cluster is not None:
            self.deadman.start()
        log.info(
            "watcher %s started for site %s: %d targets, %d checks, tickets via %s, paging via %s",
            __version__,
            m.site,
            len(m.targets),
            len(self.scheduler.jobs),
            ", ".join(self.engine.routes["tickets"]) or "the built-in incident list",
            ", ".join(self.engine.routes["paging"]) or "nothing",
        )

    def run(self) -> int:
        """Runs until SIGTERM or SIGINT; SIGHUP reloads the config."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        self.start()
        while not self._stop.is_set():
            self._stop.wait(0.5)
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        self.shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Stops within SHUTDOWN_BUDGET whatever checks and deliveries are doing: running
        checks are cut (their results dropped), deliveries in flight get a moment and are
        then cut too (what was not delivered stays in the outbox for the next start)."""
        log.info("stopping: cutting running checks, finishing deliveries in flight")
        end = time.monotonic() + SHUTDOWN_BUDGET

        def left(at_most: float) -> float:
            return max(0.1, min(at_most, end - time.monotonic()))

        self.scheduler.stop(wait_for_probes=True, timeout=left(1.0))
        self.audits.stop(timeout=left(0.5))
        self.sink.stop(timeout=left(1.0))
        self.poller.stop(timeout=left(0.5))
        self.dispatcher.stop(timeout=left(2.0))
        if self.cluster is not None:
            self.deadman.stop()
            self.cluster.stop()
        if self.web:
            self.web.stop()
        self.runners.close()
        self.store.close()
        if self._lock_fds is not None:
            release_run_lock(self._lock_fds)
        log.info("stopped")

    def reload(self) -> bool:
        """Loads the config again; an invalid one is refused and the old one keeps running."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config:\n%s", exc)
            self.metrics.config_reloads.labels("refused").inc()
            return False
        except Exception:  # a loader bug must not take the running daemon down with it
            log.exception("config reload failed, keeping the running config")
            self.metrics.config_reloads.labels("refused").inc()
            return False
        if (
            new.state_location != self.config.state_location
            or new.model.listen != self.config.model.listen
        ):
            log.warning("state: and listen: changes take effect at the next restart")
        old_scheduler = self.scheduler
        old_scheduler.stop(wait_for_probes=False, cut=False)
        old_dispatcher = self.dispatcher
        old_dispatcher.stop()
        self.runners.close()
        self.runners = Runners(new.model, base_dir=new.base_dir)
        self.config = new
        self.dispatcher = Dispatcher(self.store, build_integrations(new, self.http), self.metrics)
        self.engine.on_enqueue = self.dispatcher.wake
        self.engine.on_hold = self.dispatcher.search_ahead
        self.engine.configure(new)
        self.checkins.configure(new)
        self.scheduler = self._scheduler(new)
        self.dispatcher.start()
        self.poller.replace(build_integrations(new, self.http))
        self.poller.start()
        self.scheduler.start()
        self.metrics.config_reloads.labels("ok").inc()
        log.info(
            "config reloaded: %d targets, %d checks",
            len(new.model.targets),
            len(self.scheduler.jobs),
        )
        return True

    @property
    def healthy(self) -> tuple[bool, str]:
        if not self.scheduler.alive:
            return False, "scheduler stalled"
        if not self.sink.alive:
            return False, "engine stalled"
        if not self.store.writable:
            return False, f"state file cannot be written: {self.store.write_problem}"
        return True, "ok"

    # --------------------------------------------------------------------- routes

    def _routes(self, web: WebServer) -> None:
        DaemonApi(self).routes(web)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
