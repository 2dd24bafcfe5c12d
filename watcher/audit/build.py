"""Server and usage audits: the figures a manager's report is made of.

The support policy promises "regular server and usage audits: proactive analysis of the
server and usage to preempt overloads, misuse, cleanups". This module reads the results
history and the incidents of a period and works out, per site and per server: disk per
mount with its growth and a forecast date-to-full, inodes, load and memory percentiles
and the hours spent overloaded, the mail queue's trend, cleanup candidates (the largest
and fastest-growing directories, and old files with the largest of them), the device
fleet's check-ins, missed heartbeats, incidents with SLA compliance, MTTA and MTTR, the
noisiest rules, and a ranked list of recommendations.

Every figure is built from whatever history exists: a site with no load probe gets an
audit without load figures and a note saying so, never an error. ``build_audit`` is a
pure function of the store's contents, the config and ``now``; the renderers
(``watcher.audit.report_html``, ``watcher.audit.report_md``, ``Audit.to_json``) only format it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from probes.du import OldFile, listed_old_files
from watcher.audit.forecast import Forecast, Hour, Stats, forecast, hourly, stats, trend
from watcher.config.models import Config
from watcher.config.thresholds import Thresholds
from watcher.core.durations import format_duration, parse_duration
from watcher.engine.incident import Incident
from watcher.engine.sla import deadline
from watcher.store import Store

__all__ = [
    "Audit",
    "Thresholds",
    "build_audit",
    "DiskFigures",
    "ServerAudit",
    "IncidentFigures",
    "OldFiles",
    "Recommendation",
    "format_bytes",
]

# Probe kinds the audit reads, by the names in probes/__init__.py.
DISK = "disk"
LOAD = "load"
MEMORY = "memory"
MAIL_QUEUE = "mail_queue"
DU = "du"
FLEET = "agent_checkins"
HEARTBEAT = "heartbeat"

# Metric names, first found wins: the probes name them, the audit only reads them.
QUEUE_LENGTH = ("queued",)
QUEUE_AGE = ("oldest_age_s",)
LOAD_PER_CORE = ("load1_per_core",)
CORES = ("cores",)
DU_SIZE = ("size_bytes",)  # per directory; the path's own result has total_bytes
OLD_FILES = "old_files"  # the du probe's old_files scan: how many, and their bytes
OLD_BYTES = "old_bytes"
OLD_FILES_LISTED = 5  # the largest old files shown per path
CHART_POINTS = 168  # a week of hours; longer periods are averaged down to it

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# Within a severity: outages before slowness, slowness before housekeeping.
AREA_RANK = {
    a: i
    for i, a in enumerate(
        (
            "sla",
            "disk",
            "inodes",
            "mail",
            "heartbeat",
            "fleet",
            "memory",
            "load",
            "cleanup",
            "rules",
        )
    )
}


# ------------------------------------------------------------------------ the figures


@dataclass
class DiskFigures:
    target: str
    path: str
    probe: str
    used_percent: float | None
    free_bytes: int | None
    size_bytes: int | None
    growth_bytes_per_week: int | None
    forecast: Forecast
    critical: Forecast
    inodes_used_percent: float | None
    inodes_forecast: Forecast | None
    history: list[tuple[datetime, float]]

    @property
    def name(self) -> str:
        return f"{self.path} on {self.target}"


@dataclass
class UsageFigures:
    """One usage figure of one server (load per core, memory, swap, queue length)."""

    label: str
    metric: str
    probe: str
    stats: Stats
    per_week: float | None
    history: list[tuple[datetime, float]]
    unit: str = ""
    growing: bool = False  # a trend clearly above the noise (t >= 3) and upward
    peaks: list[tuple[datetime, float]] = field(
        default_factory=list
    )  # the highest value in each chart point


@dataclass
class Cleanup:
    target: str
    path: str
    why: str  # "largest", "growing", "logs" (a log directory), or two of them
    size_bytes: int | None
    growth_bytes_per_week: int | None = None
    detail: str = ""


@dataclass
class OldFiles:
    """Files under a path not modified for ``older_than`` (the ``du`` probe's old_files)."""

    target: str
    path: str
    older_than: str  # as the probe labels it: 30d
    probe: str
    files: float | None
    size_bytes: int | None
    mount: str | None = None  # the measured mount holding ``path``, if a disk probe runs
    mount_percent: float | None = None  # ``size_bytes`` as a share of that mount's size
    largest: list[OldFile] = field(default_factory=list)  # from the latest result

    @property
    def name(self) -> str:
        return f"{self.path} on {self.target}"


@dataclass
class ServerAudit:
    target: str
    host: str | None
    description: str | None
    disks: list[DiskFigures] = field(default_factory=list)
    usage: list[UsageFigures] = field(default_factory=list)
    mail_queue: list[UsageFigures] = field(default_factory=list)
    cleanup: list[Cleanup] = field(default_factory=list)
    old_files: list[OldFiles] = field(default_factory=list)


@dataclass
class FleetFigures:
    target: str
    probe: str
    devices_total: float | None
    stale_devices: float | None
    never_checked_in: float | None
    stale_ratio: float | None
    ratio_per_week: float | None
    ratio_first: float | None
    history: list[tuple[datetime, float]]
    late: list[str]  # device lines from the latest evidence, stalest first


@dataclass
class HeartbeatFigures:
    target: str
    name: str
    results: int
    missed: int  # late or failed episodes: runs of failing results
    failing_hours: float
    last_status: str | None
    last_message: str


@dataclass
class SlaCount:
    met: int = 0
    missed: int = 0
    running: int = 0  # deadline not reached yet, not met yet

    @property
    def judged(self) -> int:
        return self.met + self.missed

    @property
    def percent(self) -> float | None:
        return 100.0 * self.met / self.judged if self.judged else None


@dataclass
class PriorityFigures:
    priority: str
    name: str
    clock: str
    response_target: str
    resolution_target: str
    opened: int = 0
    resolved: int = 0
    open_now: int = 0
    response: SlaCount = field(default_factory=SlaCount)
    resolution: SlaCount = field(default_factory=SlaCount)
    mtta_s: float | None = None
    mttr_s: float | None = None
    # the same on the priority's own clock: working time for a business-hours priority,
    # so a P3 raised on Friday evening is not charged the weekend
    mtta_clock_s: float | None = None
    mttr_clock_s: float | None = None


@dataclass
class RuleNoise:
    rule: str
    incidents: int
    reopens: int
    short_lived: int  # resolved within 15 minutes of opening
    targets: int
    priorities: list[str]

    @property
    def noise(self) -> int:
        return self.incidents + self.reopens


@dataclass
class IncidentFigures:
    opened: int
    by_priority: list[PriorityFigures]
    mtta_s: float | None
    mttr_s: float | None
    noisiest: list[RuleNoise]
    missed: list[dict[str, Any]]  # incidents that missed a deadline


@dataclass
class Recommendation:
    severity: str  # critical, high, medium, low
    text: str
    target: str | None = None
    area: str = ""  # disk, inodes, load, memory, mail, cleanup, fleet, heartbeat, sla, rules
    detail: str = ""
    urgency: float = 0.0  # smaller is more urgent within a severity (e.g. days left)


@dataclass
class Audit:
    site: str
    generated_at: datetime
    start: datetime
    end: datetime
    timezone: str
    servers: list[ServerAudit]
    fleet: list[FleetFigures]
    heartbeats: list[HeartbeatFigures]
    incidents: IncidentFigures
    recommendations: list[Recommendation]
    notes: list[str]
    thresholds: Thresholds

    @property
    def period_text(self) -> str:
        return format_duration(self.end - self.start)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    """Dataclasses, datetimes and non-finite floats as JSON wants them; properties too."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
        for name in ("percent", "judged", "usable", "noise", "name", "share_above"):
            attr = getattr(type(value), name, None)
            if isinstance(attr, property):
                out[name] = _plain(getattr(value, name))
        return out
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, 6)
    return value


# ------------------------------------------------------------------------ building


def build_audit(
    store: Store,
    config: Config,
    *,
    since: timedelta = timedelta(days=30),
    now: datetime,
    thresholds: Thresholds | None = None,
) -> Audit:
    """The audit of the ``since`` before ``now``, from the history in ``store``."""
    limits = thresholds or Thresholds()
    end = now.astimezone(UTC)
    start = end - since
    keys = store.series_keys(since=start)
    by_kind: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for target, probe, item, kind in keys:
        by_kind[kind].append((target, probe, item))
    latest = {r.key: r for r in store.latest()}
    targets = config.targets
    servers: dict[str, ServerAudit] = {}

    def server(name: str) -> ServerAudit:
        if name not in servers:
            t = targets.get(name)
            servers[name] = ServerAudit(name, t.host if t else None, t.description if t else None)
        return servers[name]

    notes: list[str] = []
    for target, probe, item in by_kind.get(DISK, []):
        figures = _disk(store, target, probe, item, start, end, limits)
        if figures is not None:
            server(target).disks.append(figures)
    for target, probe, item in by_kind.get(LOAD, []):
        server(target).usage.extend(_load(store, target, probe, item, start, end, limits))
    for target, probe, item in by_kind.get(MEMORY, []):
        server(target).usage.extend(_memory(store, target, probe, item, start, end, limits))
    for target, probe, item in by_kind.get(MAIL_QUEUE, []):
        server(target).mail_queue.extend(
            _mail_queue(store, target, probe, item, start, end, limits)
        )
    du_keys = by_kind.get(DU, [])
    for target in sorted({k[0] for k in du_keys}):
        keys_of_target = [k for k in du_keys if k[0] == target]
        s = server(target)
        s.cleanup.extend(_cleanup(store, keys_of_target, start, end))
        s.old_files.extend(_old_files(store, keys_of_target, latest, s.disks, start, end))
    fleet = [
        f
        for target, probe, item in by_kind.get(FLEET, [])
        if (f := _fleet(store, target, probe, item, latest, start, end)) is not None
    ]
    heartbeats = [
        _heartbeat(store, target, probe, item, latest, start, end)
        for target, probe, item in by_kind.get(HEARTBEAT, [])
    ]
    heartbeats = [h for h in heartbeats if h.results]
    for name in targets:  # configured servers appear even with no usage history yet
        if any(
            spec.kind in (DISK, LOAD, MEMORY, MAIL_QUEUE, DU)
            for spec in targets[name].probe_specs()
        ):
            server(name)
    for s in servers.values():
        s.disks.sort(key=lambda d: d.path)
    # a day either side, then exact: opened_at is compared as text in the store
    nearby = store.incidents_between(start - timedelta(days=1), end + timedelta(days=1))
    opened = [i for i in nearby if i.opened_at is not None and start <= i.opened_at < end]
    incident_figures = _incidents(opened, config, end, limits)
    for kind, what in (
        (DISK, "disk"),
        (LOAD, "load"),
        (MEMORY, "memory"),
        (MAIL_QUEUE, "mail queue"),
        (DU, "cleanup (du)"),
    ):
        if not by_kind.get(kind):
            notes.append(
                f"no {what} history in this period: add a {kind} probe to a target to see it here"
            )
    audit = Audit(
        site=config.site,
        generated_at=end,
        start=start,
        end=end,
        timezone=config.calendar.timezone,
        servers=[servers[n] for n in sorted(servers)],
        fleet=fleet,
        heartbeats=heartbeats,
        incidents=incident_figures,
        recommendations=[],
        notes=notes,
        thresholds=limits,
    )
    audit.recommendations = recommend(audit)
    return audit


def _series(
    store: Store, target: str, probe: str, metric: str, item: str, start: datetime, end: datetime
) -> list[Hour]:
    return hourly(store.series(target, probe, metric, start, end, item=item, hourly=True))


def _first_metric(
    store: Store,
    target: str,
    probe: str,
    item: str,
    names: Sequence[str],
    start: datetime,
    end: datetime,
) -> tuple[str, list[Hour]] | None:
    for name in names:
        hours = _series(store, target, probe, name, item, start, end)
        if hours:
            return name, hours
    return None


def chart_history(
    hours: Sequence[Hour], limit: int = CHART_POINTS, *, peaks: bool = False
) -> list[tuple[datetime, float]]:
    """At most ``limit`` points for a chart, averaging neighbours (time at each group's
    middle); with ``peaks``, the highest value of each group instead."""
    if not hours:
        return []
    if len(hours) <= limit:
        return [(h.middle, h.hi if peaks else h.mean) for h in hours]
    size = math.ceil(len(hours) / limit)
    out = []
    for i in range(0, len(hours), size):
        group = hours[i : i + size]
        weight = sum(h.hours for h in group)
        middle = group[0].middle + (group[-1].middle - group[0].middle) / 2
        out.append(
            (
                middle,
                max(h.hi for h in group)
                if peaks
                else sum(h.mean * h.hours for h in group) / weight,
            )
        )
    return out


def _last(hours: Sequence[Hour]) -> float | None:
    return hours[-1].mean if hours else None


def _now(
    store: Store,
    target: str,
    probe: str,
    metric: str,
    item: str,
    start: datetime,
    end: datetime,
    hours: Sequence[Hour],
) -> float | None:
    """What a report calls "now": the newest sample in the period, not its hour's mean
    (a disk that filled in the last minutes is shown as full as it is). Where compaction
    kept only summaries, the newest summary's mean is all there is."""
    value = store.last_value(target, probe, metric, item, start, end)
    return value if value is not None else _last(hours)


def _bytes(value: float | None) -> int | None:
    """Bytes are counted whole: an averaged or fitted figure is rounded to one."""
    return None if value is None or not math.isfinite(value) else round(value)


def _disk(
    store: Store,
    target: str,
    probe: str,
    path: str,
    start: datetime,
    end: datetime,
    limits: Thresholds,
) -> DiskFigures | None:
    used = _series(store, target, probe, "used_percent", path, start, end)
    if not used:
        return None
    used_bytes = _series(store, target, probe, "used_bytes", path, start, end)
    free = _series(store, target, probe, "free_bytes", path, start, end)
    size = _series(store, target, probe, "size_bytes", path, start, end)
    inodes = _series(store, target, probe, "inodes_used_percent", path, start, end)
    full = forecast(used, 100.0, end, unit="%")
    critical = forecast(used, limits.disk_critical, end, unit="%")
    growth_bytes = None
    if used_bytes:
        restart = cast(datetime | None, full.reset.get("at")) if full.reset else None
        segment = [h for h in used_bytes if restart is None or h.at >= restart]
        growth_bytes, _ = trend(segment)
    return DiskFigures(
        target=target,
        path=path or "/",
        probe=probe,
        used_percent=_now(store, target, probe, "used_percent", path, start, end, used),
        free_bytes=_bytes(_now(store, target, probe, "free_bytes", path, start, end, free)),
        size_bytes=_bytes(_now(store, target, probe, "size_bytes", path, start, end, size)),
        growth_bytes_per_week=_bytes(growth_bytes),
        forecast=full,
        critical=critical,
        inodes_used_percent=_now(
            store, target, probe, "inodes_used_percent", path, start, end, inodes
        ),
        inodes_forecast=forecast(inodes, 100.0, end, unit="%") if inodes else None,
        history=chart_history(used),
    )


def _usage(
    label: str,
    metric: str,
    probe: str,
    hours: list[Hour],
    threshold: float | None,
    unit: str = "",
    *,
    now: float | None = None,
) -> UsageFigures:
    per_week, fit = trend(hours)
    growing = fit is not None and fit.slope > 0 and fit.t_value >= 3
    return UsageFigures(
        label,
        metric,
        probe,
        stats(hours, threshold, now),
        per_week,
        chart_history(hours),
        unit,
        growing,
        chart_history(hours, peaks=True),
    )


def _load(
    store: Store,
    target: str,
    probe: str,
    item: str,
    start: datetime,
    end: datetime,
    limits: Thresholds,
) -> list[UsageFigures]:
    out = []

    def now(metric: str, hours: Sequence[Hour]) -> float | None:
        return _now(store, target, probe, metric, item, start, end, hours)

    per_core = _first_metric(store, target, probe, item, LOAD_PER_CORE, start, end)
    per_core_now = now(*per_core) if per_core is not None else None
    if per_core is None:
        load1 = _series(store, target, probe, "load1", item, start, end)
        cores = _first_metric(store, target, probe, item, CORES, start, end)
        if load1 and cores:
            count = max(cores[1][-1].mean, 1.0)
            per_core = (
                "load1/cores",
                [Hour(h.at, h.mean / count, h.hi / count, h.hours) for h in load1],
            )
            load_now, cores_now = now("load1", load1), now(*cores)
            if load_now is not None and cores_now is not None:
                per_core_now = load_now / max(cores_now, 1.0)
        elif load1:
            out.append(_usage("load (1 min)", "load1", probe, load1, None, now=now("load1", load1)))
    if per_core is not None:
        out.append(
            _usage(
                "load per core",
                per_core[0],
                probe,
                per_core[1],
                limits.load_per_core,
                now=per_core_now,
            )
        )
    return out


def _memory(
    store: Store,
    target: str,
    probe: str,
    item: str,
    start: datetime,
    end: datetime,
    limits: Thresholds,
) -> list[UsageFigures]:
    out = []
    for label, metric, threshold in (
        ("memory used", "used_percent", limits.memory),
        ("swap used", "swap_used_percent", limits.swap),
    ):
        hours = _series(store, target, probe, metric, item, start, end)
        if hours:
            now = _now(store, target, probe, metric, item, start, end, hours)
            out.append(_usage(label, metric, probe, hours, threshold, "%", now=now))
    return out


def _mail_queue(
    store: Store,
    target: str,
    probe: str,
    item: str,
    start: datetime,
    end: datetime,
    limits: Thresholds,
) -> list[UsageFigures]:
    out = []
    suffix = f" ({item})" if item else ""
    for label, names, threshold, unit in (
        ("mail queue", QUEUE_LENGTH, limits.queue_length, " messages"),
        ("oldest queued message", QUEUE_AGE, limits.queue_age_s, "s"),
    ):
        found = _first_metric(store, target, probe, item, names, start, end)
        if found:
            metric, hours = found
            now = _now(store, target, probe, metric, item, start, end, hours)
            out.append(_usage(label + suffix, metric, probe, hours, threshold, unit, now=now))
    return out


def du_directory(item: str) -> str:
    """The directory of a ``du`` result: its item is "<dir> <path>" (labels in key order)."""
    for index in range(len(item) - 1, 0, -1):
        if item[index] == " " and item[:index].startswith(item[index + 1 :]):
            return item[:index]
    return item


def _cleanup(
    store: Store, keys: list[tuple[str, str, str]], start: datetime, end: datetime
) -> list[Cleanup]:
    """The largest and the fastest-growing directories the ``du`` probe measured; log
    directories among them are named as such (rotating and compressing is the cleanup)."""
    sized: list[Cleanup] = []
    for target, probe, item in keys:
        found = _first_metric(store, target, probe, item, DU_SIZE, start, end)
        if found is None:
            continue
        metric, hours = found
        per_week, fit = trend(hours)
        grows = (
            per_week if fit is not None and fit.t_value >= 3 and per_week and per_week > 0 else None
        )
        directory = du_directory(item)
        why = "logs" if re.search(r"/(log|logs)(/|$)", directory) else "largest"
        size = _now(store, target, probe, metric, item, start, end, hours)
        sized.append(Cleanup(target, directory, why, _bytes(size), _bytes(grows)))
    largest = sorted(sized, key=lambda c: -(c.size_bytes or 0))[:5]
    chosen = {(c.target, c.path) for c in largest}
    growing = [
        Cleanup(c.target, c.path, "growing", c.size_bytes, c.growth_bytes_per_week)
        for c in sorted(
            (c for c in sized if c.growth_bytes_per_week),
            key=lambda c: -(c.growth_bytes_per_week or 0),
        )[:5]
    ]
    for g in growing:
        for c in largest:
            if (c.target, c.path) == (g.target, g.path):
                c.why = "logs, growing" if c.why == "logs" else "largest, growing"
    logs = [c for c in sized if c.why == "logs" and (c.target, c.path) not in chosen][:3]
    return largest + [g for g in growing if (g.target, g.path) not in chosen] + logs


def du_old_files_item(item: str) -> tuple[str, str]:
    """(older_than, path) of an old-files result: its item is "<older_than> <path>"."""
    older_than, _, path = item.partition(" ")
    return older_than, path


def _old_files(
    store: Store,
    keys: list[tuple[str, str, str]],
    latest: dict[Any, Any],
    disks: Sequence[DiskFigures],
    start: datetime,
    end: datetime,
) -> list[OldFiles]:
    """Per path the ``du`` probe scanned for old files: the latest count and total in the
    period, the share of the mount holding it, and the largest files the latest run saw."""
    out = []
    for target, probe, item in keys:
        size = _series(store, target, probe, OLD_BYTES, item, start, end)
        if not size:
            continue
        count = _series(store, target, probe, OLD_FILES, item, start, end)
        older_than, path = du_old_files_item(item)
        result = latest.get((target, probe, item))
        largest = listed_old_files(result.evidence) if result and result.status == "ok" else []
        figures = OldFiles(
            target,
            path,
            older_than,
            probe,
            _now(store, target, probe, OLD_FILES, item, start, end, count),
            _bytes(_now(store, target, probe, OLD_BYTES, item, start, end, size)),
            largest=largest[:OLD_FILES_LISTED],
        )
        mounts = [d for d in disks if path == d.path or path.startswith(d.path.rstrip("/") + "/")]
        if mounts:
            mount = max(mounts, key=lambda d: len(d.path))
            figures.mount = mount.path
            if mount.size_bytes and figures.size_bytes is not None:
                figures.mount_percent = 100.0 * figures.size_bytes / mount.size_bytes
        out.append(figures)
    return sorted(out, key=lambda o: (o.path, o.older_than))


def _fleet(
    store: Store,
    target: str,
    probe: str,
    item: str,
    latest: dict[Any, Any],
    start: datetime,
    end: datetime,
) -> FleetFigures | None:
    ratio = _series(store, target, probe, "stale_ratio", item, start, end)
    total = _series(store, target, probe, "devices_total", item, start, end)
    if not ratio and not total:
        return None
    stale = _series(store, target, probe, "stale_devices", item, start, end)
    never = _series(store, target, probe, "never_checked_in", item, start, end)
    per_week, _ = trend(ratio)

    def now(metric: str, hours: Sequence[Hour]) -> float | None:
        return _now(store, target, probe, metric, item, start, end, hours)

    result = latest.get((target, probe, item))
    lines = [
        line.strip() for line in (result.evidence if result else "").splitlines() if line.strip()
    ]
    late = [line for line in lines if not line.endswith(":")][:15]
    return FleetFigures(
        target=target,
        probe=probe,
        devices_total=now("devices_total", total),
        stale_devices=now("stale_devices", stale),
        never_checked_in=now("never_checked_in", never),
        stale_ratio=now("stale_ratio", ratio),
        ratio_per_week=per_week,
        ratio_first=ratio[0].mean if ratio else None,
        history=chart_history(ratio),
        late=late,
    )


def _heartbeat(
    store: Store,
    target: str,
    probe: str,
    item: str,
    latest: dict[Any, Any],
    start: datetime,
    end: datetime,
) -> HeartbeatFigures:
    """Late or failed episodes of a pushed heartbeat: each unbroken run of failing
    results (or of hours with one) counts once, however often it was re-reported."""
    points = store.series(target, probe, "_up", start, end, item=item)
    episodes, failing, previous_end = 0, 0.0, None
    in_episode = False
    for p in points:
        bad = p.lo < 1.0
        contiguous = previous_end is not None and p.at <= previous_end + timedelta(hours=1)
        if bad and not (in_episode and contiguous):
            episodes += 1
        in_episode = bad
        previous_end = p.at + timedelta(seconds=p.span)
        if bad and p.span:
            failing += p.span / 3600 * (1.0 - p.mean)
    raw = [p for p in points if not p.span]
    for a, b in zip(raw, raw[1:], strict=False):
        if a.lo < 1.0:
            failing += (b.at - a.at).total_seconds() / 3600
    last = latest.get((target, probe, item))
    return HeartbeatFigures(
        target,
        item or probe,
        sum(p.n for p in points),
        episodes,
        round(failing, 2),
        last.status if last else None,
        last.message if last else "",
    )


# ------------------------------------------------------------------------ incidents


def _incidents(
    incidents: Iterable[Incident], config: Config, now: datetime, limits: Thresholds
) -> IncidentFigures:
    policies = config.rules.priorities
    calendar = config.calendar
    figures: dict[str, PriorityFigures] = {}
    for name in sorted(policies):
        p = policies[name]
        figures[name] = PriorityFigures(
            name,
            p.name,
            p.clock,
            str(p.response) if p.response else "none",
            str(p.resolve) if p.resolve else "case by case",
        )
    acks: dict[str, list[float]] = defaultdict(list)
    repairs: dict[str, list[float]] = defaultdict(list)
    acks_clock: dict[str, list[float]] = defaultdict(list)
    repairs_clock: dict[str, list[float]] = defaultdict(list)
    rules: dict[str, list[Incident]] = defaultdict(list)
    missed: list[dict[str, Any]] = []
    opened = 0
    for inc in incidents:
        if inc.opened_at is None or inc.priority is None:
            continue
        opened += 1
        pf = figures.get(inc.priority)
        if pf is None:  # a priority no longer defined: counted, not judged
            pf = figures[inc.priority] = PriorityFigures(
                inc.priority, inc.priority, "24x7", "none", "none"
            )
        pf.opened += 1
        if inc.state == "resolved":
            pf.resolved += 1
        elif inc.state in ("open", "acknowledged"):
            pf.open_now += 1
        policy = policies.get(inc.priority)
        response_due = inc.response_due or (
            deadline(inc.opened_at, policy.response, policy.clock, calendar) if policy else None
        )
        resolve_due = inc.resolve_due or (
            deadline(inc.opened_at, policy.resolve, policy.clock, calendar) if policy else None
        )
        # Responding is the start of the investigation: an acknowledgement, or the fix itself.
        responded = min(
            (t for t in (inc.acknowledged_at, inc.resolved_at) if t is not None), default=None
        )
        verdicts = {}
        for which, due, done, count in (
            ("response", response_due, responded, pf.response),
            ("resolution", resolve_due, inc.resolved_at, pf.resolution),
        ):
            # An incident never handed to people (held back by a maintenance window, a
            # down parent or an outage that stood for it) had nobody to respond.
            if due is None or not inc.notified:
                continue
            if done is not None:
                ok = done <= due
            elif now >= due:
                ok = False
            else:
                count.running += 1
                continue
            if ok:
                count.met += 1
            else:
                count.missed += 1
            verdicts[which] = ok
        if verdicts and not all(verdicts.values()):
            missed.append(
                {
                    "id": inc.id,
                    "priority": inc.priority,
                    "target": inc.target,
                    "summary": inc.summary or inc.message,
                    "opened_at": inc.opened_at,
                    "missed": sorted(k for k, v in verdicts.items() if not v),
                    "response_due": response_due,
                    "resolve_due": resolve_due,
                    "acknowledged_at": inc.acknowledged_at,
                    "resolved_at": inc.resolved_at,
                }
            )
        for done, wall, clocked in (
            (inc.acknowledged_at, acks, acks_clock),
            (inc.resolved_at, repairs, repairs_clock),
        ):
            if done is not None:
                wall[inc.priority].append((done - inc.opened_at).total_seconds())
                clocked[inc.priority].append(
                    calendar.between(inc.opened_at, done)
                    if pf.clock == "business"
                    else (done - inc.opened_at).total_seconds()
                )
        rules[inc.rule or "?"].append(inc)
    for name, pf in figures.items():
        pf.mtta_s = _mean(acks.get(name, []))
        pf.mttr_s = _mean(repairs.get(name, []))
        pf.mtta_clock_s = _mean(acks_clock.get(name, []))
        pf.mttr_clock_s = _mean(repairs_clock.get(name, []))
    noisiest = []
    for rule, items in rules.items():
        short = sum(
            1
            for i in items
            if i.resolved_at
            and i.opened_at
            and i.resolved_at - i.opened_at <= timedelta(minutes=15)
        )
        noisiest.append(
            RuleNoise(
                rule=rule,
                incidents=len(items),
                reopens=sum(i.reopen_count for i in items),
                short_lived=short,
                targets=len({i.target for i in items}),
                priorities=sorted({i.priority for i in items if i.priority}),
            )
        )
    noisiest.sort(key=lambda r: (-r.noise, -r.short_lived, r.rule))
    all_acks = [v for values in acks.values() for v in values]
    all_repairs = [v for values in repairs.values() for v in values]
    shown = [pf for pf in figures.values() if pf.opened or pf.priority in policies]
    missed.sort(key=lambda m: (m["priority"], m["opened_at"]))
    return IncidentFigures(
        opened, shown, _mean(all_acks), _mean(all_repairs), noisiest[:10], missed
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------------ recommendations


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{sign}{value:.3g} {unit}" if unit != "B" else f"{sign}{value:.0f} B"
        value /= 1000
    return f"{sign}{value:.3g} TB"


def _days(days: float) -> str:
    if days < 1:
        hours = max(1, round(days * 24))
        return f"about {hours} hour{'s' if hours != 1 else ''}"
    whole = round(days)
    return f"about {whole} day{'s' if whole != 1 else ''}"


def _severity_for_days(days: float) -> str:
    if days <= 7:
        return "critical"
    if days <= 30:
        return "high"
    return "medium"


def recommend(audit: Audit) -> list[Recommendation]:
    """What to do, most urgent first: from the figures only, never from guesses."""
    t = audit.thresholds
    out: list[Recommendation] = []
    for s in audit.servers:
        for d in s.disks:
            used = d.used_percent
            f = d.forecast
            rate = f"{f.per_week:+.1f} points a week" if f.per_week is not None else ""
            if used is not None and used >= t.disk_critical:
                out.append(
                    Recommendation(
                        "critical",
                        f"{d.path} on {d.target} is {used:.0f}% full now: free space or grow it today",
                        d.target,
                        "disk",
                        rate,
                        0.0,
                    )
                )
            elif f.usable and f.days_left is not None and f.days_left <= t.forecast_days:
                rough = " (rough: the data are noisy)" if f.confidence == "rough" else ""
                text = f"{d.path} on {d.target} full in {_days(f.days_left)} at the current rate{rough}"
                detail = f"{used:.0f}% used now, {rate}" if used is not None else rate
                if d.growth_bytes_per_week:
                    detail += f", {format_bytes(d.growth_bytes_per_week)} a week"
                out.append(
                    Recommendation(
                        _severity_for_days(f.days_left), text, d.target, "disk", detail, f.days_left
                    )
                )
            elif used is not None and used >= t.disk_high:
                out.append(
                    Recommendation(
                        "medium",
                        f"{d.path} on {d.target} is {used:.0f}% full; plan a cleanup",
                        d.target,
                        "disk",
                        f.note,
                        1000.0 - used,
                    )
                )
            fi = d.inodes_forecast
            iu = d.inodes_used_percent
            if iu is not None and iu >= t.inodes_high:
                out.append(
                    Recommendation(
                        "high",
                        f"{d.path} on {d.target} has used {iu:.0f}% of its inodes: look for many small files",
                        d.target,
                        "inodes",
                        "",
                        100.0 - iu,
                    )
                )
            elif (
                fi is not None
                and fi.usable
                and fi.days_left is not None
                and fi.days_left <= t.forecast_days
            ):
                out.append(
                    Recommendation(
                        _severity_for_days(fi.days_left),
                        f"{d.path} on {d.target} runs out of inodes in {_days(fi.days_left)} at the current rate",
                        d.target,
                        "inodes",
                        "",
                        fi.days_left,
                    )
                )
        for u in s.usage:
            st = u.stats
            if st.threshold is None or st.hours_above is None or not st.hours:
                continue
            share = st.share_above
            if st.hours_above <= 0:
                continue
            severity = "high" if share >= 0.05 else "medium" if share >= 0.01 else "low"
            area = "load" if "load" in u.label else "memory"
            if area == "load":
                text = f"{s.target} was overloaded for {st.hours_above:.0f} h ({share:.0%} of the period): load per core at or above {st.threshold:g}"
            else:
                text = f"{s.target}: {u.label} at or above {st.threshold:g}% for {st.hours_above:.0f} h ({share:.0%} of the period)"
            detail = f"p50 {_num(st.p50)}, p95 {_num(st.p95)}, max {_num(st.max)}"
            out.append(Recommendation(severity, text, s.target, area, detail, 1.0 - share))
        for q in s.mail_queue:
            st = q.stats
            is_age = q.unit == "s"
            if is_age and st.now is not None and st.now >= t.queue_age_s:
                out.append(
                    Recommendation(
                        "high",
                        f"{s.target}: the oldest queued mail is {format_duration(st.now)} old: delivery is stuck",
                        s.target,
                        "mail",
                        q.label,
                        0.0,
                    )
                )
            elif not is_age and st.hours_above:
                out.append(
                    Recommendation(
                        "high",
                        f"{s.target}: {q.label} held {t.queue_length:g}+ messages for {st.hours_above:.0f} h",
                        s.target,
                        "mail",
                        f"p95 {_num(st.p95)}, max {_num(st.max)}",
                        1.0,
                    )
                )
            elif (
                not is_age
                and q.growing
                and q.per_week is not None
                and _grew(q, audit) >= max(10.0, 0.5 * (st.p50 or 0))
            ):
                out.append(
                    Recommendation(
                        "medium",
                        f"{s.target}: {q.label} keeps growing ({q.per_week:+.0f} messages a week)",
                        s.target,
                        "mail",
                        "",
                        10.0,
                    )
                )
        for c in s.cleanup:
            if "growing" in c.why and c.growth_bytes_per_week:
                out.append(
                    Recommendation(
                        "low",
                        f"Clean up {c.path} on {c.target}: {format_bytes(c.size_bytes)}, growing {format_bytes(c.growth_bytes_per_week)} a week",
                        c.target,
                        "cleanup",
                        "",
                        -c.growth_bytes_per_week,
                    )
                )
            elif c.why.startswith("logs"):
                out.append(
                    Recommendation(
                        "low",
                        f"Log directory {c.path} on {c.target} holds {format_bytes(c.size_bytes)}: rotate and compress old logs",
                        c.target,
                        "cleanup",
                        "",
                        -(c.size_bytes or 0),
                    )
                )
        for o in s.old_files:
            mount_share = o.mount_percent
            if not o.size_bytes or not (
                o.size_bytes >= t.old_files_bytes
                or (mount_share is not None and mount_share >= t.old_files_percent)
            ):
                continue
            out.append(
                Recommendation(
                    "low",
                    f"{o.path} on {o.target}: {o.files or 0:.0f} files untouched for over "
                    f"{_age(o.older_than)} take {format_bytes(o.size_bytes)}; compress or remove them",
                    o.target,
                    "cleanup",
                    f"{mount_share:.1f}% of {o.mount}" if mount_share is not None else "",
                    -o.size_bytes,
                )
            )
    for fleet in audit.fleet:
        ratio = fleet.stale_ratio
        if ratio is not None and ratio >= t.stale_ratio:
            rising = ""
            if fleet.ratio_first is not None and ratio > fleet.ratio_first:
                rising = f", up from {fleet.ratio_first:.0%}"
            stale = (
                f"{fleet.stale_devices:.0f} of {fleet.devices_total:.0f}"
                if fleet.stale_devices is not None and fleet.devices_total
                else f"{ratio:.0%}"
            )
            out.append(
                Recommendation(
                    "high" if ratio >= 2 * t.stale_ratio else "medium",
                    f"{stale} devices on {fleet.target} are not checking in ({ratio:.0%}{rising})",
                    fleet.target,
                    "fleet",
                    "",
                    -ratio,
                )
            )
        if fleet.never_checked_in:
            out.append(
                Recommendation(
                    "medium",
                    f"{fleet.never_checked_in:.0f} devices on {fleet.target} have never checked in: finish their enrolment",
                    fleet.target,
                    "fleet",
                    "",
                    -fleet.never_checked_in,
                )
            )
    for h in audit.heartbeats:
        if h.missed:
            out.append(
                Recommendation(
                    "high" if h.last_status != "ok" else "medium",
                    f"Heartbeat {h.name} was late or failed {h.missed} time{'s' if h.missed != 1 else ''}"
                    + (" and is failing now" if h.last_status not in (None, "ok") else ""),
                    h.target,
                    "heartbeat",
                    h.last_message,
                    -h.missed,
                )
            )
    for pf in audit.incidents.by_priority:
        for which, count in (("response", pf.response), ("resolution", pf.resolution)):
            percent = count.percent
            if percent is not None and percent < t.sla_target:
                severity = "critical" if pf.priority == "P1" else "high"
                out.append(
                    Recommendation(
                        severity,
                        f"{pf.priority} {which} SLA met for {percent:.0f}% of incidents ({count.met} of {count.judged}); the target is {t.sla_target:g}%",
                        None,
                        "sla",
                        "",
                        percent,
                    )
                )
    for r in audit.incidents.noisiest:
        if r.incidents >= t.noisy_rule_incidents or r.reopens >= 3:
            out.append(
                Recommendation(
                    "low",
                    f"Rule {r.rule} opened {r.incidents} incidents ({r.reopens} reopened, {r.short_lived} over within 15 min): raise its threshold or add a 'for:'",
                    None,
                    "rules",
                    "",
                    -r.noise,
                )
            )
    out.sort(
        key=lambda r: (SEVERITY_RANK[r.severity], AREA_RANK.get(r.area, 99), r.urgency, r.text)
    )
    return out


def _age(older_than: str) -> str:
    """``30d`` as "30 days"; other durations as written."""
    try:
        seconds = parse_duration(older_than).total_seconds()
    except ValueError:
        return older_than
    days = seconds / 86400
    if days != int(days):
        return older_than
    return f"{days:.0f} day{'s' if days != 1 else ''}"


def _grew(u: UsageFigures, audit: Audit) -> float:
    """How much the fitted trend rose over the period."""
    return (u.per_week or 0.0) * (audit.end - audit.start).total_seconds() / (7 * 86400)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def audit_counts(audit: Audit) -> Counter[str]:
    """Recommendations per severity, for subjects and logs."""
    return Counter(r.severity for r in audit.recommendations)
