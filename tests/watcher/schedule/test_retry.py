"""Rechecks: a failing check comes back after ``retry_interval``, not a whole interval,
holds written as durations still wait their wall time, and a recovered check returns to
its interval. Real HTTP server, real probe, scheduler, engine and store; real time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from probes.base import Result
from tests.servers.httpd import HTTPTestServer
from tests.support.helpers import config_from
from watcher.app.daemon import build_jobs
from watcher.app.pipeline import Engine
from watcher.config.models import ConfigError
from watcher.delivery.httpclient import HttpClients
from watcher.schedule.scheduler import Scheduler
from watcher.store import Store
from watcher.transports import Runners
from watcher.web.metrics import Metrics


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_failing_check_is_rechecked_soon_holds_keep_wall_time_and_recovery_restores_the_interval(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_response("/", status=503, body="down")
    config = config_from(
        tmp_path,
        f"""
        site: acme
        state: {tmp_path}/state.db
        listen: null
        rules: [default, site.yml]
        defaults: {{interval: 60s, retry_interval: 5s}}
        targets:
          - name: web
            probes: [{{http: {{url: "{http_server.url}/"}}}}]
        """,
        extra={
            "site.yml": """
            rules:
              - {name: web-down-fast, probe: http, when: failed, for: 20s, priority: P3}
            """
        },
    )
    store = Store(config.state_path)
    engine = Engine(config, store)
    results: list[Result] = []
    lock = threading.Lock()

    def take(batch: list[Result]) -> None:
        with lock:  # the engine is fed from one thread at a time, as the daemon's sink does
            results.extend(batch)
            engine.process(batch)

    runners = Runners(config.model)
    scheduler = Scheduler(
        build_jobs(config, HttpClients(), runners),
        workers=4,
        on_results=take,
        metrics=Metrics(),
        jitter=False,  # the first check runs at once; rechecks are still spread
    )
    scheduler.start()
    try:
        _wait(lambda: len(results) >= 2, 30, "the first failure and its recheck")
        first, second = results[0], results[1]
        assert first.status == "fail" and second.status == "fail"
        gap = (second.at - first.at).total_seconds()
        assert 3.0 <= gap <= 15.0, gap  # about 5 s, not the 60 s interval

        with lock:
            [incident] = store.incidents(limit=10)
        assert incident.opened_at is None  # held: 5 s of failures are not 20 s
        opened = _wait(
            lambda: next((i for i in store.incidents(limit=10) if i.opened_at is not None), None),
            60,
            "the incident to open",
        )
        held = (opened.opened_at - first.at).total_seconds()
        assert held >= 20.0 - 0.01, held  # rechecks every 5 s do not shorten for: 20s
        assert held <= 40.0, held

        http_server.set_response("/", status=200, body="fine")
        recovered = _wait(
            lambda: next((r for r in list(results) if r.status == "ok"), None),
            30,
            "a recheck to see the recovery",
        )
        count_at_recovery = len(results)
        # Back on its interval's phase: nothing until the turn 60 s after the first check.
        _wait(lambda: len(results) > count_at_recovery, 75, "the next regular turn")
        following = results[count_at_recovery]
        assert following.status == "ok"
        since_recovery = (following.at - recovered.at).total_seconds()
        assert since_recovery >= 15.0, since_recovery  # not another 5 s recheck
        phase = (following.at - first.at).total_seconds()
        assert abs(phase - 60.0) <= 5.0, phase  # the regular turn, on its old phase
    finally:
        scheduler.stop()
        runners.close()
        store.close()
    assert incident.target == "web"


def test_retry_interval_comes_from_the_probe_the_target_or_defaults_and_0s_turns_it_off(
    tmp_path: Path,
) -> None:
    config = config_from(
        tmp_path,
        """
        site: acme
        listen: null
        defaults: {retry_interval: 7s}
        targets:
          - {name: a, retry_interval: 0s, probes: [{http: {url: "http://127.0.0.1:9/"}}]}
          - name: b
            probes:
              - {http: {url: "http://127.0.0.1:9/", retry_interval: 3s}}
              - {tcp: {port: 9}}
              - {du: {paths: [/tmp]}}
          - {name: c, retry_interval: 1h, probes: [{du: {paths: [/tmp]}}]}
        """,
    )
    runners = Runners(config.model)
    try:
        jobs = {j.name: j.retry_interval for j in build_jobs(config, HttpClients(), runners)}
    finally:
        runners.close()
    assert jobs == {
        "a/http": None,  # 0s: no rechecks on this target
        "b/http": 3.0,  # the probe's own
        "b/tcp": 7.0,  # defaults
        "b/du": None,  # a daily walk of whole trees is not rechecked unless asked to
        "c/du": 3600.0,
    }


def test_a_retry_interval_under_the_shortest_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from(tmp_path, "site: acme\ndefaults: {retry_interval: 10ms}\n")
    assert "retry_interval" in str(refused.value) and "the shortest is" in str(refused.value)
