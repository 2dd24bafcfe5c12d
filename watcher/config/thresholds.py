"""The audit's thresholds: where usage turns into a problem, settable under ``audits:``.

Defined with the configuration so that checking the keys a config names needs no audit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """Where usage turns into a problem. Disk lines match the shipped rule pack."""

    disk_high: float = 85.0
    disk_critical: float = 95.0
    inodes_high: float = 85.0
    load_per_core: float = 1.0
    memory: float = 90.0
    swap: float = 20.0
    queue_length: float = 100.0
    queue_age_s: float = 3600.0
    stale_ratio: float = 0.10
    sla_target: float = 95.0  # percent of incidents meeting a deadline
    forecast_days: float = 90.0  # forecasts further out are not recommendations
    noisy_rule_incidents: int = 5
    # Old files become a recommendation when removing them frees 1 GiB (less is not worth
    # a person's time on today's disks) or 5% of their filesystem, whichever comes first:
    # 5 points is half the gap between the high (85%) and critical (95%) lines, so on a
    # small filesystem it is a real step back from trouble even when it is under a GiB.
    old_files_bytes: float = float(2**30)
    old_files_percent: float = 5.0

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> Thresholds:
        return cls(**(values or {}))
