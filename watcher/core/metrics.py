"""Prometheus metrics for /metrics. The registry is passed in, so tests build their own.

Probe values are written at scrape time from the latest results, rather than by updating
a gauge per result: per-result work stays off the hot path, and a target removed from the
config stops being exported without any bookkeeping.
Labels stay low-cardinality: target, probe, item and metric names, never free text.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from probes.base import Result


__all__ = ["Metrics"]

_NAME = re.compile(r"[^a-zA-Z0-9_]")

# The *_created series double the exposition and say nothing an operator needs.
disable_created_metrics()


_HEADERS = {
    "watcher_probe_success": "1 if the latest check was ok",
    "watcher_probe_status": "Latest status: 0 ok, 1 fail, 2 error",
    "watcher_probe_duration_seconds": "How long the latest check took",
    "watcher_probe_value": "Metrics of the latest check",
}
_STATUS_CODE = {"ok": "0.0", "fail": "1.0", "error": "2.0"}
_SUCCESS = {"ok": "1.0", "fail": "0.0", "error": "0.0"}


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _ResultsExposition:
    """Writes the probe families as exposition text, straight from the latest results.

    The same text prometheus_client would write (labels sorted by name, Go float format),
    without its per-sample objects and escaping: with 30,000 checks that path took ~10 s
    of CPU per scrape, this one ~0.3 s. Each check's label text is built once and kept
    while the check exists. The text comes in chunks, one family after the other, so
    that it can be compressed as it is written rather than held whole (tens of MB).
    """

    def __init__(self, latest: Callable[[], Iterable[Result]]) -> None:
        self._latest = latest
        self._labels: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._names: dict[str, str] = {}

    def chunks(self) -> Iterator[bytes]:
        results = list(self._latest())
        known, seen = self._labels, {}
        labels = []
        for r in results:
            key = (r.target, r.probe, r.item)
            parts = known.get(key)
            if parts is None:
                # sorted label names: item, (metric,) probe, target
                parts = (
                    f'item="{_label_value(key[2])}"',
                    f'probe="{_label_value(r.probe)}",target="{_label_value(r.target)}"',
                )
            seen[key] = parts
            labels.append(parts)
        self._labels = seen  # checks gone from the config are forgotten with their results
        go, names = floatToGoString, self._names
        pairs = list(zip(results, labels, strict=True))
        yield _header("watcher_probe_success")
        yield from _batched(
            f"watcher_probe_success{{{i},{rest}}} {_SUCCESS[r.status]}\n" for r, (i, rest) in pairs
        )
        yield _header("watcher_probe_status")
        yield from _batched(
            f"watcher_probe_status{{{i},{rest}}} {_STATUS_CODE[r.status]}\n"
            for r, (i, rest) in pairs
        )
        yield _header("watcher_probe_duration_seconds")
        yield from _batched(
            f"watcher_probe_duration_seconds{{{i},{rest}}} {go(r.duration_s)}\n"
            for r, (i, rest) in pairs
        )
        yield _header("watcher_probe_value")

        def values() -> Iterator[str]:
            for r, (item, rest) in pairs:
                for name, value in r.metrics.items():
                    label = names.get(name)
                    if label is None:
                        label = names[name] = _label_value(_NAME.sub("_", name))
                    yield f'watcher_probe_value{{{item},metric="{label}",{rest}}} {go(value)}\n'

        yield from _batched(values())


def _header(family: str) -> bytes:
    return f"# HELP {family} {_HEADERS[family]}\n# TYPE {family} gauge\n".encode()


def _batched(lines: Iterable[str], size: int = 2000) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield "".join(batch).encode()
            batch.clear()
    if batch:
        yield "".join(batch).encode()


class _StateCollector(Collector):
    def __init__(
        self,
        incidents: Callable[[], Mapping[str, int]],
        outbox: Callable[[], Mapping[str, int]],
        held: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self._incidents = incidents
        self._outbox = outbox
        self._held = held

    def collect(self) -> Iterable[GaugeMetricFamily]:
        open_ = GaugeMetricFamily(
            "watcher_incidents_open", "Open or acknowledged incidents", labels=["priority"]
        )
        for priority, count in sorted(self._incidents().items()):
            open_.add_metric([priority], count)
        counts = self._outbox()
        pending = GaugeMetricFamily(
            "watcher_outbox_pending", "Ticket and page actions waiting for delivery"
        )
        pending.add_metric([], counts.get("pending", 0))
        failed = GaugeMetricFamily(
            "watcher_outbox_failed", "Actions that failed permanently and wait for a fix"
        )
        failed.add_metric([], counts.get("failed", 0))
        families = [open_, pending, failed]
        if self._held is not None:
            counts = dict(self._held())
            flapping = counts.pop("flapping", 0)
            held = GaugeMetricFamily(
                "watcher_incidents_held",
                "Open incidents whose tickets and pages are held back, by why",
                labels=["reason"],
            )
            for reason, count in sorted(counts.items()):
                held.add_metric([reason], count)
            flaps = GaugeMetricFamily(
                "watcher_incidents_flapping", "Open incidents that are flapping"
            )
            flaps.add_metric([], flapping)
            families += [held, flaps]
        return families


class _StateFileCollector(Collector):
    def __init__(self, writable: Callable[[], bool], failures: Callable[[], int]) -> None:
        self._writable = writable
        self._failures = failures

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        writable = GaugeMetricFamily(
            "watcher_state_writable",
            "1 if the last write to the state file succeeded, 0 while it cannot be written",
        )
        writable.add_metric([], 1.0 if self._writable() else 0.0)
        failures = CounterMetricFamily(
            "watcher_state_write_failures",
            "Writes the state file or its volume refused (full, read-only, I/O error)",
        )
        failures.add_metric([], self._failures())
        return [writable, failures]


class Metrics:
    """Every metric watcher exports, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tickets_opened = Counter(
            "watcher_tickets_opened", "Tickets opened in a helpdesk", ["integration"], registry=r
        )
        self.tickets_adopted = Counter(
            "watcher_tickets_adopted",
            "Existing helpdesk tickets found by fingerprint and reused",
            ["integration"],
            registry=r,
        )
        self.pages_sent = Counter("watcher_pages_sent", "Pages sent", ["integration"], registry=r)
        self.deliveries = Counter(
            "watcher_outbox_deliveries", "Actions delivered", ["integration", "action"], registry=r
        )
        self.outbox_failures = Counter(
            "watcher_outbox_failures",
            "Failed delivery attempts",
            ["integration", "kind"],
            registry=r,
        )
        self.probe_runs = Counter(
            "watcher_probe_runs", "Checks run", ["kind", "status"], registry=r
        )
        self.scheduler_skipped = Counter(
            "watcher_scheduler_skipped",
            "Checks not started because the previous run was still going",
            registry=r,
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
        self.config_reloads = Counter(
            "watcher_config_reloads", "Config reloads", ["outcome"], registry=r
        )
        self._results: _ResultsExposition | None = None

    def watch_results(self, latest: Callable[[], Iterable[Result]]) -> None:
        self._results = _ResultsExposition(latest)

    def watch_state(
        self,
        incidents: Callable[[], Mapping[str, int]],
        outbox: Callable[[], Mapping[str, int]],
        held: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.registry.register(_StateCollector(incidents, outbox, held))

    def watch_state_file(self, writable: Callable[[], bool], failures: Callable[[], int]) -> None:
        self.registry.register(_StateFileCollector(writable, failures))

    def exposition(self, *, gzip: bool = False) -> bytes:
        """The text format; ``gzip`` compresses it as it is written (Prometheus asks for
        gzip), about a tenth of the size and no copy of the whole text in memory."""
        from prometheus_client import generate_latest

        chunks = itertools.chain(
            [generate_latest(self.registry)], self._results.chunks() if self._results else []
        )
        if not gzip:
            return b"".join(chunks)
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip member
        packed = [packer.compress(chunk) for chunk in chunks]
        packed.append(packer.flush())
        return b"".join(packed)
