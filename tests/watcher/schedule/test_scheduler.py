"""The scheduler: intervals, no double starts, a watchdog for runs that never end."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import watcher.schedule.scheduler
from probes.base import Outcome, Probe, ProbeConfig, ProbeContext, Result
from tests.support.helpers import config_from
from watcher.delivery.httpclient import HttpClients
from watcher.schedule.scheduler import Job, Scheduler
from watcher.web.metrics import Metrics


class Stuck(Probe):
    """Ignores its timeout until released, like a probe wedged in a C call."""

    kind = "command"

    def __init__(self) -> None:
        super().__init__(ProbeConfig())
        self.release = threading.Event()
        self.calls = 0

    def check(self, ctx: ProbeContext) -> Outcome:
        self.calls += 1
        self.release.wait(30)
        return Outcome.ok("finally")


class Crashing(Probe):
    kind = "command"

    def check(self, ctx: ProbeContext) -> Outcome:
        raise ZeroDivisionError("a bug inside the probe")


def _job(tmp_path: Path, probe: Probe, *, interval: float, timeout: float) -> Job:
    config = config_from(
        tmp_path, "site: acme\ntargets: [{name: t, probes: [{command: {run: [/bin/true]}}]}]\n"
    )
    target = config.model.targets[0]
    spec = target.probe_specs()[0]
    ctx = ProbeContext(
        site="acme", target="t", host=None, labels={}, timeout=timeout, http=HttpClients()
    )
    return Job(target, spec, probe, ctx, interval, timeout)


def _wait(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    assert predicate()


def test_a_run_past_its_turn_is_not_started_twice_and_the_watchdog_reports_it(
    tmp_path: Path,
) -> None:
    probe = Stuck()
    results: list[Result] = []
    metrics = Metrics()
    scheduler = Scheduler(
        [_job(tmp_path, probe, interval=0.2, timeout=0.5)],
        workers=4,
        on_results=results.extend,
        metrics=metrics,
        jitter=False,
    )
    scheduler.start()
    try:
        _wait(lambda: results, timeout=20)
        assert (
            results[0].status == "error"
            and "did not finish within its timeout" in results[0].message
        )
        _wait(lambda: metrics.scheduler_skipped._value.get() >= 3)
        assert probe.calls == 1
        probe.release.set()
        _wait(lambda: probe.calls >= 2)  # free again: it runs at its next turn
    finally:
        probe.release.set()
        scheduler.stop()
    late = [r for r in results if r.message == "finally"]
    assert len(late) <= len(results) - 1  # the first, overdue run's late result was dropped


def test_a_crashing_probe_becomes_an_error_result_and_the_scheduler_goes_on(tmp_path: Path) -> None:
    results: list[Result] = []
    scheduler = Scheduler(
        [_job(tmp_path, Crashing(ProbeConfig()), interval=0.1, timeout=1)],
        workers=2,
        on_results=results.extend,
        metrics=Metrics(),
        jitter=False,
    )
    scheduler.start()
    try:
        _wait(lambda: len(results) >= 3)
    finally:
        scheduler.stop()
    assert all(r.status == "error" and "ZeroDivisionError" in r.message for r in results)


def test_run_round_reports_every_check_even_one_that_hangs(tmp_path: Path) -> None:
    stuck = Stuck()
    scheduler = Scheduler(
        [_job(tmp_path, stuck, interval=60, timeout=0.2)],
        workers=2,
        on_results=lambda r: None,
        metrics=Metrics(),
    )
    try:
        [result] = scheduler.run_round()
    finally:
        stuck.release.set()
        scheduler.stop(wait_for_probes=False)
    assert result.status == "error" and result.reason == "timeout"


class Quick(Probe):
    kind = "command"

    def __init__(self, busy: float = 0.0) -> None:
        super().__init__(ProbeConfig())
        self.busy = busy
        self.runs = 0

    def check(self, ctx: ProbeContext) -> Outcome:
        self.runs += 1
        time.sleep(self.busy * (self.runs % 3))  # 0, 1 or 2 times busy: a varying lag for the other
        return Outcome.ok("fine")


def test_results_are_stamped_with_the_time_their_turn_was_due(tmp_path: Path) -> None:
    # So a hold of for: 2m at 60 s is met by the third check whatever each one's lag. One
    # worker and a probe that takes 0-60 ms due at the same moment give the other a lag
    # that varies by tens of ms; its stamps stay whole turns apart.
    results: list[Result] = []
    slow, quick = (
        _job(tmp_path, Quick(busy=0.03), interval=0.2, timeout=1),
        _job(tmp_path, Quick(), interval=0.2, timeout=1),
    )
    quick.ctx = ProbeContext(
        site="acme", target="quick", host=None, labels={}, timeout=1, http=HttpClients()
    )
    scheduler = Scheduler(
        [slow, quick], workers=1, on_results=results.extend, metrics=Metrics(), jitter=False
    )
    scheduler.start()
    try:
        _wait(lambda: sum(r.target == "quick" for r in results) >= 7)
    finally:
        scheduler.stop()
    stamps = [r.at for r in results if r.target == "quick"]
    for earlier, later in zip(stamps, stamps[1:], strict=False):
        turns = (later - earlier).total_seconds() / 0.2
        assert round(turns) >= 1 and abs(turns - round(turns)) < 0.01  # whole turns apart


def test_a_check_stuck_past_its_hard_timeout_reports_an_error_at_each_turn_it_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rule's hold (probe-error: for 15m) needs a result at every turn; one report and
    # then silence would leave the watcher blind to this check for good.
    monkeypatch.setattr(watcher.schedule.scheduler, "HARD_TIMEOUT_GRACE", 0.1)
    probe = Stuck()
    results: list[Result] = []
    scheduler = Scheduler(
        [_job(tmp_path, probe, interval=0.2, timeout=0.2)],
        workers=2,
        on_results=results.extend,
        metrics=Metrics(),
        jitter=False,
    )
    scheduler.start()
    try:
        _wait(lambda: len(results) >= 3)
    finally:
        probe.release.set()
        scheduler.stop()
    assert probe.calls == 1
    stuck = results[:3]
    assert all(r.status == "error" and r.reason == "timeout" for r in stuck)
    assert stuck[0].at < stuck[1].at < stuck[2].at


class TimeLeft(Probe):
    """Notes how much of its check's time it was given when it started."""

    kind = "command"

    def __init__(self) -> None:
        super().__init__(ProbeConfig())
        self.seen: list[float] = []

    def check(self, ctx: ProbeContext) -> Outcome:
        self.seen.append(ctx.time_left())
        return Outcome.ok()


