"""The audit as one self-contained HTML page: inline CSS, inline SVG charts, nothing fetched.

The page carries a Content-Security-Policy that forbids every outside load (no scripts,
fonts, images or styles from anywhere), so it opens the same from a mail attachment, a
file share or a browser with no network, and prints on A4 with each section kept whole.

The layout is ``templates/report.html`` (the charts: ``templates/charts.html``); this
module works out what the templates draw: chart geometry, formatted figures. Everything
printed goes through the templates' autoescape, chart labels and file names included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple
from zoneinfo import ZoneInfo

from markupsafe import Markup

from watcher.audit.figures import Audit, DiskFigures, FleetFigures, ServerAudit, UsageFigures
from watcher.audit.forecast import Forecast
from watcher.audit.recommend import format_bytes
from watcher.core.durations import format_duration
from watcher.web.templating import render

__all__ = ["render_html", "line_chart", "sla_bars", "LineChart", "BarChart", "CSP"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
PALETTE = ("#1f6fb2", "#d9730d", "#2e8540", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b7950b")
WARN = "#f9a825"
CRIT = "#c62828"


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


class Tick(NamedTuple):
    at: float  # x for the time axis, y for the value axis
    label: str


class Guide(NamedTuple):
    """A dashed threshold line across the plot."""

    y: float
    label: str
    colour: str


class Series(NamedTuple):
    path: str  # an SVG path of M and L commands
    colour: str
    dot: tuple[float, float] | None  # a series of one point is drawn as a dot there


class Projection(NamedTuple):
    """A forecast's dotted line; ``label`` is set when it lands on the axis, with a marker."""

    start: tuple[float, float]
    end: tuple[float, float]
    colour: str
    label: str | None


class Key(NamedTuple):
    x: float
    label: str
    colour: str
    dash: str


@dataclass
class LineChart:
    """Where everything of a line chart goes; ``templates/charts.html`` draws it."""

    title: str
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    now_x: float | None = None  # the end of the period, when forecasts run past it
    thresholds: list[Guide] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    forecasts: list[Projection] = field(default_factory=list)
    legend: list[Key] = field(default_factory=list)


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
) -> LineChart:
    """A line chart: one line per series, dashed threshold lines, dotted forecasts.

    The time axis runs from ``start`` to ``end``, stretched to show forecasts that land
    within one more period; a forecast beyond that is drawn up to the edge.
    """
    left, right, top, bottom = 58, 16, 26, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    chart = LineChart(title, width, height, left, top, plot_w, plot_h)
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

    tick = 0.0
    while tick <= top_value + 1e-9:
        chart.y_ticks.append(Tick(sy(tick), _fmt_axis(tick, unit)))
        tick += step
    days = (x1 - x0) / 86400
    every = max(1, round(days / 7))
    local_start = datetime.fromtimestamp(x0, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    day = local_start + timedelta(days=1)
    while day.timestamp() <= x1:
        if (day - local_start).days % every == 0:
            chart.x_ticks.append(Tick(sx(day), f"{day:%d %b}"))
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)
    if x_end > end:
        chart.now_x = sx(end)
    chart.thresholds = [Guide(sy(value), label, colour) for value, label, colour in thresholds]
    legend: list[tuple[str, str, str]] = []
    for index, (label, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        legend.append((label, colour, ""))
        if not points:
            continue
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{sx(t):.1f},{sy(v):.1f}" for i, (t, v) in enumerate(points)
        )
        dot = (sx(points[0][0]), sy(points[0][1])) if len(points) == 1 else None
        chart.series.append(Series(path, colour, dot))
    colours = {name: PALETTE[i % len(PALETTE)] for i, (name, _) in enumerate(series)}
    for label, ((t0, v0), (t1, v1)) in forecasts:
        colour = colours.get(label, "#37474f")
        marker: str | None = f"{label} {t1.astimezone(tz):%d %b}"
        if t1 > x_end:  # cut the line where the axis ends
            fraction = (x_end.timestamp() - t0.timestamp()) / (t1.timestamp() - t0.timestamp())
            t1, v1, marker = x_end, v0 + (v1 - v0) * fraction, None
        chart.forecasts.append(Projection((sx(t0), sy(v0)), (sx(t1), sy(v1)), colour, marker))
        legend.append((f"{label} (forecast)", colour, "2 3"))
    x: float = left
    for label, colour, dash in legend[:8]:
        chart.legend.append(Key(x, label, colour, dash))
        x += 30 + 6.5 * len(label)
    return chart


class Bar(NamedTuple):
    label: str  # priority and which deadline: "P1 response"
    y: int
    width: float | None  # None: nothing judged yet
    colour: str
    text: str


@dataclass
class BarChart:
    """Horizontal SLA bars; ``templates/charts.html`` draws it."""

    width: int
    height: int
    label_w: int
    bar_w: int
    row_h: int
    top: int
    bottom: int  # where the rows end
    target: float  # percent
    bars: list[Bar] = field(default_factory=list)

    @property
    def target_x(self) -> float:
        return self.label_w + self.bar_w * self.target / 100


