"""Flap detection as Nagios and Icinga do it: the share of state changes in a check's
last results, with a high threshold to start flapping and a lower one to stop.

    history = [1, 0, 1, 0, 1, 0]      # 1 failing, 0 ok, newest last
    change_share(history, window=10)  # 5 changes / 9 possible = 0.56

The denominator is the whole window, so a handful of early results cannot look like a
storm. Pure functions; the tracker keeps the history on the incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FlapSettings", "FlappingConfig", "change_share", "changes"]


@dataclass(frozen=True)
class FlapSettings:
    """What the tracker needs: the window (results; 0 turns detection off) and the
    thresholds as fractions."""

    window: int = 10
    high: float = 0.5
    low: float = 0.25

    @property
    def enabled(self) -> bool:
        return self.window >= 3


def changes(history: Sequence[int]) -> int:
    return sum(1 for a, b in zip(history, history[1:], strict=False) if a != b)


def change_share(history: Sequence[int], window: int) -> float:
    """State changes among the last ``window`` results over the ``window - 1`` possible."""
    if window < 2:
        return 0.0
    return changes(history[-window:]) / (window - 1)


class FlappingConfig(BaseModel):
    """``flapping:`` in watcher.yml: ``{window: 10, high: 50, low: 25}`` (percent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window: int = Field(default=10, ge=3, le=100)
    high: float = Field(default=50, gt=0, le=100)
    low: float = Field(default=25, ge=0, lt=100)

    @model_validator(mode="after")
    def _hysteresis(self) -> FlappingConfig:
        if self.low >= self.high:
            raise ValueError(
                f"low ({self.low:g}) must be below high ({self.high:g}): a check starts flapping at high "
                "and stops below low, e.g. high: 50, low: 25"
            )
        return self

    def settings(self) -> FlapSettings:
        if not self.enabled:
            return FlapSettings(window=0)
        return FlapSettings(window=self.window, high=self.high / 100, low=self.low / 100)
