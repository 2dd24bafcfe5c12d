"""The audit as one self-contained HTML page: inline CSS, inline SVG charts, nothing fetched.

The page carries a Content-Security-Policy that forbids every outside load (no scripts,
fonts, images or styles from anywhere), so it opens the same from a mail attachment, a
file share or a browser with no network, and prints on A4 with each section kept whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from watcher.audit import (
    Audit,
    FleetFigures,
    OldFiles,
    PriorityFigures,
    Recommendation,
    ServerAudit,
    UsageFigures,
    format_bytes,
)
from watcher.durations import format_duration
from watcher.forecast import Forecast

__all__ = ["render_html", "line_chart", "sla_bars", "CSP"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
PALETTE = ("#1f6fb2", "#d9730d", "#2e8540", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b7950b")
SEVERITY_COLOURS = {"critical": "#b71c1c", "high": "#e65100", "medium": "#f9a825", "low": "#607d8b"}
WARN = "#f9a825"
CRIT = "#c62828"

_CSS = """
:root { --ink: #1d2733; --muted: #5f6b7a; --line: #d8dee6; --soft: #f4f6f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1000px; padding: 24px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 8px; margin: 12px 0; }
.tile { background: var(--soft); border-radius: 6px; padding: 8px 10px; }
.tile b { display: block; font-size: 20px; }
.tile span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.file { overflow-wrap: anywhere; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.note { color: var(--muted); font-size: 12px; }
ol.recs { padding-left: 22px; }
ol.recs li { margin: 4px 0; }
.badge { display: inline-block; min-width: 62px; text-align: center; color: #fff; border-radius: 3px;
         font-size: 11px; font-weight: 700; text-transform: uppercase; padding: 1px 6px; margin-right: 6px; }
.sev-critical { background: #b71c1c; } .sev-high { background: #e65100; }
.sev-medium { background: #f9a825; color: #222; } .sev-low { background: #607d8b; }
.bad { color: #b71c1c; font-weight: 600; } .good { color: #2e7d32; }
figure { margin: 8px 0 14px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
section.server { border-top: 1px solid var(--line); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  h2 { break-after: avoid; }
  figure, table, .tiles, li { break-inside: avoid; }
  section.server { break-before: auto; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


# ------------------------------------------------------------------------ charts


_TIME_STEPS = (
    1,
    5,
    10,
    15,
    30,
    60,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)


def _nice_step(span: float, ticks: int = 5, unit: str = "") -> float:
    raw = span / max(ticks, 1)
    if raw <= 0:
        return 1.0
    if unit == "s":
        return float(next((step for step in _TIME_STEPS if step >= raw), _TIME_STEPS[-1]))
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _fmt_axis(value: float, unit: str) -> str:
    if unit == "B":
        return format_bytes(value)
    if unit == "s":
        return format_duration(value) if value else "0"
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    text = f"{value:.3g}"
    return text + ("%" if unit == "%" else "")


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[datetime, float]]]],
    *,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    unit: str = "",
    y_max: float | None = None,
    thresholds: Sequence[tuple[float, str, str]] = (),
    forecasts: Sequence[tuple[str, tuple[tuple[datetime, float], tuple[datetime, float]]]] = (),
    width: int = 720,
    height: int = 230,
) -> str:
    """An SVG line chart: one line per series, dashed threshold lines, dotted forecasts.

    The time axis runs from ``start`` to ``end``, stretched to show forecasts that land
    within one more period; a forecast beyond that is drawn up to the edge.
    """
    left, right, top, bottom = 58, 16, 26, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    period = (end - start).total_seconds() or 1.0
    # room for forecasts: up to half the period ahead (two weeks at least), so a date
    # that matters shows its marker and a far one shows its direction
    ahead = end + timedelta(seconds=max(period / 2, 14 * 86400))
    x_end = end
    for _, ((_, _), (t1, _)) in forecasts:
        if t1 > x_end:
            x_end = min(max(x_end, t1 + timedelta(seconds=period * 0.03)), ahead)
    x0, x1 = start.timestamp(), x_end.timestamp()
    values = [v for _, pts in series for _, v in pts] + [v for v, _, _ in thresholds]
    top_value = y_max if y_max is not None else (max(values) * 1.1 if values else 1.0)
    top_value = top_value or 1.0
    step = _nice_step(top_value, unit=unit)
    if y_max is None:
        top_value = math.ceil(top_value / step) * step

    def sx(t: datetime) -> float:
        return left + (t.timestamp() - x0) / (x1 - x0) * plot_w

    def sy(v: float) -> float:
        v = max(0.0, min(v, top_value))
        return top + plot_h - v / top_value * plot_h

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfcfd" stroke="#d8dee6"/>',
    ]
    tick = 0.0
    while tick <= top_value + 1e-9:
        y = sy(tick)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6eaf0"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5f6b7a">'
            f"{escape(_fmt_axis(tick, unit))}</text>"
        )
        tick += step
    days = (x1 - x0) / 86400
    every = max(1, round(days / 7))
    local_start = datetime.fromtimestamp(x0, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    day = local_start + timedelta(days=1)
    while day.timestamp() <= x1:
        if (day - local_start).days % every == 0:
            x = sx(day)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eef1f5"/>'
            )
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" fill="#5f6b7a">'
                f"{day:%d %b}</text>"
            )
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)
    if x_end > end:
        x = sx(end)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#5f6b7a" stroke-dasharray="2 3"/>'
        )
        parts.append(
            f'<text x="{x + 4:.1f}" y="{top + 12}" font-size="10" fill="#5f6b7a">now</text>'
        )
    for value, label, colour in thresholds:
        y = sy(value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-width="1.5" stroke-dasharray="6 4" class="threshold"/>'
        )
        parts.append(
            f'<text x="{left + 4}" y="{y - 4:.1f}" font-size="10" fill="{colour}">{escape(label)}</text>'
        )
    legend = []
    for index, (label, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        legend.append((label, colour, ""))
        if not points:
            continue
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{sx(t):.1f},{sy(v):.1f}" for i, (t, v) in enumerate(points)
        )
        parts.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.8" class="series"/>'
        )
        if len(points) == 1:
            t, v = points[0]
            parts.append(f'<circle cx="{sx(t):.1f}" cy="{sy(v):.1f}" r="3" fill="{colour}"/>')
    colours = {name: PALETTE[i % len(PALETTE)] for i, (name, _) in enumerate(series)}
    for label, ((t0, v0), (t1, v1)) in forecasts:
        colour = colours.get(label, "#37474f")
        if t1 > x_end:  # cut the line where the axis ends
            fraction = (x_end.timestamp() - t0.timestamp()) / (t1.timestamp() - t0.timestamp())
            t1, v1, marker = x_end, v0 + (v1 - v0) * fraction, False
        else:
            marker = True
        parts.append(
            f'<path d="M{sx(t0):.1f},{sy(v0):.1f} L{sx(t1):.1f},{sy(v1):.1f}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5" stroke-dasharray="2 3" class="forecast"/>'
        )
        if marker:
            parts.append(
                f'<circle cx="{sx(t1):.1f}" cy="{sy(v1):.1f}" r="4" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            parts.append(
                f'<text x="{sx(t1) - 6:.1f}" y="{sy(v1) + 14:.1f}" text-anchor="end" font-size="10" fill="{colour}">'
                f"{escape(label)} {t1.astimezone(tz):%d %b}</text>"
            )
        legend.append((f"{label} (forecast)", colour, "2 3"))
    x = left
    for label, colour, dash in legend[:8]:
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{x}" x2="{x + 18}" y1="12" y2="12" stroke="{colour}" stroke-width="2"{dash_attr}/>'
        )
        parts.append(
            f'<text x="{x + 22}" y="16" font-size="11" fill="#1d2733">{escape(label)}</text>'
        )
        x += 30 + 6.5 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def sla_bars(audit: Audit, width: int = 720) -> str:
    """Horizontal bars: the share of incidents that met their response and resolution times."""
    rows = [p for p in audit.incidents.by_priority if p.response.judged or p.resolution.judged]
    if not rows:
        return ""
    label_w, right = 170, 120
    bar_w = width - label_w - right
    row_h, top = 22, 10
    height = top + len(rows) * 2 * row_h + len(rows) * 8 + 24
    target = audit.thresholds.sla_target
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="SLA compliance by priority" class="chart sla">',
        "<title>SLA compliance by priority</title>",
    ]
    y = top
    for p in rows:
        for which, count in (("response", p.response), ("resolution", p.resolution)):
            parts.append(
                f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12" fill="#1d2733">'
                f"{escape(p.priority)} {which}</text>"
            )
            parts.append(
                f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 6}" fill="#eef1f5"/>'
            )
            if count.judged:
                percent = count.percent or 0.0
                colour = (
                    "#2e7d32"
                    if percent >= target
                    else "#e65100"
                    if percent >= target - 20
                    else "#c62828"
                )
                parts.append(
                    f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * percent / 100:.1f}" height="{row_h - 6}" '
                    f'fill="{colour}" class="bar"/>'
                )
                text = f"{percent:.0f}% ({count.met}/{count.judged})"
            else:
                text = "nothing judged yet"
            if count.running:
                text += f", {count.running} running"
            parts.append(
                f'<text x="{label_w + bar_w + 6}" y="{y + 15}" font-size="12" fill="#1d2733">{escape(text)}</text>'
            )
            y += row_h
        y += 8
    tx = label_w + bar_w * target / 100
    parts.append(
        f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{y}" stroke="#1d2733" stroke-dasharray="4 3" class="threshold"/>'
    )
    parts.append(
        f'<text x="{tx:.1f}" y="{y + 14}" text-anchor="middle" font-size="11" fill="#1d2733">target {target:g}%</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------ page


def _when(moment: datetime | None, tz: ZoneInfo, with_time: bool = False) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(tz)
    return local.strftime("%a %d %b %Y %H:%M") if with_time else local.strftime("%d %b %Y")


def _pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return format_duration(value)
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:.3g}{unit}"


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _forecast_cell(f: Forecast, tz: ZoneInfo) -> str:
    if f.at is not None and f.days_left is not None and f.confidence != "none":
        if f.days_left == 0:
            return '<span class="bad">now</span>'
        cls = ' class="bad"' if f.days_left <= 30 else ""
        rough = " (rough)" if f.confidence == "rough" else ""
        return f'<span{cls}>{_when(f.at, tz)}</span> <span class="note">in {f.days_left:.0f} d{rough}</span>'
    return '<span class="note">-</span>'


