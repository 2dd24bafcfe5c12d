"""The audit as Markdown, for chat and tickets: the recommendations first, then the tables."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from watcher.audit.figures import Audit
from watcher.audit.recommend import format_bytes
from watcher.core.durations import format_duration

__all__ = ["render_markdown"]


def _working(clock: str, seconds: float | None) -> str:
    """A business-hours priority's mean time in working hours, after the wall-clock one."""
    return f" ({_dur(seconds)} working)" if clock == "business" and seconds is not None else ""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _literal(text: str) -> str:
    """Text from a target (a file name) shown as written: Markdown's punctuation is
    backslash-escaped so that nothing in it becomes markup, code, a link or HTML."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!~&])", r"\\\1", text)


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return out + [""]


def _day(moment: datetime | None, tz: ZoneInfo, with_time: bool = False) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(tz).strftime("%d %b %Y %H:%M" if with_time else "%d %b %Y")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _dur(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return format_duration(value)
    return f"{value:.3g}{'%' if unit == '%' else ''}"


def render_markdown(audit: Audit) -> str:
    tz = ZoneInfo(audit.timezone)
    short = audit.end - audit.start < timedelta(days=2)  # then the hours matter
    lines = [
        f"# Server and usage audit: {audit.site}",
        "",
        f"{_day(audit.start, tz, short)} to {_day(audit.end, tz, short)} ({audit.period_text}), {audit.timezone}",
        "",
        "## Recommendations",
        "",
    ]
    if audit.recommendations:
        for index, r in enumerate(audit.recommendations, 1):
            detail = f" ({r.detail})" if r.detail else ""
            lines.append(f"{index}. **{r.severity.upper()}** {r.text}{detail}")
    else:
        lines.append("Nothing needs doing.")
    lines.append("")
    disks = [d for s in audit.servers for d in s.disks]
    if disks:
        lines += ["## Disks", ""]
        rows = []
        for d in disks:
            f = d.forecast
            full = (
                f"{_day(f.at, tz)} (in {f.days_left:.0f} d)"
                if f.usable and f.days_left is not None
                else "-"
            )
            growth = (
                "-"
                if f.per_week is None
                else "0 pts"
                if abs(f.per_week) < 0.005
                else f"{f.per_week:+.2f} pts"
            )
            rows.append(
                [
                    d.target,
                    d.path,
                    _pct(d.used_percent),
                    format_bytes(d.free_bytes),
                    growth,
                    full,
                    _pct(d.inodes_used_percent),
                    f.note or "-",
                ]
            )
        lines += _table(
            ["server", "mount", "used", "free", "growth a week", "full by", "inodes", "note"], rows
        )
    usage = [(s.target, u) for s in audit.servers for u in [*s.usage, *s.mail_queue]]
    if usage:
        lines += ["## Load, memory and mail queues", ""]
        rows = []
        for target, u in usage:
            st = u.stats
            unit = "%" if u.unit == "%" else "s" if u.unit == "s" else ""
            above = "-" if st.hours_above is None else f"{st.hours_above:.0f} h"
            rows.append(
                [
                    target,
                    u.label,
                    _num(st.p50, unit),
                    _num(st.p95, unit),
                    _num(st.max, unit),
                    _num(st.threshold, unit),
                    above,
                ]
            )
        lines += _table(
            ["server", "figure", "p50", "p95", "max", "threshold", "hours at or above"], rows
        )
    cleanup = [c for s in audit.servers for c in s.cleanup]
    if cleanup:
        lines += ["## Cleanup candidates", ""]
        lines += _table(
            ["server", "path", "why", "size", "growth a week"],
            [
                [
                    c.target,
                    c.path,
                    c.why,
                    format_bytes(c.size_bytes),
                    format_bytes(c.growth_bytes_per_week) if c.growth_bytes_per_week else "-",
                ]
                for c in cleanup
            ],
        )
    old = [o for s in audit.servers for o in s.old_files]
    if old:
        lines += ["## Old files", ""]
        lines += _table(
            ["server", "path", "not modified for over", "files", "size", "share of the mount"],
            [
                [
                    o.target,
                    o.path,
                    o.older_than,
                    "-" if o.files is None else f"{o.files:.0f}",
                    format_bytes(o.size_bytes),
                    f"{o.mount_percent:.1f}% of {o.mount}" if o.mount_percent is not None else "-",
                ]
                for o in old
            ],
        )
        listed = [(o, f) for o in old for f in o.largest]
        if listed:
            lines += ["The largest of them at the latest scan:", ""]
            lines += _table(
                ["server", "under", "size", "days old", "file"],
                [
                    [o.target, o.path, format_bytes(f.size_bytes), f.age_days, _literal(f.name)]
                    for o, f in listed
                ],
            )
    if audit.fleet:
        lines += ["## Device fleet", ""]
        lines += _table(
            ["source", "devices", "not checking in", "never", "stale ratio", "at the start"],
            [
                [
                    f.target,
                    _num(f.devices_total),
                    _num(f.stale_devices),
                    _num(f.never_checked_in),
                    _pct(None if f.stale_ratio is None else f.stale_ratio * 100),
                    _pct(None if f.ratio_first is None else f.ratio_first * 100),
                ]
                for f in audit.fleet
            ],
        )
    if audit.heartbeats:
        lines += ["## Heartbeats", ""]
        lines += _table(
            ["heartbeat", "times late or failed", "hours late or failed", "now"],
            [
                [h.name, h.missed, f"{h.failing_hours:.1f}", h.last_status or "-"]
                for h in audit.heartbeats
            ],
        )
    inc = audit.incidents
    lines += ["## Incidents and SLA", ""]
    lines.append(
        f"{inc.opened} incidents opened; MTTA {_dur(inc.mtta_s)}, MTTR {_dur(inc.mttr_s)}."
    )
    lines.append("")
    lines += _table(
        [
            "priority",
            "opened",
            "resolved",
            "open now",
            "response met",
            "resolution met",
            "MTTA",
            "MTTR",
        ],
        [
            [
                f"{p.priority} {p.name}",
                p.opened,
                p.resolved,
                p.open_now,
                f"{_pct(p.response.percent)} ({p.response.met}/{p.response.judged})"
                if p.response.judged
                else "-",
                f"{_pct(p.resolution.percent)} ({p.resolution.met}/{p.resolution.judged})"
                if p.resolution.judged
                else "-",
                _dur(p.mtta_s) + _working(p.clock, p.mtta_clock_s),
                _dur(p.mttr_s) + _working(p.clock, p.mttr_clock_s),
            ]
            for p in inc.by_priority
        ],
    )
    if inc.noisiest:
        lines += ["### Noisiest rules", ""]
        lines += _table(
            ["rule", "incidents", "reopened", "over within 15 min"],
            [[r.rule, r.incidents, r.reopens, r.short_lived] for r in inc.noisiest[:5]],
        )
    if audit.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in audit.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"
