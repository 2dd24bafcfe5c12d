"""Many checks failing at the same moment (a switch reboots) must not recheck in one burst:
their rechecks are spread around ``retry_interval``. Real HTTP server, real probes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from probes.base import Result
from tests.servers.httpd import HTTPTestServer
from tests.support.helpers import config_from
from watcher.app.daemon import build_jobs
from watcher.delivery.httpclient import HttpClients
from watcher.schedule.scheduler import Scheduler
from watcher.transports import Runners
from watcher.web.metrics import Metrics


def test_rechecks_of_checks_that_failed_together_are_spread_not_fired_together(
    tmp_path: Path, http_server: HTTPTestServer
) -> None:
    http_server.set_default(status=503, body="switch rebooting")
    targets = "\n".join(
        f"  - {{name: web{i}, probes: [{{http: {{url: '{http_server.url}/'}}}}]}}"
        for i in range(40)
    )
    config = config_from(
        tmp_path,
        f"site: acme\nlisten: null\ndefaults: {{interval: 60s, retry_interval: 5s}}\n"
        f"targets:\n{targets}\n",
    )
    seen: dict[str, list[Result]] = {}
    lock = threading.Lock()

    def take(batch: list[Result]) -> None:
        with lock:
            for r in batch:
                seen.setdefault(r.target, []).append(r)

    runners = Runners(config.model)
    scheduler = Scheduler(
        build_jobs(config, HttpClients(), runners),
        workers=40,
        on_results=take,
        metrics=Metrics(),
        jitter=False,  # every first check due at the same moment: the worst case
    )
    scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(seen) == 40 and all(len(v) >= 2 for v in seen.values()):
                    break
            time.sleep(0.05)
    finally:
        scheduler.stop()
        runners.close()
    with lock:
        assert len(seen) == 40 and all(len(v) >= 2 for v in seen.values())
        gaps = sorted((v[1].at - v[0].at).total_seconds() for v in seen.values())
    assert all(3.5 <= g <= 6.5 for g in gaps), gaps  # 5 s +- 20 %, however late a worker was
    assert gaps[-1] - gaps[0] >= 0.8, gaps  # spread over about 2 s, not one burst