def _recommendations(recs: Sequence[Recommendation]) -> str:
    if not recs:
        return "<p>Nothing needs doing: no disk fills within the forecast horizon, no overloads, every SLA met.</p>"
    items = []
    for r in recs:
        detail = f' <span class="note">{escape(r.detail)}</span>' if r.detail else ""
        items.append(
            f'<li><span class="badge sev-{r.severity}">{r.severity}</span>{escape(r.text)}{detail}</li>'
        )
    return '<ol class="recs">' + "".join(items) + "</ol>"


def _disk_section(s: ServerAudit, audit: Audit, tz: ZoneInfo) -> str:
    if not s.disks:
        return ""
    t = audit.thresholds
    rows = []
    for d in s.disks:
        f = d.forecast
        note = (
            f.note
            if f.note
            else f"fit over {f.points} h, R² {f.r2:.2f}"
            if f.r2 is not None
            else ""
        )
        inodes = _pct(d.inodes_used_percent)
        if (
            d.inodes_forecast is not None
            and d.inodes_forecast.usable
            and d.inodes_forecast.days_left is not None
        ):
            inodes += f' <span class="note">full {_when(d.inodes_forecast.at, tz)}</span>'
        used_cls = ' class="n bad"' if (d.used_percent or 0) >= t.disk_high else ' class="n"'
        growth = (
            "-"
            if f.per_week is None
            else "0 pts"
            if abs(f.per_week) < 0.005
            else f"{f.per_week:+.2f} pts"
        )
        if d.growth_bytes_per_week is not None:
            growth += f" ({format_bytes(d.growth_bytes_per_week)})"
        rows.append(
            f"<tr><td>{escape(d.path)}</td><td{used_cls}>{_pct(d.used_percent, 1)}</td>"
            f'<td class="n">{format_bytes(d.free_bytes)}</td><td class="n">{format_bytes(d.size_bytes)}</td>'
            f'<td class="n">{escape(growth)}</td><td>{_forecast_cell(d.critical, tz)}</td><td>{_forecast_cell(f, tz)}</td>'
            f'<td class="n">{inodes}</td><td class="note">{escape(note)}</td></tr>'
        )
    table = (
        '<h3>Disks</h3><table><tr><th>mount</th><th class="n">used</th><th class="n">free</th><th class="n">size</th>'
        f'<th class="n">growth a week</th><th>{t.disk_critical:g}% by</th><th>full by</th><th class="n">inodes</th><th>forecast note</th></tr>'
        + "".join(rows)
        + "</table>"
    )
    series = [(d.path, d.history) for d in s.disks]
    forecasts = [
        (d.path, d.forecast.line)
        for d in s.disks
        if d.forecast.line is not None and d.forecast.usable
    ]
    chart = line_chart(
        f"Disk usage on {s.target}",
        series,
        start=audit.start,
        end=audit.end,
        tz=tz,
        unit="%",
        y_max=100.0,
        thresholds=[
            (t.disk_high, f"high {t.disk_high:g}%", WARN),
            (t.disk_critical, f"critical {t.disk_critical:g}%", CRIT),
        ],
        forecasts=forecasts,
    )
    caption = "Hourly means; dashed lines: the rule pack's thresholds; dotted: the forecast from a straight-line fit."
    return table + f'<figure class="disk-chart">{chart}<figcaption>{caption}</figcaption></figure>'


