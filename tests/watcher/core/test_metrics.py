"""/metrics: the probe families written directly read as prometheus_client would write them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from probes.base import Result
from tests.servers.prometheus import promtool_check_metrics
from watcher.core.metrics import Metrics

AT = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)


def _result(
    target: str,
    probe: str,
    status: str,
    metrics: dict[str, float],
    labels: dict[str, str] | None = None,
) -> Result:
    return Result(
        target, probe, probe.split("-")[0], status, "m", metrics, labels or {}, "", 0.012345, AT
    )  # type: ignore[arg-type]


RESULTS = [
    _result(
        "web-1",
        "http",
        "ok",
        {"latency_s": 0.0042, "status_code": 200, "body_bytes": 3, "cert_days_left": 364.998},
    ),
    _result("web-1", "tcp", "fail", {}),
    _result(
        "db", "disk", "ok", {"used_percent": 91.5, "free_bytes": 123456789012.0}, {"path": "/var"}
    ),
    _result(
        "db", "disk", "error", {"used_percent": 1e-7}, {"path": '/odd "quoted"\\path\nnewline'}
    ),
    _result("mail", "nagios-x", "ok", {"rta ms": 1.5, "pl%": 0.0, "huge": 1e22, "neg": -3.25}),
]


class _Reference(Collector):
    """What the exporter wrote before, through prometheus_client's own families."""

    def __init__(self, results: Iterable[Result]) -> None:
        self.results = list(results)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        success = GaugeMetricFamily(
            "watcher_probe_success",
            "1 if the latest check was ok",
            labels=["target", "probe", "item"],
        )
        status = GaugeMetricFamily(
            "watcher_probe_status",
            "Latest status: 0 ok, 1 fail, 2 error",
            labels=["target", "probe", "item"],
        )
        duration = GaugeMetricFamily(
            "watcher_probe_duration_seconds",
            "How long the latest check took",
            labels=["target", "probe", "item"],
        )
        values = GaugeMetricFamily(
            "watcher_probe_value",
            "Metrics of the latest check",
            labels=["target", "probe", "item", "metric"],
        )
        for r in self.results:
            labels = [r.target, r.probe, r.item]
            success.add_metric(labels, 1.0 if r.status == "ok" else 0.0)
            status.add_metric(labels, {"ok": 0, "fail": 1, "error": 2}[r.status])
            duration.add_metric(labels, r.duration_s)
            for name, value in r.metrics.items():
                values.add_metric([*labels, re.sub(r"[^a-zA-Z0-9_]", "_", name)], value)
        return [success, status, duration, values]


def _probe_families(text: str) -> str:
    families = (
        "watcher_probe_success",
        "watcher_probe_status",
        "watcher_probe_duration_seconds",
        "watcher_probe_value",
    )
    kept = [
        line
        for line in text.splitlines()
        if line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(families)
    ]
    return "".join(line + "\n" for line in kept)


def test_the_probe_families_are_the_text_prometheus_client_writes() -> None:
    metrics = Metrics()
    metrics.watch_results(lambda: RESULTS)
    registry = CollectorRegistry()
    registry.register(_Reference(RESULTS))
    expected = generate_latest(registry).decode()
    assert _probe_families(metrics.exposition().decode()) == expected


def test_the_exposition_passes_promtool_and_forgets_removed_checks() -> None:
    latest = list(RESULTS)
    metrics = Metrics()
    metrics.watch_results(lambda: latest)
    ok, output = promtool_check_metrics(metrics.exposition().decode())
    assert ok, output
    latest.pop(0)
    text = metrics.exposition().decode()
    assert 'target="web-1"' in text and 'probe="http"' not in text


def test_a_gzip_exposition_unpacks_to_the_same_text() -> None:
    import gzip

    metrics = Metrics()
    metrics.watch_results(lambda: RESULTS)
    assert gzip.decompress(metrics.exposition(gzip=True)) == metrics.exposition()
