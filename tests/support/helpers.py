"""Small builders shared by tests: configs from text, results, a clock you move by hand."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from probes.base import Result
from watcher.config.load import load_config
from watcher.config.models import Config


def write_config(
    directory: Path, text: str, *, name: str = "watcher.yml", extra: Mapping[str, str] | None = None
) -> Path:
    """Writes a watcher.yml (dedented) and any extra files beside it; returns its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    for file_name, content in (extra or {}).items():
        (directory / file_name).write_text(textwrap.dedent(content).lstrip())
    return path


def config_from(
    directory: Path, text: str, *, environ: Mapping[str, str] | None = None, **kw: Any
) -> Config:
    return load_config(write_config(directory, text, **kw), environ=environ)


def result(
    target: str = "web",
    probe: str = "http",
    *,
    kind: str | None = None,
    status: str = "ok",
    message: str = "",
    metrics: Mapping[str, float] | None = None,
    labels: Mapping[str, str] | None = None,
    at: datetime | None = None,
    reason: str = "",
    evidence: str = "",
) -> Result:
    return Result(
        target=target,
        probe=probe,
        kind=kind or probe,
        status=status,  # type: ignore[arg-type]
        message=message or status,
        metrics=dict(metrics or {}),
        labels=dict(labels or {}),
        evidence=evidence,
        duration_s=0.01,
        at=at or datetime.now(UTC),
        reason=reason,
    )


class Clock:
    """A clock tests move by hand: ``clock()`` is now, ``clock.advance(minutes=5)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # Monday 09:30 IST

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