def _usage_rows(items: Sequence[UsageFigures]) -> str:
    rows = []
    for u in items:
        st = u.stats
        above = "-" if st.hours_above is None else f"{st.hours_above:.0f} h"
        if st.hours_above:
            above = (
                f'<span class="bad">{above}</span> <span class="note">({st.share_above:.0%})</span>'
            )
        limit = (
            ""
            if st.threshold is None
            else _num(st.threshold, u.unit if u.unit != " messages" else "")
        )
        trend = "-" if u.per_week is None else f"{u.per_week:+.3g}"
        rows.append(
            f'<tr><td>{escape(u.label)}</td><td class="n">{_num(st.now, u.unit)}</td><td class="n">{_num(st.p50, u.unit)}</td>'
            f'<td class="n">{_num(st.p95, u.unit)}</td><td class="n">{_num(st.max, u.unit)}</td>'
            f'<td class="n">{escape(limit)}</td><td class="n">{above}</td><td class="n">{escape(trend)}</td></tr>'
        )
    return (
        '<table><tr><th>figure</th><th class="n">now</th><th class="n">p50</th><th class="n">p95</th><th class="n">max</th>'
        '<th class="n">threshold</th><th class="n">hours at or above</th><th class="n">change a week</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _usage_chart(u: UsageFigures, target: str, audit: Audit, tz: ZoneInfo) -> str:
    unit = "%" if u.unit == "%" else "s" if u.unit == "s" else ""
    thresholds = (
        [(u.stats.threshold, f"threshold {_num(u.stats.threshold, unit)}", CRIT)]
        if u.stats.threshold is not None
        else []
    )
    chart = line_chart(
        f"{u.label} on {target}",
        [(f"{u.label} (hourly mean)", u.history), ("peak", u.peaks)],
        start=audit.start,
        end=audit.end,
        tz=tz,
        unit=unit,
        y_max=100.0 if unit == "%" else None,
        thresholds=thresholds,
        height=170,
    )
    return f'<figure class="usage-chart">{chart}</figure>'


def _server(s: ServerAudit, audit: Audit, tz: ZoneInfo) -> str:
    title = escape(s.target) + (f' <span class="note">{escape(s.host)}</span>' if s.host else "")
    parts = [f'<section class="server" id="server-{escape(s.target)}"><h2>{title}</h2>']
    if s.description:
        parts.append(f'<p class="note">{escape(s.description)}</p>')
    parts.append(_disk_section(s, audit, tz))
    if s.usage:
        parts.append("<h3>Load and memory</h3>" + _usage_rows(s.usage))
        parts.extend(_usage_chart(u, s.target, audit, tz) for u in s.usage)
    if s.mail_queue:
        parts.append("<h3>Mail queue</h3>" + _usage_rows(s.mail_queue))
        parts.extend(_usage_chart(u, s.target, audit, tz) for u in s.mail_queue)
    if s.cleanup:
        rows = "".join(
            f'<tr><td>{escape(c.why)}</td><td>{escape(c.path)}</td><td class="n">{format_bytes(c.size_bytes)}</td>'
            f'<td class="n">{format_bytes(c.growth_bytes_per_week) if c.growth_bytes_per_week else "-"}</td></tr>'
            for c in s.cleanup
        )
        parts.append(
            '<h3>Cleanup candidates</h3><table><tr><th>why</th><th>path</th><th class="n">size</th>'
            '<th class="n">growth a week</th></tr>' + rows + "</table>"
        )
    if s.old_files:
        parts.append(_old_files(s.old_files))
    if not (s.disks or s.usage or s.mail_queue or s.cleanup or s.old_files):
        parts.append('<p class="note">No usage history for this server in the period.</p>')
    parts.append("</section>")
    return "".join(parts)


def _old_files(items: Sequence[OldFiles]) -> str:
    """Per scanned path its old files, and the largest of them; the names come from the
    target, so every one is escaped."""
    rows = "".join(
        f'<tr><td>{escape(o.path)}</td><td class="n">{escape(o.older_than)}</td>'
        f'<td class="n">{"-" if o.files is None else f"{o.files:.0f}"}</td><td class="n">{format_bytes(o.size_bytes)}</td>'
        f'<td class="n">{_pct(o.mount_percent, 1)}{f" of {escape(o.mount)}" if o.mount and o.mount_percent is not None else ""}</td></tr>'
        for o in items
    )
    parts = [
        '<h3>Old files</h3><table><tr><th>path</th><th class="n">not modified for over</th>'
        '<th class="n">files</th><th class="n">size</th><th class="n">share of the mount</th></tr>'
        + rows
        + "</table>"
    ]
    listed = [(o, f) for o in items for f in o.largest]
    if listed:
        parts.append(
            '<p class="note">The largest of them at the latest scan:</p><table class="old-files">'
            '<tr><th>under</th><th class="n">size</th><th class="n">days old</th><th>file</th></tr>'
        )
        parts.extend(
            f'<tr><td>{escape(o.path)}</td><td class="n">{format_bytes(f.size_bytes)}</td>'
            f'<td class="n">{f.age_days}</td><td class="file">{escape(f.name)}</td></tr>'
            for o, f in listed
        )
        parts.append("</table>")
    return "".join(parts)


def _fleet(fleet: Sequence[FleetFigures], audit: Audit, tz: ZoneInfo) -> str:
    if not fleet:
        return ""
    parts = ['<section id="fleet"><h2>Device fleet</h2>']
    for f in fleet:
        rising = ""
        if f.ratio_per_week is not None:
            rising = f"{f.ratio_per_week * 100:+.1f} points a week"
        parts.append(
            f'<h3>{escape(f.target)} <span class="note">{escape(f.probe)}</span></h3>'
            '<table><tr><th class="n">devices</th><th class="n">not checking in</th><th class="n">never checked in</th>'
            '<th class="n">stale ratio now</th><th class="n">at the start</th><th class="n">trend</th></tr>'
            f'<tr><td class="n">{_num(f.devices_total)}</td><td class="n">{_num(f.stale_devices)}</td>'
            f'<td class="n">{_num(f.never_checked_in)}</td><td class="n">{_pct(None if f.stale_ratio is None else f.stale_ratio * 100, 1)}</td>'
            f'<td class="n">{_pct(None if f.ratio_first is None else f.ratio_first * 100, 1)}</td><td class="n">{escape(rising)}</td></tr></table>'
        )
        chart = line_chart(
            f"Stale device ratio on {f.target}",
            [("stale ratio", f.history)],
            start=audit.start,
            end=audit.end,
            tz=tz,
            unit="ratio",
            thresholds=[
                (
                    audit.thresholds.stale_ratio,
                    f"threshold {audit.thresholds.stale_ratio:.0%}",
                    CRIT,
                )
            ],
            height=170,
        )
        parts.append(f'<figure class="fleet-chart">{chart}</figure>')
        if f.late:
            parts.append('<p class="note">Latest report of the stalest devices:</p><table>')
            parts.extend(f"<tr><td>{escape(line)}</td></tr>" for line in f.late)
            parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


def _heartbeats(audit: Audit) -> str:
    if not audit.heartbeats:
        return ""
    rows = "".join(
        f'<tr><td>{escape(h.name)}</td><td>{escape(h.target)}</td><td class="n">{h.results}</td>'
        f'<td class="n{" bad" if h.missed else ""}">{h.missed}</td><td class="n">{h.failing_hours:.1f} h</td>'
        f'<td>{escape(h.last_status or "-")}</td><td class="note">{escape(h.last_message)}</td></tr>'
        for h in audit.heartbeats
    )
    return (
        '<section id="heartbeats"><h2>Heartbeats</h2><table><tr><th>heartbeat</th><th>target</th><th class="n">results</th>'
        '<th class="n">times late or failed</th><th class="n">hours late or failed</th><th>now</th><th>last message</th></tr>'
        + rows
        + "</table></section>"
    )


def _working(p: PriorityFigures, seconds: float | None) -> str:
    """A business-hours priority's mean time in working hours, under the wall-clock one."""
    if p.clock != "business" or seconds is None:
        return ""
    return f'<br><span class="note">{_dur(seconds)} working</span>'


def _incidents(audit: Audit, tz: ZoneInfo) -> str:
    inc = audit.incidents
    rows = "".join(
        f"<tr><td>{escape(p.priority)} {escape(p.name)}</td><td>{escape(p.response_target)} / {escape(p.resolution_target)}"
        f' <span class="note">({escape(p.clock)})</span></td><td class="n">{p.opened}</td><td class="n">{p.resolved}</td>'
        f'<td class="n">{p.open_now}</td><td class="n">{_pct(p.response.percent)}</td><td class="n">{_pct(p.resolution.percent)}</td>'
        f'<td class="n">{_dur(p.mtta_s)}{_working(p, p.mtta_clock_s)}</td>'
        f'<td class="n">{_dur(p.mttr_s)}{_working(p, p.mttr_clock_s)}</td></tr>'
        for p in inc.by_priority
    )
    parts = [
        '<section id="incidents"><h2>Incidents and SLA</h2>',
        '<table><tr><th>priority</th><th>response / resolution</th><th class="n">opened</th><th class="n">resolved</th>'
        '<th class="n">open now</th><th class="n">response met</th><th class="n">resolution met</th><th class="n">MTTA</th>'
        f'<th class="n">MTTR</th></tr>{rows}</table>',
    ]
    bars = sla_bars(audit)
    if bars:
        parts.append(
            f'<figure class="sla-chart">{bars}<figcaption>Response: acknowledged (or fixed) within the response time; '
            "resolution: resolved within the resolution time; business-hours clocks count only working hours.</figcaption></figure>"
        )
    else:
        parts.append('<p class="note">No incident reached a deadline in this period.</p>')
    if inc.noisiest:
        rows = "".join(
            f'<tr><td>{escape(r.rule)}</td><td class="n">{r.incidents}</td><td class="n">{r.reopens}</td>'
            f'<td class="n">{r.short_lived}</td><td class="n">{r.targets}</td><td>{escape(", ".join(r.priorities))}</td></tr>'
            for r in inc.noisiest
        )
        parts.append(
            '<h3>Noisiest rules</h3><table><tr><th>rule</th><th class="n">incidents</th><th class="n">reopened</th>'
            '<th class="n">over within 15 min</th><th class="n">targets</th><th>priorities</th></tr>'
            + rows
            + "</table>"
        )
    if inc.missed:
        rows = "".join(
            f'<tr><td class="n">{m["id"]}</td><td>{escape(m["priority"])}</td><td>{escape(m["target"])}</td>'
            f"<td>{escape(m['summary'])}</td><td>{_when(m['opened_at'], tz, True)}</td><td>{escape(', '.join(m['missed']))}</td></tr>"
            for m in inc.missed
        )
        parts.append(
            '<h3>Deadlines missed</h3><table><tr><th class="n">id</th><th>priority</th><th>target</th><th>summary</th>'
            "<th>opened</th><th>missed</th></tr>" + rows + "</table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _tiles(audit: Audit) -> str:
    inc = audit.incidents
    disks = [d for s in audit.servers for d in s.disks]
    soon = [d for d in disks if d.forecast.usable and (d.forecast.days_left or 0) <= 30]
    response = _overall(audit, "response")
    resolution = _overall(audit, "resolution")
    tiles = [
        (str(len(audit.servers)), "servers"),
        (str(len(disks)), "disks watched"),
        (str(len(soon)), "disks full within 30 days"),
        (str(inc.opened), "incidents opened"),
        (_pct(response), "response SLA met"),
        (_pct(resolution), "resolution SLA met"),
        (_dur(inc.mtta_s), "MTTA"),
        (_dur(inc.mttr_s), "MTTR"),
    ]
    return (
        '<div class="tiles">'
        + "".join(
            f'<div class="tile"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in tiles
        )
        + "</div>"
    )


def _overall(audit: Audit, which: str) -> float | None:
    met = sum(getattr(p, which).met for p in audit.incidents.by_priority)
    judged = sum(getattr(p, which).judged for p in audit.incidents.by_priority)
    return 100.0 * met / judged if judged else None


def render_html(audit: Audit) -> str:
    """The whole report as one HTML document."""
    tz = ZoneInfo(audit.timezone)
    short = audit.end - audit.start < timedelta(days=2)  # then the hours matter
    period = f"{_when(audit.start, tz, short)} to {_when(audit.end, tz, short)}"
    body = [
        f"<header><h1>Server and usage audit: {escape(audit.site)}</h1>",
        f'<p class="meta">{escape(period)} ({escape(audit.period_text)}), generated {_when(audit.generated_at, tz, True)} '
        f"({escape(audit.timezone)})</p></header>",
        _tiles(audit),
        '<section id="recommendations"><h2>Recommendations</h2>',
        _recommendations(audit.recommendations),
        "</section>",
    ]
    body.extend(_server(s, audit, tz) for s in audit.servers)
    body.append(_fleet(audit.fleet, audit, tz))
    body.append(_heartbeats(audit))
    body.append(_incidents(audit, tz))
    if audit.notes:
        body.append(
            '<section id="notes"><h2>Notes</h2><ul>'
            + "".join(f"<li>{escape(n)}</li>" for n in audit.notes)
            + "</ul></section>"
        )
    body.append(
        "<footer>Forecasts fit a straight line to the period's hourly means and extend it to the limit; a fall of five "
        "points or more (a cleanup) restarts the fit. A forecast is left out when the history is shorter than a day, "
        "the growth is not clearly above the noise, or the line explains under 30% of the movement. Load, memory and "
        "queue percentiles are over hourly means; hours at or above count the hours whose mean reached the threshold.</footer>"
    )
    title = f"Audit {audit.site}: {period}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