def test_a_check_waiting_for_a_worker_keeps_its_whole_timeout(tmp_path: Path) -> None:
    busy, waiting = Stuck(), TimeLeft()
    scheduler = Scheduler(
        [
            _job(tmp_path, busy, interval=60, timeout=30),
            _job(tmp_path, waiting, interval=60, timeout=5),
        ],
        workers=1,
        on_results=lambda r: None,
        metrics=Metrics(),
        jitter=False,
    )
    scheduler.start()
    try:
        _wait(lambda: busy.calls == 1)
        time.sleep(1.5)  # the second check waits this long for the only worker
        busy.release.set()
        _wait(lambda: waiting.seen)
        assert waiting.seen[0] > 4.5
    finally:
        scheduler.stop()


def test_a_check_waiting_for_a_worker_is_not_reported_as_past_its_timeout(
    tmp_path: Path,
) -> None:
    # Under a backlog, a healthy check that only waited in the queue was reported as an
    # error ("did not finish within its timeout") and its real result was dropped.
    results: list[Result] = []
    busy, waiting = Stuck(), TimeLeft()
    scheduler = Scheduler(
        [
            _job(tmp_path, busy, interval=60, timeout=30),
            _job(tmp_path, waiting, interval=60, timeout=1),
        ],
        workers=1,
        on_results=results.extend,
        metrics=Metrics(),
        jitter=False,
    )
    scheduler.start()
    try:
        _wait(lambda: busy.calls == 1)
        # its timeout passes in line
        time.sleep(1 + watcher.schedule.scheduler.HARD_TIMEOUT_GRACE + 1.5)
        busy.release.set()
        _wait(lambda: waiting.seen and len(results) >= 2)
        assert [r.status for r in results] == ["ok", "ok"], [r.message for r in results]
    finally:
        scheduler.stop()


def test_stopping_cuts_a_running_check_and_drops_its_result(tmp_path: Path) -> None:
    results: list[Result] = []
    running = threading.Event()

    class Cuttable(Probe):
        kind = "command"

        def check(self, ctx: ProbeContext) -> Outcome:
            assert ctx.deadline is not None
            running.set()
            cut = threading.Event()
            ctx.deadline.on_expiry(cut.set)
            cut.wait(30)
            return Outcome.fail("cut short")

    scheduler = Scheduler(
        [_job(tmp_path, Cuttable(ProbeConfig()), interval=60, timeout=30)],
        workers=2,
        on_results=results.extend,
        metrics=Metrics(),
        jitter=False,
    )
    scheduler.start()
    assert running.wait(20)
    started = time.monotonic()
    scheduler.stop(timeout=5)
    assert time.monotonic() - started < 3
    assert results == []


def test_the_scheduler_says_how_soon_checks_not_yet_run_first_report(tmp_path: Path) -> None:
    stuck = Stuck()
    results: list[Result] = []
    scheduler = Scheduler(
        [
            _job(tmp_path, stuck, interval=60, timeout=30),
            _job(tmp_path, Crashing(ProbeConfig()), interval=0.1, timeout=1),
        ],
        workers=2,
        on_results=results.extend,
        metrics=Metrics(),
    )
    assert len(scheduler.first_runs()) == 2
    scheduler.start()
    try:
        waiting = scheduler.first_runs()
        assert len(waiting) == 2 and all(0 <= s <= 60 for s in waiting)
        _wait(lambda: results)  # the quick one has reported; the stuck one has not
        assert len(scheduler.first_runs()) == 1
    finally:
        stuck.release.set()
        scheduler.stop()
