"""The audit's figures as data: per server (disk, usage, cleanup, old files), the device fleet,
heartbeats, incidents with their SLA counts, the recommendations, and the JSON form of it all.
Built by :mod:`watcher.audit.build`, ranked by :mod:`watcher.audit.recommend`, formatted by
the reports."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any

from probes.du import OldFile
from watcher.audit.forecast import Forecast, Stats
from watcher.config.thresholds import Thresholds
from watcher.core.durations import format_duration

__all__ = [
    "DiskFigures",
    "UsageFigures",
    "Cleanup",
    "OldFiles",
    "ServerAudit",
    "FleetFigures",
    "HeartbeatFigures",
    "SlaCount",
    "PriorityFigures",
    "RuleNoise",
    "IncidentFigures",
    "Recommendation",
    "Audit",
]


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
