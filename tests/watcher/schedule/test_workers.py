"""The probe pool: ``auto_workers`` sizing, resizing, and ``workers: auto`` keeping a
schedule of slow checks on time where a small fixed pool falls behind (real daemon)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.servers.base import free_port
from tests.servers.httpd import HTTPTestServer
from tests.support.daemon import Daemon
from tests.support.helpers import config_from
from watcher.config.models import ConfigError
from watcher.schedule.workers import AUTO_MAX, AUTO_MIN, DaemonPool, auto_workers


@pytest.mark.parametrize(
    ("rate", "mean", "expected"),
    [
        (100.0, 0.3, 60),  # 200 checks every 2 s at 300 ms: 30 at once, twice that
        (10.0, 0.01, AUTO_MIN),  # fast checks: the floor
        (0.0, 0.0, AUTO_MIN),  # nothing timed
        (500.0, 10.0, AUTO_MAX),  # timeouts everywhere: the ceiling
        (1000 / 60, 0.25, AUTO_MIN),  # 1,000 WAN checks a minute at 250 ms: 9, the floor
        # 10,000 WAN checks a minute at 300 ms, 1 % of them timing out at 10 s
        (10_000 / 60, 0.01 * 10 + 0.99 * 0.3, 133),
    ],
)
def test_auto_workers_follow_littles_law_within_bounds(
    rate: float, mean: float, expected: int
) -> None:
    assert auto_workers(rate, mean) == expected


def test_a_pool_resized_down_ends_its_extra_threads_and_up_starts_more() -> None:
    pool = DaemonPool(8, name="t")
    release = threading.Event()
    try:
        futures = [pool.submit(release.wait, 10) for _ in range(8)]
        assert len(pool._threads) == 8
        pool.resize(2)
        release.set()
        for f in futures:
            f.result(10)
        deadline = time.monotonic() + 10
        while len(pool._threads) > 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pool._threads) == 2
        release.clear()
        pool.resize(6)
        futures = [pool.submit(release.wait, 10) for _ in range(6)]
        assert len(pool._threads) == 6
        release.set()
        assert all(f.result(10) for f in futures)
    finally:
        release.set()
        pool.shutdown(timeout=5)


def _scrape(daemon: Daemon) -> dict[str, float]:
    _, text = daemon.get("/metrics")
    figures = {}
    for name in (
        "watcher_scheduler_lag_seconds_sum",
        "watcher_scheduler_lag_seconds_count",
        "watcher_scheduler_workers",
    ):
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        figures[name] = float(match.group(1)) if match else 0.0
    return figures


def _mean_lag(tmp_path: Path, server: HTTPTestServer, workers: str) -> tuple[float, float]:
    """Mean schedule lag (s) over 15 s after 15 s of warm-up, and the pool size then."""
    port = free_port()
    targets = "\n".join(
        f"  - {{name: web{i}, probes: [{{http: {{url: '{server.url}/slow'}}}}]}}"
        for i in range(200)
    )
    config = tmp_path / workers / "watcher.yml"
    config.parent.mkdir()
    config.write_text(
        f"site: acme\nstate: watcher.db\nlisten: 127.0.0.1:{port}\nworkers: {workers}\n"
        f"defaults: {{interval: 2s}}\ntargets:\n{targets}\n"
    )
    daemon = Daemon(config, port).start()
    try:
        time.sleep(15)  # first runs spread over 2 s, then auto re-sizes every 5 s
        before = _scrape(daemon)
        time.sleep(15)
        after = _scrape(daemon)
    finally:
        daemon.stop()
    runs = (
        after["watcher_scheduler_lag_seconds_count"] - before["watcher_scheduler_lag_seconds_count"]
    )
    lag = after["watcher_scheduler_lag_seconds_sum"] - before["watcher_scheduler_lag_seconds_sum"]
    assert runs > 0
    return lag / runs, after["watcher_scheduler_workers"]


def test_auto_workers_keep_200_slow_checks_on_time_where_four_workers_fall_behind(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_response("/slow", status=200, body="ok", delay=0.3)
    auto_lag, auto_size = _mean_lag(tmp_path, http_server, "auto")
    fixed_lag, fixed_size = _mean_lag(tmp_path, http_server, "4")
    print(f"mean lag: auto {auto_lag:.3f}s ({auto_size:.0f} workers), 4 workers {fixed_lag:.3f}s")
    assert fixed_size == 4
    assert auto_size >= 20  # 100 checks/s x 0.3 s needs about 30 at once
    assert fixed_lag > 2.0  # 4 workers serve ~13 of the 100 checks due each second
    assert auto_lag < 1.0
    assert auto_lag * 3 < fixed_lag


@pytest.mark.parametrize("value", ["many", "0", "600", "true", "-1", "'8'"])
def test_a_bad_workers_value_is_refused_with_one_sentence(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from(tmp_path, f"site: acme\nworkers: {value}\n")
    text = str(refused.value)
    assert "write auto or a number from 1 to 512" in text
    assert "1 problem" in text or text.count("workers") == 1


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("8", 8), ("512", 512)])
def test_workers_takes_auto_or_a_number(tmp_path: Path, value: str, expected: object) -> None:
    assert config_from(tmp_path, f"site: acme\nworkers: {value}\n").model.workers == expected
