"""Runs every (target, probe) at its interval on a bounded pool of worker threads.

The timetable is a heap of (due, job) on the monotonic clock: finding what is due costs
O(log n) per check, whatever the number of checks (scanning every job, as the ``schedule``
library does, cost about 16 ms per loop at 30,000 checks). Turns keep a fixed rate (each
is one interval after the previous one was due, not after it ran), so a busy moment does
not shift a check's phase for good, and results are stamped with the time their turn was
due. Lag is measured from then to the moment a worker starts the check. A job whose previous run is still
going is skipped, not started twice. Each run has a ``Deadline`` of its timeout that shuts
its sockets down when it passes, so no peer can hold a worker; a run that still overruns
its hard timeout (a probe stuck elsewhere) is reported as an ``error`` result by the
watchdog, and again at each turn it keeps from starting (its late result, if it ever
comes, is dropped). Stopping cancels the running checks' deadlines and waits for them a
bounded time; workers are daemon threads, so nothing stuck keeps the process alive.

A check whose latest result is not ok is rechecked every ``retry_interval`` (spread by
+-20 % so checks that failed together do not recheck together) instead of at its next
turn, until a result is ok; then its turns come back on their old phase. A recheck is a
turn like any other (stamped with its own due time), so holds written as durations still
mean wall time and holds written as counts count rechecks too. While every worker is busy
no recheck is added: rechecks never crowd out the regular turns. ``workers="auto"`` sizes
the pool every few seconds from the checks' demanded rate and measured mean run time.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from probes.base import Probe, ProbeContext, Result, item_labels, run_probe
from watcher.schedule.deadline import Deadline
from watcher.schedule.workers import AUTO_MIN, DaemonPool, auto_workers

if TYPE_CHECKING:
    from watcher.config.models import ProbeSpec, Target
    from watcher.web.metrics import Metrics

__all__ = ["Job", "Scheduler", "HARD_TIMEOUT_GRACE"]

log = logging.getLogger("watcher.scheduler")

# A probe gets its own timeout for the work; past this much more, the watchdog speaks.
HARD_TIMEOUT_GRACE = 2.0
# The longest the loop sleeps: how soon it notices a stop, and how often the watchdog looks.
MAX_SLEEP = 0.25
# How often ``workers: auto`` re-sizes the pool, and the size it starts at before any check
# was timed.
RESIZE_EVERY = 5.0
AUTO_START = AUTO_MIN
# Rechecks come this much earlier or later at random around their retry interval.
RETRY_SPREAD = 0.2


@dataclass(eq=False, slots=True)
class Job:
    target: Target
    spec: ProbeSpec
    probe: Probe
    ctx: ProbeContext
    interval: float
    timeout: float
    retry_interval: float | None = None  # seconds between rechecks while failing
    running: bool = False
    started: float = 0.0  # monotonic time a worker took it; 0 while it waits for one
    run_number: int = 0
    overran: int = -1  # the run_number the watchdog reported, so its late result is dropped
    due: float = 0.0  # monotonic time of its next turn (a recheck's, when failing)
    regular: float = 0.0  # its next turn on its interval's phase
    failing: bool = False  # its latest result was not ok
    deadline: Deadline | None = None  # of the run going now, so stopping can cut it

    @property
    def name(self) -> str:
        return f"{self.target.name}/{self.spec.id}"


class Scheduler:
    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        workers: int | str,
        on_results: Callable[[list[Result]], None],
        metrics: Metrics,
        jitter: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        owns: Callable[[Job], bool] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        # In a cluster: whether this member runs a job now (its share moves with members).
        self.owns: Callable[[Job], bool] = owns or (lambda _job: True)
        self.on_results = on_results
        self.metrics = metrics
        self.jitter = jitter
        self.clock = clock
        self.auto = workers == "auto"
        self._pool = DaemonPool(AUTO_START if isinstance(workers, str) else workers, name="probe")
        self._rechecks: list[Job] = []  # pulled earlier by a worker, for the loop to queue
        self._busy_s = 0.0  # run time and runs of finished checks, decayed at each resize
        self._finished = 0.0
        metrics.scheduler_workers.set(self._pool.workers)
        self._timetable: list[tuple[float, int, Job]] = []
        self._running: set[Job] = set()
        self._stop = threading.Event()
        self._cut = threading.Event()  # running checks are being cut: their results dropped
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_loop = time.monotonic()

    # ------------------------------------------------------------------- running

    def start(self) -> None:
        now = time.monotonic()
        for number, job in enumerate(self.jobs):
            # Spread first runs over one interval so checks do not all fire together.
            job.due = now + (random.uniform(0, job.interval) if self.jitter else 0.0)
            job.regular = job.due
            self._timetable.append((job.due, number, job))
        heapq.heapify(self._timetable)
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, wait_for_probes: bool = True, timeout: float = 2.0, *, cut: bool = True) -> None:
        """Stops the timetable. ``cut``: the checks running now are cut at once and their
        results dropped (a stopping watcher reports no failures of its own making); else
        they finish and report (a reload). Waits up to ``timeout`` for the workers if
        ``wait_for_probes``."""
        if cut:
            self._cut.set()
        self._stop.set()
        if self._thread:
            self._thread.join(min(5.0, timeout))
        if cut:
            with self._lock:
                running = [job.deadline for job in self._running if job.deadline is not None]
            for deadline in running:
                deadline.cancel()
        ended = self._pool.shutdown(wait=wait_for_probes, cancel_futures=True, timeout=timeout)
        if wait_for_probes and not ended:
            log.warning("checks still running %.1fs after the stop were left behind", timeout)
        for job in self.jobs:
            job.probe.close()

    @property
    def alive(self) -> bool:
        return (
            bool(self._thread and self._thread.is_alive())
            and time.monotonic() - self.last_loop < 30
        )

    def first_runs(self) -> list[float]:
        """Seconds until each check whose first run has not finished reports (0 while it
        runs). First runs are spread over an interval, so a fresh start would otherwise show
        an empty page for a while without saying why."""
        now = time.monotonic()
        with self._lock:
            return [
                0.0 if job.running else max(0.0, job.due - now)
                for job in self.jobs
                if job.run_number == 0 or (job.run_number == 1 and job.running)
            ]

    def _loop(self) -> None:
        timetable = self._timetable
        next_watchdog = 0.0
        next_resize = time.monotonic() + RESIZE_EVERY
        numbers = {id(job): number for number, job in enumerate(self.jobs)}
        while not self._stop.is_set():
            now = time.monotonic()
            self.last_loop = now
            try:
                with self._lock:
                    for job in self._rechecks:
                        heapq.heappush(timetable, (job.due, numbers[id(job)], job))
                    self._rechecks.clear()
                while timetable and timetable[0][0] <= now:
                    due, number, job = heapq.heappop(timetable)
                    with self._lock:
                        if due != job.due:
                            continue  # superseded: a recheck moved this job's turn
                        if job.regular <= now:
                            job.regular = _next_turn(job.regular, job.interval, now)
                        job.due = job.regular
                        heapq.heappush(timetable, (job.due, number, job))
                    self._due(job, due)
                if now >= next_watchdog:
                    next_watchdog = now + MAX_SLEEP
                    self._watchdog(now)
                if self.auto and now >= next_resize:
                    next_resize = now + RESIZE_EVERY
                    self._resize()
            except Exception:  # the timetable must keep running whatever one job does
                log.exception("scheduler loop error")
            idle = timetable[0][0] - time.monotonic() if timetable else MAX_SLEEP
            if idle > 0:
                self._stop.wait(min(idle, MAX_SLEEP))

    def _due(self, job: Job, due: float) -> None:
        if not self.owns(job):
            return  # another cluster member runs it
        with self._lock:
            if job.running and job.failing and job.overran != job.run_number:
                return  # a recheck still running sets this job's next turn when it ends
            if job.running:
                self.metrics.scheduler_skipped.inc()
                log.warning(
                    "%s is still %s from its last turn; skipped this one",
                    job.name,
                    "running" if job.started else "waiting for a worker",
                )
                if job.overran == job.run_number:
                    # Each turn a run past its hard timeout keeps from starting says so: the
                    # rules that hold on errors (probe-error: for 15m) need more than one.
                    self.on_results(self._overran_results(job, time.monotonic() - job.started))
                return
            job.running = True
            job.started = 0.0  # set when a worker takes it: waiting in line is not overrunning
            job.run_number += 1
            self._running.add(job)
        self._pool.submit(self._run, job, job.run_number, due)

    def _run(self, job: Job, number: int, due: float) -> None:
        # The check's time starts when a worker takes it, not while it waits for one.
        deadline = Deadline(job.timeout)
        with self._lock:
            job.deadline = deadline
            job.started = time.monotonic()
        if self._cut.is_set():
            deadline.cancel()  # the stop may have looked for running checks just before
        # Lag is counted to the moment the check really starts, waiting for a worker included.
        lag = max(0.0, time.monotonic() - due)
        self.metrics.scheduler_lag.observe(lag)
        # Stamped with the time its turn was due: turns are whole intervals apart, so a hold
        # (for: 2m at 60 s) is met by the check that comes two minutes later, not one later
        # still whenever that check started a millisecond earlier against its turn than the first.
        stamp = self.clock() - timedelta(seconds=lag)
        started = time.monotonic()
        results: list[Result] = []
        try:
            results = run_probe(
                job.probe, job.ctx, job.spec.id, clock=lambda: stamp, deadline=deadline
            )
        finally:
            with self._lock:
                job.running = False
                job.deadline = None
                self._running.discard(job)
                late = job.overran == number
                self._busy_s += time.monotonic() - started
                self._finished += 1
                if not late and not self._cut.is_set():
                    self._retime(job, due, any(r.status != "ok" for r in results))
        if self._cut.is_set():
            return  # cut by the stop: a watcher that stops reports no failures of its own
        if late:
            log.info(
                "%s finished after its hard timeout; its result was already reported", job.name
            )
            return
        for r in results:
            self.metrics.probe_runs.labels(r.kind, r.status).inc()
        self.on_results(results)

    def _retime(self, job: Job, due: float, failing: bool) -> None:
        """After a run (under the lock): a failing job's next turn is pulled to a recheck."""
        job.failing = failing
        retry = job.retry_interval
        if not failing or not retry or retry >= job.interval:
            return
        if len(self._running) >= self._pool.workers:
            return  # every worker is busy: the regular turns come first
        # spread whatever ``jitter`` says: checks that failed together must not recheck together
        spread = random.uniform(1 - RETRY_SPREAD, 1 + RETRY_SPREAD)
        at = max(due + retry * spread, time.monotonic())
        if at < job.due:
            job.due = at
            self._rechecks.append(job)

    def demand(self) -> float:
        """Checks a second the timetable asks for: each job's interval, or its retry
        interval while failing."""
        rate = 0.0
        for job in self.jobs:
            every = job.interval
            if job.failing and job.retry_interval and job.retry_interval < every:
                every = job.retry_interval
            rate += 1 / max(every, 0.001)
        return rate

    def _resize(self) -> None:
        with self._lock:
            busy, finished = self._busy_s, self._finished
            # halve the past at each look: the mean follows a change within a few looks
            self._busy_s, self._finished = busy / 2, finished / 2
        if finished < 1:
            return  # nothing timed yet
        workers = auto_workers(self.demand(), busy / finished)
        current = self._pool.workers
        # grow at once, shrink only by a quarter or more: the size does not wobble with noise
        if workers > current or workers <= current * 0.75:
            log.debug("workers: auto sized the pool from %d to %d", current, workers)
            self._pool.resize(workers)
            self.metrics.scheduler_workers.set(workers)

    @property
    def workers(self) -> int:
        """The pool's size now."""
        return self._pool.workers

    def _watchdog(self, now: float) -> None:
        overdue = []
        with self._lock:
            for job in self._running:
                if (
                    job.running
                    and job.started
                    and job.overran != job.run_number
                    and now - job.started > job.timeout + HARD_TIMEOUT_GRACE
                ):
                    job.overran = job.run_number
                    overdue.append(job)
        for job in overdue:
            self.metrics.scheduler_timeouts.inc()
            log.error("%s ran past its hard timeout of %.0fs", job.name, job.timeout)
            self.on_results(self._overran_results(job, now - job.started))

    def _overran_results(self, job: Job, elapsed: float) -> list[Result]:
        at = self.clock()
        return [
            Result(
                target=job.target.name,
                probe=job.spec.id,
                kind=job.spec.kind,
                status="error",
                message=f"check did not finish within its timeout of {job.timeout:.0f}s (still running after {elapsed:.0f}s)",
                metrics={},
                labels=labels,
                evidence="",
                duration_s=elapsed,
                at=at,
                reason="timeout",
            )
            for labels in item_labels(job.probe)  # one per item, as its results are keyed
        ]

    # ------------------------------------------------------------------ one round

    def run_round(self, jobs: Sequence[Job] | None = None) -> list[Result]:
        """Runs every job once, now, in the pool; returns all results (for ``watcher once``)."""
        chosen = list(jobs if jobs is not None else self.jobs)
        futures = {
            self._pool.submit(run_probe, j.probe, j.ctx, j.spec.id, clock=self.clock): j
            for j in chosen
        }
        longest = max((j.timeout for j in chosen), default=0) + HARD_TIMEOUT_GRACE
        done, not_done = wait(futures, timeout=longest)
        results: list[Result] = []
        for future, job in futures.items():
            if future in done:
                results.extend(future.result())
            else:
                results.extend(self._overran_results(job, longest))
        return results


def _next_turn(due: float, interval: float, now: float) -> float:
    """One interval after ``due``; turns already missed entirely are skipped, keeping the phase."""
    interval = max(interval, 0.001)
    following = due + interval
    if following > now:
        return following
    return due + interval * math.ceil((now - due) / interval + 1e-9)
