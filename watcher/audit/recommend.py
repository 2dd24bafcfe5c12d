"""What the audit recommends: each figure past its threshold becomes a recommendation with a
severity and an area, ranked so the most urgent come first."""

from __future__ import annotations

from collections import Counter

from watcher.audit.figures import Audit, Recommendation, ServerAudit, UsageFigures
from watcher.core.durations import format_duration, parse_duration

__all__ = ["recommend", "audit_counts", "format_bytes"]

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
    out: list[Recommendation] = []
    for s in audit.servers:
        out += _disk(s, audit)
        out += _usage(s, audit)
        out += _mail_queue(s, audit)
        out += _cleanup(s, audit)
        out += _old_files(s, audit)
    out += _fleet(audit)
    out += _heartbeats(audit)
    out += _sla(audit)
    out += _rules(audit)
    out.sort(
        key=lambda r: (SEVERITY_RANK[r.severity], AREA_RANK.get(r.area, 99), r.urgency, r.text)
    )
    return out


def _disk(s: ServerAudit, audit: Audit) -> list[Recommendation]:
    """Disks filling up or forecast to, and inodes running out."""
    t = audit.thresholds
    out: list[Recommendation] = []
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
    return out


def _usage(s: ServerAudit, audit: Audit) -> list[Recommendation]:
    """Load and memory spending hours past their lines."""
    out: list[Recommendation] = []
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
    return out


def _mail_queue(s: ServerAudit, audit: Audit) -> list[Recommendation]:
    """A mail queue that is long, old or growing."""
    t = audit.thresholds
    out: list[Recommendation] = []
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
    return out


def _cleanup(s: ServerAudit, audit: Audit) -> list[Recommendation]:
    """The largest and fastest-growing directories worth a look."""
    out: list[Recommendation] = []
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
    return out


def _old_files(s: ServerAudit, audit: Audit) -> list[Recommendation]:
    """Old files whose removal frees enough to matter."""
    t = audit.thresholds
    out: list[Recommendation] = []
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
    return out


def _fleet(audit: Audit) -> list[Recommendation]:
    """Devices that stopped checking in."""
    t = audit.thresholds
    out: list[Recommendation] = []
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
    return out


def _heartbeats(audit: Audit) -> list[Recommendation]:
    """Jobs that missed their heartbeats."""
    out: list[Recommendation] = []
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
    return out


def _sla(audit: Audit) -> list[Recommendation]:
    """Priorities whose incidents miss their SLA deadlines."""
    t = audit.thresholds
    out: list[Recommendation] = []
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
    return out


def _rules(audit: Audit) -> list[Recommendation]:
    """Rules that open more incidents than anyone can act on."""
    t = audit.thresholds
    out: list[Recommendation] = []
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
