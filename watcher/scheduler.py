"""Runs every (target, probe) at its interval on a bounded pool of worker threads.

``schedule`` keeps the timetable; a job whose previous run is still going is skipped,
not started twice; a run that overruns its hard timeout is reported as an ``error``
result by the watchdog (its late result, if it ever comes, is dropped).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import schedule

from probes.base import Probe, ProbeContext, Result, run_probe
from watcher.config import ProbeSpec, Target
from watcher.metrics import Metrics

__all__ = ["Job", "Scheduler", "HARD_TIMEOUT_GRACE"]

log = logging.getLogger("watcher.scheduler")

# A probe gets its own timeout for the work; past this much more, the watchdog speaks.
HARD_TIMEOUT_GRACE = 2.0


@dataclass(eq=False)
class Job:
    target: Target
    spec: ProbeSpec
    probe: Probe
    ctx: ProbeContext
    interval: float
    timeout: float
    running: bool = False
    started: float = 0.0
    run_number: int = 0
    overran: int = -1  # the run_number the watchdog reported, so its late result is dropped
    handle: schedule.Job | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.target.name}/{self.spec.id}"


class Scheduler:
    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        workers: int,
        on_results: Callable[[list[Result]], None],
        metrics: Metrics,
        jitter: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.jobs = list(jobs)
        self.on_results = on_results
        self.metrics = metrics
        self.jitter = jitter
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._timetable = schedule.Scheduler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_loop = time.monotonic()

    # ------------------------------------------------------------------- running

    def start(self) -> None:
        now = datetime.now()
        for job in self.jobs:
            job.handle = self._timetable.every(job.interval).seconds.do(self._due, job)
            # Spread first runs over one interval so checks do not all fire together.
            offset = random.uniform(0, job.interval) if self.jitter else 0.0
            job.handle.next_run = now + timedelta(seconds=offset)
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, wait_for_probes: bool = True) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._pool.shutdown(wait=wait_for_probes, cancel_futures=True)
        for job in self.jobs:
            job.probe.close()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive()) and time.monotonic() - self.last_loop < 30

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            try:
                self._timetable.run_pending()
                self._watchdog()
            except Exception:  # the timetable must keep running whatever one job does
                log.exception("scheduler loop error")
            idle = self._timetable.idle_seconds
            self._stop.wait(0.5 if idle is None else min(max(idle, 0.005), 0.5))

    def _due(self, job: Job) -> None:
        if job.handle is not None and job.handle.next_run is not None:
            lag = (datetime.now() - job.handle.next_run).total_seconds()
            self.metrics.scheduler_lag.observe(max(0.0, lag))
        with self._lock:
            if job.running:
                self.metrics.scheduler_skipped.inc()
                log.warning("%s is still running from its last turn; skipped this one", job.name)
                return
            job.running = True
            job.started = time.monotonic()
            job.run_number += 1
        self._pool.submit(self._run, job, job.run_number)

    def _run(self, job: Job, number: int) -> None:
        try:
            results = run_probe(job.probe, job.ctx, job.spec.id, clock=self.clock)
        finally:
            with self._lock:
                job.running = False
                late = job.overran == number
        if late:
            log.info("%s finished after its hard timeout; its result was already reported", job.name)
            return
        for r in results:
            self.metrics.probe_runs.labels(r.kind, r.status).inc()
        self.on_results(results)

    def _watchdog(self) -> None:
        now = time.monotonic()
        overdue = []
        with self._lock:
            for job in self.jobs:
                if job.running and job.overran != job.run_number and now - job.started > job.timeout + HARD_TIMEOUT_GRACE:
                    job.overran = job.run_number
                    overdue.append(job)
        for job in overdue:
            self.metrics.scheduler_timeouts.inc()
            log.error("%s ran past its hard timeout of %.0fs", job.name, job.timeout)
            self.on_results([self._overran_result(job, now - job.started)])

    def _overran_result(self, job: Job, elapsed: float) -> Result:
        return Result(
            target=job.target.name,
            probe=job.spec.id,
            kind=job.spec.kind,
            status="error",
            message=f"check did not finish within its timeout of {job.timeout:.0f}s (still running after {elapsed:.0f}s)",
            metrics={},
            labels={},
            evidence="",
            duration_s=elapsed,
            at=self.clock(),
            reason="timeout",
        )

    # ------------------------------------------------------------------ one round

    def run_round(self, jobs: Sequence[Job] | None = None) -> list[Result]:
        """Runs every job once, now, in the pool; returns all results (for ``watcher once``)."""
        chosen = list(jobs if jobs is not None else self.jobs)
        futures = {self._pool.submit(run_probe, j.probe, j.ctx, j.spec.id, clock=self.clock): j for j in chosen}
        longest = max((j.timeout for j in chosen), default=0) + HARD_TIMEOUT_GRACE
        done, not_done = wait(futures, timeout=longest)
        results: list[Result] = []
        for future, job in futures.items():
            if future in done:
                results.extend(future.result())
            else:
                results.append(self._overran_result(job, longest))
        return results