def sla_bars(audit: Audit, width: int = 720) -> BarChart | None:
    """The share of incidents that met their response and resolution times, per priority;
    None when no incident was judged against either."""
    rows = [p for p in audit.incidents.by_priority if p.response.judged or p.resolution.judged]
    if not rows:
        return None
    label_w, right = 170, 120
    bar_w = width - label_w - right
    row_h, top = 22, 10
    height = top + len(rows) * 2 * row_h + len(rows) * 8 + 24
    target = audit.thresholds.sla_target
    bars = []
    y = top
    for p in rows:
        for which, count in (("response", p.response), ("resolution", p.resolution)):
            filled, colour = None, ""
            if count.judged:
                percent = count.percent or 0.0
                filled = bar_w * percent / 100
                colour = (
                    "#2e7d32"
                    if percent >= target
                    else "#e65100"
                    if percent >= target - 20
                    else "#c62828"
                )
                text = f"{percent:.0f}% ({count.met}/{count.judged})"
            else:
                text = "nothing judged yet"
            if count.running:
                text += f", {count.running} running"
            bars.append(Bar(f"{p.priority} {which}", y, filled, colour, text))
            y += row_h
        y += 8
    return BarChart(width, height, label_w, bar_w, row_h, top, y, target, bars)


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


def _forecast_note(f: Forecast) -> str:
    if f.note:
        return f.note
    return f"fit over {f.points} h, R² {f.r2:.2f}" if f.r2 is not None else ""


def _growth(d: DiskFigures) -> str:
    per_week = d.forecast.per_week
    growth = (
        "-" if per_week is None else "0 pts" if abs(per_week) < 0.005 else f"{per_week:+.2f} pts"
    )
    if d.growth_bytes_per_week is not None:
        growth += f" ({format_bytes(d.growth_bytes_per_week)})"
    return growth


def _disk_chart(s: ServerAudit, audit: Audit, tz: ZoneInfo) -> LineChart:
    t = audit.thresholds
    return line_chart(
        f"Disk usage on {s.target}",
        [(d.path, d.history) for d in s.disks],
        start=audit.start,
        end=audit.end,
        tz=tz,
        unit="%",
        y_max=100.0,
        thresholds=[
            (t.disk_high, f"high {t.disk_high:g}%", WARN),
            (t.disk_critical, f"critical {t.disk_critical:g}%", CRIT),
        ],
        forecasts=[
            (d.path, d.forecast.line)
            for d in s.disks
            if d.forecast.line is not None and d.forecast.usable
        ],
    )


def _usage_chart(u: UsageFigures, target: str, audit: Audit, tz: ZoneInfo) -> LineChart:
    unit = "%" if u.unit == "%" else "s" if u.unit == "s" else ""
    thresholds = (
        [(u.stats.threshold, f"threshold {_num(u.stats.threshold, unit)}", CRIT)]
        if u.stats.threshold is not None
        else []
    )
    return line_chart(
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


def _usage_threshold(u: UsageFigures) -> str:
    if u.stats.threshold is None:
        return ""
    return _num(u.stats.threshold, u.unit if u.unit != " messages" else "")


def _fleet_chart(f: FleetFigures, audit: Audit, tz: ZoneInfo) -> LineChart:
    stale = audit.thresholds.stale_ratio
    return line_chart(
        f"Stale device ratio on {f.target}",
        [("stale ratio", f.history)],
        start=audit.start,
        end=audit.end,
        tz=tz,
        unit="ratio",
        thresholds=[(stale, f"threshold {stale:.0%}", CRIT)],
        height=170,
    )


def _tiles(audit: Audit) -> list[tuple[str, str]]:
    inc = audit.incidents
    disks = [d for s in audit.servers for d in s.disks]
    soon = [d for d in disks if d.forecast.usable and (d.forecast.days_left or 0) <= 30]
    return [
        (str(len(audit.servers)), "servers"),
        (str(len(disks)), "disks watched"),
        (str(len(soon)), "disks full within 30 days"),
        (str(inc.opened), "incidents opened"),
        (_pct(_overall(audit, "response")), "response SLA met"),
        (_pct(_overall(audit, "resolution")), "resolution SLA met"),
        (_dur(inc.mtta_s), "MTTA"),
        (_dur(inc.mttr_s), "MTTR"),
    ]


def _overall(audit: Audit, which: str) -> float | None:
    met = sum(getattr(p, which).met for p in audit.incidents.by_priority)
    judged = sum(getattr(p, which).judged for p in audit.incidents.by_priority)
    return 100.0 * met / judged if judged else None


def render_html(audit: Audit) -> str:
    """The whole report as one HTML document."""
    tz = ZoneInfo(audit.timezone)
    short = audit.end - audit.start < timedelta(days=2)  # then the hours matter
    helpers: dict[str, Callable[..., object]] = {
        "when": lambda moment, with_time=False: _when(moment, tz, with_time),
        "pct": _pct,
        "num": _num,
        "dur": _dur,
        "size": format_bytes,
        "forecast_note": _forecast_note,
        "growth": _growth,
        "usage_threshold": _usage_threshold,
        "disk_chart": partial(_disk_chart, audit=audit, tz=tz),
        "usage_chart": partial(_usage_chart, audit=audit, tz=tz),
        "fleet_chart": partial(_fleet_chart, audit=audit, tz=tz),
    }
    return render(
        "report.html",
        audit=audit,
        # A constant of this module, not data: printed as written so the policy reads the
        # same in the page source as here.
        csp=Markup(CSP),
        period=f"{_when(audit.start, tz, short)} to {_when(audit.end, tz, short)}",
        tiles=_tiles(audit),
        sla=sla_bars(audit),
        **helpers,
    )
