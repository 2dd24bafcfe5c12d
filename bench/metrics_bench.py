"""/metrics at site scale: series, bytes and scrape time over real HTTP.

Builds watcher's ``Metrics`` over the latest results of ``--targets`` targets with three
checks each, as a real site has them: ``https`` (an http probe over TLS: latency,
connect, first byte, status, body size, redirects, certificate days left), ``disk``
over SSH on two paths (sizes and use of each) and ``backup``, an SSH command (exit code,
latency). It serves them through watcher's own web server on loopback and scrapes
``/metrics`` ``--scrapes`` times asking for gzip as Prometheus does, then each of the
``--shards`` shards, and prints the series count, the text and gzip sizes and the
median and p99 scrape time (request to last byte, the client's decompression not
counted) and the median CPU time of a scrape. Between scrapes a quarter of the checks
get a new result, as a 15 s scrape interval sees checks that run every 60 s.

    .venv/bin/python bench/metrics_bench.py [--targets 10000] [--scrapes 20]
    .venv/bin/python bench/metrics_bench.py --source /work/main   # the code of another tree

``--source`` imports watcher from another checkout (one before sharding existed:
its whole /metrics is measured, and shards are skipped). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def site_results(targets: int, now: datetime) -> list[Any]:
    """The latest results of a site of ``targets`` targets, three checks each."""
    from probes.base import Result

    results = []
    for i in range(targets):
        name = f"srv{i:05d}.pune"
        at = now - timedelta(seconds=i % 60)
        failing = i % 50 == 0
        results.append(
            Result(
                name,
                "https",
                "http",
                "fail" if failing else "ok",
                "HTTP 200 in 41 ms",
                {
                    "latency_s": 0.041234567 + i * 1e-7,
                    "connect_s": 0.0012345678,
                    "ttfb_s": 0.03456789,
                    "redirects": 0.0,
                    "status_code": 500.0 if failing else 200.0,
                    "body_bytes": 5123.0,
                    "cert_days_left": 87.123 - (i % 90),
                },
                {},
                "",
                0.04312345678 + i * 1e-7,
                at,
            )  # fmt: skip
        )
        for path, used in (("/", 41.73), ("/var", 88.02 + (i % 10))):
            size = 107374182400.0
            results.append(
                Result(
                    name,
                    "disk",
                    "disk",
                    "fail" if used >= 95 else "ok",
                    f"{path}: {used}% used",
                    {
                        "size_bytes": size,
                        "used_bytes": size * used / 100,
                        "free_bytes": size * (100 - used) / 100,
                        "used_percent": used,
                        "inodes_used_percent": 12.5,
                    },
                    {"path": path},
                    "",
                    0.2123456789,
                    at,
                )  # fmt: skip
            )
        results.append(
            Result(
                name,
                "backup",
                "command",
                "ok",
                "backup fresh",
                {"exit_code": 0.0, "latency_s": 0.18765432},
                {},
                "",
                0.1923456789,
                at,
            )  # fmt: skip
        )
    return results


def renew(results: list[Any], scrape: int) -> None:
    """A new result for every fourth check, a different quarter each scrape."""
    for i in range(scrape % 4, len(results), 4):
        old = results[i]
        results[i] = replace(
            old, duration_s=old.duration_s + 1e-4, at=old.at + timedelta(seconds=15)
        )


def serve(metrics: Any) -> Any:
    """Watcher's web server on a free loopback port with the /metrics route."""
    from watcher.web.server import Response, WebServer

    web = WebServer("127.0.0.1:0", api_token=None)
    if hasattr(metrics, "respond"):
        web.route("GET", "/metrics", metrics.respond)
    else:  # a tree from before sharding: the route as its App wrote it

        def handler(request: Any) -> Response:
            zipped = "gzip" in request.headers.get("accept-encoding", "")
            headers = {"Content-Encoding": "gzip"} if zipped else {}
            return Response(200, metrics.exposition(gzip=zipped), "text/plain", headers)

        web.route("GET", "/metrics", handler)
    web.start()
    return web


def scrape(port: int, path: str) -> tuple[tuple[float, float], bytes, bytes]:
    """((seconds to the last byte, CPU seconds of this process), body as sent, text).

    The CPU time is the server's work and the client's reading: on a busy machine it
    says what the scrape costs better than the wall clock does."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started, cpu = time.perf_counter(), time.process_time()
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
    response = conn.getresponse()
    body = response.read()
    took = (time.perf_counter() - started, time.process_time() - cpu)
    conn.close()
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {body[:200]!r}")
    zipped = response.getheader("Content-Encoding") == "gzip"
    return took, body, gzip.decompress(body) if zipped else body


def series(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def check_series(text: bytes) -> int:
    """Series of checks, old names and new: watcher's own metrics left out."""
    return sum(
        1
        for line in text.splitlines()
        if line.startswith((b"watcher_check_", b"watcher_probe_"))
        and not line.startswith(b"watcher_probe_runs")
    )


def report(label: str, times: list[tuple[float, float]], body: bytes, text: bytes) -> None:
    ms = sorted(wall * 1000 for wall, _ in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    cpu = statistics.median(c * 1000 for _, c in times)
    print(
        f"{label:<14} {series(text):>9,} series  {len(text) / 2**20:6.2f} MiB text  "
        f"{len(body) / 2**20:5.2f} MiB gzip  p50 {statistics.median(ms):6.1f} ms  "
        f"p99 {p99:6.1f} ms  cpu p50 {cpu:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--source", type=Path, default=HERE, help="checkout to import from")
    args = parser.parse_args()
    if not 1 <= args.targets <= 100_000 or not 1 <= args.scrapes <= 1000:
        raise SystemExit("--targets is 1-100000 and --scrapes 1-1000")
    sys.path.insert(0, str(args.source.resolve()))
    from watcher.web.metrics import Metrics

    results = site_results(args.targets, datetime.now(UTC))
    metrics = Metrics()
    metrics.watch_results(lambda: results)
    web = serve(metrics)
    try:
        print(f"{args.source}: {args.targets:,} targets, {len(results):,} results")
        scrape(web.port, "/metrics")  # warm the label caches, as a running watcher has them
        times, body, text = [], b"", b""
        for n in range(args.scrapes):
            renew(results, n)
            took, body, text = scrape(web.port, "/metrics")
            times.append(took)
        report("/metrics", times, body, text)
        print(f"{'':14} {check_series(text) / (3 * args.targets):.2f} check series per check")
        if not hasattr(metrics, "respond"):
            return
        for index in range(1, args.shards + 1):
            path = f"/metrics?shard={index}/{args.shards}"
            scrape(web.port, path)
            times = []
            for n in range(args.scrapes):
                renew(results, n)
                took, body, text = scrape(web.port, path)
                times.append(took)
            report(f"shard {index}/{args.shards}", times, body, text)
    finally:
        web.stop()


if __name__ == "__main__":
    main()
