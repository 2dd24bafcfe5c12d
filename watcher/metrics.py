"""Prometheus metrics for /metrics. The registry is passed in, so tests build their own.

Probe values are exported by a collector that reads the latest results at scrape time,
rather than by updating a gauge per result: per-result work stays off the hot path, and
a target removed from the config stops being exported without any bookkeeping.
Labels stay low-cardinality: target, probe, item and metric names, never free text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from probes.base import Result

__all__ = ["Metrics"]

_NAME = re.compile(r"[^a-zA-Z0-9_]")

# The *_created series double the exposition and say nothing an operator needs.
disable_created_metrics()


class _ResultsCollector(Collector):
    def __init__(self, latest: Callable[[], Iterable[Result]]) -> None:
        self._latest = latest

    def collect(self) -> Iterable[GaugeMetricFamily]:
        success = GaugeMetricFamily("watcher_probe_success", "1 if the latest check was ok", labels=["target", "probe", "item"])
        status = GaugeMetricFamily(
            "watcher_probe_status", "Latest status: 0 ok, 1 fail, 2 error", labels=["target", "probe", "item"]
        )
        duration = GaugeMetricFamily(
            "watcher_probe_duration_seconds", "How long the latest check took", labels=["target", "probe", "item"]
        )
        values = GaugeMetricFamily(
            "watcher_probe_value", "Metrics of the latest check", labels=["target", "probe", "item", "metric"]
        )
        code = {"ok": 0, "fail": 1, "error": 2}
        for r in self._latest():
            labels = [r.target, r.probe, r.item]
            success.add_metric(labels, 1.0 if r.status == "ok" else 0.0)
            status.add_metric(labels, code[r.status])
            duration.add_metric(labels, r.duration_s)
            for name, value in r.metrics.items():
                values.add_metric([*labels, _NAME.sub("_", name)], value)
        return [success, status, duration, values]


class _StateCollector(Collector):
    def __init__(self, incidents: Callable[[], Mapping[str, int]], outbox: Callable[[], Mapping[str, int]]) -> None:
        self._incidents = incidents
        self._outbox = outbox

    def collect(self) -> Iterable[GaugeMetricFamily]:
        open_ = GaugeMetricFamily("watcher_incidents_open", "Open or acknowledged incidents", labels=["priority"])
        for priority, count in sorted(self._incidents().items()):
            open_.add_metric([priority], count)
        counts = self._outbox()
        pending = GaugeMetricFamily("watcher_outbox_pending", "Ticket and page actions waiting for delivery")
        pending.add_metric([], counts.get("pending", 0))
        failed = GaugeMetricFamily("watcher_outbox_failed", "Actions that failed permanently and wait for a fix")
        failed.add_metric([], counts.get("failed", 0))
        return [open_, pending, failed]


class Metrics:
    """Every metric watcher exports, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tickets_opened = Counter("watcher_tickets_opened", "Tickets opened in a helpdesk", ["integration"], registry=r)
        self.tickets_adopted = Counter(
            "watcher_tickets_adopted", "Existing helpdesk tickets found by fingerprint and reused", ["integration"], registry=r
        )
        self.pages_sent = Counter("watcher_pages_sent", "Pages sent", ["integration"], registry=r)
        self.deliveries = Counter("watcher_outbox_deliveries", "Actions delivered", ["integration", "action"], registry=r)
        self.outbox_failures = Counter(
            "watcher_outbox_failures", "Failed delivery attempts", ["integration", "kind"], registry=r
        )
        self.probe_runs = Counter("watcher_probe_runs", "Checks run", ["kind", "status"], registry=r)
        self.scheduler_skipped = Counter(
            "watcher_scheduler_skipped", "Checks not started because the previous run was still going", registry=r
        )
        self.scheduler_timeouts = Counter(
            "watcher_scheduler_hard_timeouts", "Checks that overran their hard timeout", registry=r
        )
        self.scheduler_lag = Histogram(
            "watcher_scheduler_lag_seconds",
            "How late checks started against their schedule",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.config_reloads = Counter("watcher_config_reloads", "Config reloads", ["outcome"], registry=r)

    def watch_results(self, latest: Callable[[], Iterable[Result]]) -> None:
        self.registry.register(_ResultsCollector(latest))

    def watch_state(self, incidents: Callable[[], Mapping[str, int]], outbox: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_StateCollector(incidents, outbox))

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


