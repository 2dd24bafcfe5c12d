"""The ops console's overview at 10,000 checks: server time and bytes, over real HTTP.

Builds a site of ``--targets`` targets with two checks each (http and tcp: 10,000 checks
by default) in a fresh state file, with 30 days of history as the store keeps it (daily
summaries, hourly ones for the last two days, raw results every 5 minutes for the last two
hours), 1 % of checks failing so incidents are open. The probes never run: results are fed
to the real engine, and the real web server of ``watcher.app.daemon.App`` answers.

Then it GETs the overview (first page, and a filtered one), its live JSON, its stylesheet
and script, ``--requests`` times each over HTTP on loopback, and prints p50/p99 server
time (time to the whole answer) and bytes.

    .venv/bin/python bench/console_bench.py [--targets 5000] [--requests 40]
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probes.base import Result  # noqa: E402
from tests.servers.base import free_port  # noqa: E402
from watcher.app.daemon import App  # noqa: E402
from watcher.store.sqlite_file import release_run_lock  # noqa: E402
from watcher.web.server import WebServer  # noqa: E402

HOUR, DAY = 3600, 86400


def write_config(workdir: Path, targets: int, port: int) -> Path:
    # Secrets come from the environment even in a bench: the token is made here.
    os.environ.setdefault("CONSOLE_BENCH_TOKEN", secrets.token_hex(16))
    lines = [
        "site: bench",
        f"state: {workdir / 'state.db'}",
        f"listen: 127.0.0.1:{port}",
        'api_token: "${CONSOLE_BENCH_TOKEN}"',
        "rules: [default, bench-rules.yml]",
        "targets:",
    ]
    for n in range(targets):
        lines.append(
            f"  - {{name: host{n:05d}, host: 127.0.0.1, labels: {{role: {('web', 'db', 'mail')[n % 3]}}},"
            f" probes: [{{http: {{url: 'http://127.0.0.1:9/{n}'}}}}, {{tcp: {{port: 9}}}}]}}"
        )
    (workdir / "bench-rules.yml").write_text(
        "rules:\n  - {name: down, probe: http, when: failed, priority: P2, summary: '{target}: down'}\n"
    )
    path = workdir / "watcher.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fill_history(app: App, keys: list[tuple[str, str, str, str]], now: datetime) -> None:
    """30 days of summaries and two hours of raw results per check, written directly."""
    rng = random.Random(7)
    now_s = now.timestamp()
    rolled_hourly = math.floor((now_s - 900) / HOUR) * HOUR
    rolled_daily = math.floor(rolled_hourly / DAY) * DAY
    with app.store.transaction() as db:
        for target, probe, item, _kind in keys:
            daily, hourly, raw = [], [], []
            for d in range(30):
                bucket = rolled_daily - (d + 1) * DAY
                up = 288 - (rng.random() < 0.05) * rng.randint(1, 30)
                daily.append((DAY, bucket, target, probe, item, "_up", 288, up, 0, 1))
                daily.append(
                    (DAY, bucket, target, probe, item, "latency_s", 288, 288 * 0.02, 0.01, 0.2)
                )
            bucket = rolled_daily - DAY
            while bucket < rolled_hourly:
                lat = 0.01 + rng.random() * 0.03
                hourly.append((HOUR, bucket, target, probe, item, "_up", 12, 12, 1, 1))
                hourly.append(
                    (HOUR, bucket, target, probe, item, "latency_s", 12, 12 * lat, lat, lat)
                )
                bucket += HOUR
            at = rolled_hourly - HOUR
            while at < now_s:
                raw.append(
                    (
                        at,
                        target,
                        probe,
                        item,
                        probe,
                        "ok",
                        "",
                        "200 OK",
                        '{"latency_s": 0.02}',
                        0.02,
                    )
                )
                at += 300
            db.executemany(
                "INSERT OR REPLACE INTO rollup (resolution, bucket, target, probe, item, metric, n, total, lo, hi)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                daily + hourly,
            )
            db.executemany(
                "INSERT INTO results (at, target, probe, item, kind, status, reason, message, metrics, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                raw,
            )
        app.store._set_meta(db, "rolled_hourly", str(float(rolled_hourly)))
        app.store._set_meta(db, "rolled_daily", str(float(rolled_daily)))


def timed_get(port: int, path: str) -> tuple[float, int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    conn.request("GET", path)
    answer = conn.getresponse()
    body = answer.read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, len(body), answer.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=5000, help="two checks each")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        app = App(write_config(workdir, args.targets, port))
        try:
            now = datetime.now(UTC)
            results = []
            for job in app.scheduler.jobs:
                failing = random.Random(job.target.name + job.spec.id).random() < 0.01
                results.append(
                    Result(
                        target=job.target.name,
                        probe=job.spec.id,
                        kind=job.spec.kind,
                        status="fail" if failing else "ok",
                        message="HTTP 500" if failing else "200 OK",
                        metrics={"latency_s": 0.02},
                        labels={},
                        evidence="",
                        duration_s=0.02,
                        at=now,
                    )
                )
            t0 = time.perf_counter()
            for start in range(0, len(results), 2000):
                app.engine.process(results[start : start + 2000])
            keys = [(r.target, r.probe, r.item, r.kind) for r in results]
            fill_history(app, keys, now)
            print(
                f"site: {args.targets:,} targets, {len(results):,} checks,"
                f" {sum(r.status != 'ok' for r in results)} failing,"
                f" {sum(i.active for i in app.engine.incidents())} open incidents;"
                f" history written in {time.perf_counter() - t0:.1f} s"
            )
            app.web = WebServer(f"127.0.0.1:{port}", api_token=app.config.model.api_token)
            app._routes(app.web)
            app.web.start()
            paths = {
                "overview": "/console",
                "overview, page 20": "/console?page=20",
                "overview, status=fail": "/console?status=fail",
                "overview, search": "/console?q=host0420",
                "live JSON": "/console/live.json",
                "console.css + console.js": None,
            }
            print(f"{'GET':28} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>9}")
            for label, path in paths.items():
                times, size = [], 0
                for _ in range(args.requests):
                    if path is None:
                        a = timed_get(port, "/console/static/console.css")
                        b = timed_get(port, "/console/static/console.js")
                        times.append(a[0] + b[0])
                        size = a[1] + b[1]
                    else:
                        elapsed, size, status = timed_get(port, path)
                        assert status == 200, (path, status)
                        times.append(elapsed)
                times.sort()
                p50 = statistics.median(times) * 1000
                p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)] * 1000
                print(f"{label:28} {p50:8.1f} {p99:8.1f} {size:9,}")
        finally:
            if app.web:
                app.web.stop()
            app.store.close()
            release_run_lock(app._lock_fds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
