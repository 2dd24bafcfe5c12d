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

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from probes.du import old_files_of
from watcher.audit.figures import (
    Audit,
    Cleanup,
    DiskFigures,
    FleetFigures,
    HeartbeatFigures,
    IncidentFigures,
    OldFiles,
    PriorityFigures,
    RuleNoise,
    ServerAudit,
    UsageFigures,
)
from watcher.audit.forecast import Hour, forecast, hourly, stats, trend
from watcher.audit.recommend import recommend
from watcher.config.models import Config
from watcher.config.thresholds import Thresholds
from watcher.engine.incident import Incident
from watcher.engine.sla import deadline
from watcher.store import Store

__all__ = ["build_audit", "chart_history", "du_directory", "du_old_files_item"]

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
        largest = old_files_of(result, latest.values()) if result and result.status == "ok" else []
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
