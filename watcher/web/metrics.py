"""Prometheus metrics for /metrics. The registry is passed in, so tests build their own.

Each check (a probe on a target) is two or three series by default: whether it passed,
how long it took, and when its certificate expires where it checks TLS. Every other
figure a probe measures is opt-in (``metrics: {detail: true}`` for the site, or
``detail_metrics: true`` on one probe), one family per meaning with its unit in the
name. ``/metrics?shard=I/N`` serves the targets whose name hashes (CRC-32) to I-1
modulo N, so a large site can be scraped as N parallel jobs.

Check series are written at scrape time from the latest results, as exposition text,
rather than through a gauge per result: per-result work stays off the hot path, and a
check removed from the config stops being exported without any bookkeeping.
Labels stay low-cardinality: target, check and item names, never free text.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from probes.base import Result
from watcher.web.server import Request, Response, text_response

if TYPE_CHECKING:
    from watcher.config.models import WatcherConfig

__all__ = ["Metrics", "Shard", "detail_name", "parse_shard"]

# The *_created series double the exposition and say nothing an operator needs.
disable_created_metrics()

MAX_SHARDS = 1000
CERT_METRIC = "cert_days_left"
# latency_s says again what the check's duration says; the certificate's days left are
# exported by default, as an expiry timestamp.
_NOT_DETAIL = frozenset({"latency_s", CERT_METRIC})

SUCCESS = "watcher_check_success"
DURATION = "watcher_check_duration_seconds"
CERT_EXPIRY = "watcher_check_cert_expiry_timestamp_seconds"
ERROR = "watcher_check_error"
ITEM_SUCCESS = "watcher_check_item_success"
DETAIL_PREFIX = "watcher_probe_"
_HELP = {
    SUCCESS: "1 if the latest run of the check passed (every item of it, such as each disk path)",
    DURATION: "How long the latest run of the check took",
    CERT_EXPIRY: "When the certificate the check saw expires (Unix time; the earliest of its items)",
    ERROR: "1 if the latest run could not tell (timeout, login refused), 0 if it could",
    ITEM_SUCCESS: "1 if the latest result of this item of the check was ok",
}
_NAMES_KEPT = 10_000
# Families of watcher's own registry a detail family must not take the name of.
_RESERVED = frozenset({"watcher_probe_runs"})

_NAME = re.compile(r"[^a-z0-9_]+")
# A unit written in a probe metric's name -> (the base unit's name, factor to it).
_UNITS = {
    "s": ("seconds", 1.0),
    "sec": ("seconds", 1.0),
    "secs": ("seconds", 1.0),
    "ms": ("seconds", 1e-3),
    "us": ("seconds", 1e-6),
    "minutes": ("seconds", 60.0),
    "hours": ("seconds", 3600.0),
    "days": ("seconds", 86400.0),
    "percent": ("ratio", 0.01),
    "pct": ("ratio", 0.01),
    "b": ("bytes", 1.0),
    "kb": ("bytes", 1024.0),
    "kib": ("bytes", 1024.0),
    "mb": ("bytes", 1024.0**2),
    "mib": ("bytes", 1024.0**2),
    "gb": ("bytes", 1024.0**3),
    "gib": ("bytes", 1024.0**3),
}
# Suffixes Prometheus keeps for counters, histograms and summaries; on a gauge they mislead.
_TYPE_SUFFIXES = frozenset({"total", "count", "sum", "bucket", "created"})


def detail_name(metric: str) -> tuple[str, float]:
    """The family a probe metric is exported as in detail, and the factor to its unit:
    ``used_percent`` -> (``watcher_probe_used_ratio``, 0.01), ``oldest_age_s`` ->
    (``watcher_probe_oldest_age_seconds``, 1.0), ``procs_total`` -> ``watcher_probe_procs``."""
    words = [w for w in _NAME.sub("_", metric.lower().replace("%", "_percent")).split("_") if w]
    factor = 1.0
    named: list[str] = []
    for word in words:
        # a first word is the name itself, never a unit (a metric called "b" or "s")
        unit = _UNITS.get(word) if named else None
        if unit is not None and (not named or named[-1] != unit[0]):
            named.append(unit[0])
            factor *= unit[1]
        elif unit is None:
            named.append(word)
    while len(named) > 1 and named[-1] in _TYPE_SUFFIXES:
        named.pop()
    family = DETAIL_PREFIX + ("_".join(named) or "value")
    return (family + "_value" if family in _RESERVED else family), factor


@dataclass(frozen=True)
class Shard:
    """One of ``count`` parts of the check series, ``index`` counted from 1."""

    index: int
    count: int

    def holds(self, target_hash: int) -> bool:
        return target_hash % self.count == self.index - 1


def parse_shard(text: str) -> Shard:
    """``"1/4"`` -> Shard(1, 4); anything else is a ValueError saying what to write."""
    index, slash, count = text.strip().partition("/")
    if (
        slash
        and index.isascii()
        and index.isdigit()
        and count.isascii()
        and count.isdigit()
        and len(index) <= 4
        and len(count) <= 4
        and 1 <= int(index) <= int(count) <= MAX_SHARDS
    ):
        return Shard(int(index), int(count))
    raise ValueError(
        f"shard must be I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. shard=1/4 (got {text[:40]!r})"
    )


def target_hash(target: str) -> int:
    """The shard key of a target: CRC-32 of its name, the same on every machine and run."""
    return zlib.crc32(target.encode("utf-8", "surrogatepass"))


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    """Short and exact enough: whole numbers as such, others to 9 significant digits."""
    if not math.isfinite(value):
        return floatToGoString(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.9g}"


def _seconds(value: float) -> str:
    # four digits (10 us in 43 ms, 10 ms in 12 s) say how long a check took; 17 are noise
    return f"{value:.4g}" if math.isfinite(value) else floatToGoString(value)


def _header(family: str, help_text: str) -> str:
    help_text = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {family} {help_text}\n# TYPE {family} gauge\n"


def check_key(target: str, check: str) -> str:
    """How a check is keyed here: the names with a NUL between them (two checks could
    share a key only through a probe name with a NUL in it, and would then share lines)."""
    return f"{target}\0{check}"


def detail_checks(model: WatcherConfig) -> bool | frozenset[str]:
    """True when every check exports its detail, else the keys of the checks that do."""
    if model.metrics.detail:
        return True
    return frozenset(
        check_key(target.name, spec.id)
        for target in model.targets
        for spec in target.probe_specs()
        if spec.config.detail_metrics
    )


class _Check:
    """A check's lines as of the results they were written from, kept until those change:
    a check runs every minute or so and is scraped more often, so most scrapes only copy.
    """

    __slots__ = ("duration", "expiry", "hash", "labels", "results", "success")

    def __init__(self, labels: str, hash_: int) -> None:
        self.labels = labels
        self.hash = hash_
        self.results: Result | tuple[Result, ...] | None = None
        self.success = self.duration = self.expiry = ""

    def wrote(self, group: Result | list[Result]) -> bool:
        """Whether the lines are of exactly these results (the same objects)."""
        kept = self.results
        if type(group) is not list:
            return kept is group
        return (
            type(kept) is tuple
            and len(kept) == len(group)
            and all(a is b for a, b in zip(kept, group, strict=True))
        )

    @classmethod
    def of(cls, group: Result | list[Result], old: _Check | None) -> _Check:
        # a new object, never the old one changed: scrapes of several shards run at once
        if old is None:
            first: Result = group[0] if type(group) is list else group  # type: ignore[assignment]
            labels = f'target="{_label_value(first.target)}",check="{_label_value(first.probe)}"'
            check = cls(labels, target_hash(first.target))
        else:
            check = cls(old.labels, old.hash)
        labels = check.labels
        if type(group) is not list:
            r: Result = group  # type: ignore[assignment]
            check.results = r
            ok = r.status == "ok"
            took = r.duration_s
            days = r.metrics.get(CERT_METRIC)
            expires = None if days is None else r.at.timestamp() + days * 86400.0
        else:
            check.results = tuple(group)
            ok = all(r.status == "ok" for r in group)
            took = max(r.duration_s for r in group)
            ends = [
                r.at.timestamp() + r.metrics[CERT_METRIC] * 86400.0
                for r in group
                if CERT_METRIC in r.metrics
            ]
            expires = min(ends) if ends else None
        check.success = f"{SUCCESS}{{{labels}}} {'1' if ok else '0'}\n"
        check.duration = f"{DURATION}{{{labels}}} {_seconds(took)}\n"
        check.expiry = "" if expires is None else f"{CERT_EXPIRY}{{{labels}}} {int(expires)}\n"
        return check


class _ResultsExposition:
    """Writes the check families as exposition text, straight from the latest results.

    prometheus_client's per-sample objects cost ~10 s of CPU per scrape at 30,000 checks;
    text written here costs a small fraction of that. Each check's label text and shard
    key are built once and kept while the check exists.
    """

    def __init__(
        self,
        latest: Callable[[], Iterable[Result]],
        config: Callable[[], WatcherConfig] | None = None,
    ) -> None:
        self._latest = latest
        self._config = config
        self._checks: dict[str, _Check] = {}
        self._hashes: dict[str, int] = {}  # target -> target_hash(), for shard scrapes
        self._names: dict[str, tuple[str, float]] = {}
        self._detail_of: tuple[Any, bool | frozenset[str]] = (None, False)

    def _detail(self) -> bool | frozenset[str]:
        if self._config is None:
            return False
        model = self._config()
        if self._detail_of[0] is not model:  # the config was reloaded
            self._detail_of = (model, detail_checks(model))
        return self._detail_of[1]

    def families(self, shard: Shard | None) -> Iterator[str]:
        """The text of each family in turn (a family's lines must not be interleaved)."""
        # One result per check is the rule, a list only for checks with items (disk paths).
        groups: dict[str, Result | list[Result]] = {}
        find = groups.get
        known = self._checks
        if shard is None:
            seen: dict[str, _Check] = {}
            hashes = self._hashes = {}
        else:
            # other shards' checks are kept as they are, for their own scrapes
            seen = {key: c for key, c in known.items() if not shard.holds(c.hash)}
            hashes = self._hashes
            if len(hashes) > 2 * len(known) + 1000:  # targets gone from the config
                hashes.clear()
        results = self._latest()
        if shard is not None:
            count, index = shard.count, shard.index - 1
            hash_of = hashes.get
            mine = []
            for r in results:
                hashed = hash_of(r.target)
                if hashed is None:
                    hashed = hashes[r.target] = target_hash(r.target)
                if hashed % count == index:
                    mine.append(r)
            results = mine
        for r in results:
            # a string, not a tuple: tens of thousands of new tuples a scrape would each be
            # tracked by the garbage collector, whose passes then slow the scrape
            key = f"{r.target}\0{r.probe}"  # check_key(), inline: it runs for every result
            group = find(key)
            if group is None:
                groups[key] = r
            elif type(group) is list:
                group.append(r)
            else:
                groups[key] = [group, r]  # type: ignore[list-item]
        detail = self._detail()
        success, duration, expiry = [], [], []
        detailed: list[tuple[str, list[Result]]] = []
        for key, group in groups.items():
            check = known.get(key)
            if check is None or (check.results is not group and not check.wrote(group)):
                check = _Check.of(group, check)
            seen[key] = check
            success.append(check.success)
            duration.append(check.duration)
            if check.expiry:
                expiry.append(check.expiry)
            if detail is True or (detail and key in detail):
                detailed.append((check.labels, group if type(group) is list else [group]))  # type: ignore[list-item]
        # checks gone from the config are forgotten with their results (in a shard's
        # scrape, those of that shard)
        self._checks = seen
        yield _header(SUCCESS, _HELP[SUCCESS]) + "".join(success)
        yield _header(DURATION, _HELP[DURATION]) + "".join(duration)
        if expiry:
            yield _header(CERT_EXPIRY, _HELP[CERT_EXPIRY]) + "".join(expiry)
        if detailed:
            yield from self._detail_families(detailed)

    def _detail_families(self, checks: list[tuple[str, list[Result]]]) -> Iterator[str]:
        errors, items = [], []
        values: dict[str, list[str]] = {}
        helps: dict[str, str] = {}
        names = self._names
        for labels, group in checks:
            error = any(r.status == "error" for r in group)
            errors.append(f"{ERROR}{{{labels}}} {'1' if error else '0'}\n")
            for r in group:
                item = r.item
                where = f'{labels},item="{_label_value(item)}"' if item else labels
                if item:
                    items.append(f"{ITEM_SUCCESS}{{{where}}} {'1' if r.status == 'ok' else '0'}\n")
                written: set[str] = set()
                for metric, value in r.metrics.items():
                    if metric in _NOT_DETAIL:
                        continue
                    named = names.get(metric)
                    if named is None:
                        if len(names) >= _NAMES_KEPT:  # plugins may name a new metric each run
                            names.clear()
                        named = names[metric] = detail_name(metric)
                    family, factor = named
                    if family in written:  # two names for one meaning (rta_s, rta_ms)
                        continue
                    written.add(family)
                    helps.setdefault(family, f"The probe metric {metric} of the latest check")
                    values.setdefault(family, []).append(
                        f"{family}{{{where}}} {_number(value * factor)}\n"
                    )
        yield _header(ERROR, _HELP[ERROR]) + "".join(errors)
        if items:
            yield _header(ITEM_SUCCESS, _HELP[ITEM_SUCCESS]) + "".join(items)
        for family in sorted(values):
            yield _header(family, helps[family]) + "".join(values[family])


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
        self.scheduler_workers = Gauge(
            "watcher_scheduler_workers", "Probe threads the pool may run at once", registry=r
        )
        self.config_reloads = Counter(
            "watcher_config_reloads", "Config reloads", ["outcome"], registry=r
        )
        self._results: _ResultsExposition | None = None

    def watch_results(
        self,
        latest: Callable[[], Iterable[Result]],
        config: Callable[[], WatcherConfig] | None = None,
    ) -> None:
        """Exports the checks of ``latest()`` at each scrape; ``config()`` says which
        checks export their detail (none without it)."""
        self._results = _ResultsExposition(latest, config)

    def watch_state(
        self,
        incidents: Callable[[], Mapping[str, int]],
        outbox: Callable[[], Mapping[str, int]],
        held: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.registry.register(_StateCollector(incidents, outbox, held))

    def watch_state_file(self, writable: Callable[[], bool], failures: Callable[[], int]) -> None:
        self.registry.register(_StateFileCollector(writable, failures))

    def exposition(self, *, gzip: bool = False, shard: Shard | None = None) -> bytes:
        """The text format; ``gzip`` compresses it family by family as it is written
        (Prometheus asks for gzip). A ``shard`` holds only its targets' check series;
        watcher's own metrics go with shard 1, so the shards together are the whole."""
        texts: list[str] = []
        own = b""
        if shard is None or shard.index == 1:
            own = generate_latest(self.registry)
        if self._results is not None:
            texts = list(self._results.families(shard))
        if not gzip:
            return own + "".join(texts).encode()
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip member
        packed = [packer.compress(own)]
        packed += [packer.compress(text.encode()) for text in texts]
        packed.append(packer.flush())
        return b"".join(packed)

    def respond(self, request: Request) -> Response:
        """``GET /metrics[?shard=I/N]``: the exposition, gzip when the scraper asks for it;
        400 with the reason for a shard that is not I/N."""
        asked = request.query.get("shard", [])
        shard = None
        if len(asked) > 1:
            return text_response("give one shard=I/N, not several\n", 400)
        if asked:
            try:
                shard = parse_shard(asked[0])
            except ValueError as exc:
                return text_response(f"{exc}\n", 400)
        gzip = "gzip" in request.headers.get("accept-encoding", "")
        body = self.exposition(gzip=gzip, shard=shard)
        headers = {"Vary": "Accept-Encoding"}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(200, body, "text/plain; version=0.0.4; charset=utf-8", headers)
