"""The probe contract: what a probe is given, what it returns, and how it is run safely.

A probe checks one thing on one target and says what it saw. It never raises for a
failing target: ``fail`` means the target answered wrongly (refused, wrong status, disk
full), ``error`` means the probe could not tell (credentials refused, command hung, SSH
unreachable for a disk check). A bug inside a probe becomes an ``error`` result and a
logged traceback, never a dead scheduler.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from watcher.core.durations import parse_duration, parse_interval, parse_retry_interval
from watcher.core.secret import redact
from watcher.schedule.deadline import Deadline

if TYPE_CHECKING:
    from watcher.delivery.httpclient import HttpClients

__all__ = [
    "EVIDENCE_CAP",
    "CommandResult",
    "CommandRunner",
    "Outcome",
    "Probe",
    "ProbeConfig",
    "ProbeContext",
    "Result",
    "Status",
    "TransportError",
    "cap_text",
    "decode_output",
    "item_labels",
    "per_item",
    "run_probe",
]

log = logging.getLogger("watcher.probe")

Status = Literal["ok", "fail", "error"]
EVIDENCE_CAP = 8 * 1024
MESSAGE_CAP = 300


def cap_text(text: str, limit: int = EVIDENCE_CAP) -> str:
    """Keeps the first ``limit`` bytes of ``text`` (UTF-8), marking the cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    kept = raw[: limit - 40].decode("utf-8", "ignore")
    return f"{kept}\n... [{len(raw) - len(kept.encode())} more bytes cut]"


def decode_output(data: bytes, limit: int = EVIDENCE_CAP * 8) -> str:
    """Decodes command or socket output that may not be UTF-8, without ever raising."""
    return data[:limit].decode("utf-8", "backslashreplace")


def one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MESSAGE_CAP else line[: MESSAGE_CAP - 3] + "..."


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a probe saw; the runner adds the target, timing and clock."""

    status: Status
    message: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    evidence: str = ""
    reason: str = ""

    @classmethod
    def ok(cls, message: str = "ok", **kw: Any) -> Outcome:
        return cls("ok", message, **kw)

    @classmethod
    def fail(cls, message: str, **kw: Any) -> Outcome:
        return cls("fail", message, **kw)

    @classmethod
    def error(cls, message: str, **kw: Any) -> Outcome:
        return cls("error", message, **kw)


@dataclass(frozen=True, slots=True)
class Result:
    """One observation of one check on one target at one moment."""

    target: str
    probe: str
    kind: str
    status: Status
    message: str
    metrics: Mapping[str, float]
    labels: Mapping[str, str]
    evidence: str
    duration_s: float
    at: datetime
    reason: str = ""

    @property
    def item(self) -> str:
        """The labels as one short string (``/var``), to tell per-path results apart."""
        return " ".join(str(v) for _, v in sorted(self.labels.items()))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.target, self.probe, self.item)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "probe": self.probe,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "metrics": dict(self.metrics),
            "labels": dict(self.labels),
            "evidence": self.evidence,
            "duration_s": round(self.duration_s, 6),
            "at": self.at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        return cls(
            target=data["target"],
            probe=data["probe"],
            kind=data["kind"],
            status=data["status"],
            message=data["message"],
            metrics=dict(data.get("metrics") or {}),
            labels=dict(data.get("labels") or {}),
            evidence=data.get("evidence", ""),
            duration_s=float(data.get("duration_s", 0.0)),
            at=datetime.fromisoformat(data["at"]),
            reason=data.get("reason", ""),
        )


class ProbeConfig(BaseModel):
    """Options every probe accepts beside its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str | None = None
    interval: timedelta | None = None
    retry_interval: timedelta | None = None
    timeout: timedelta | None = None
    # every figure of this check on /metrics, not only success, duration and cert expiry
    detail_metrics: bool = False

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        return None if value is None else parse_interval(value)

    @field_validator("retry_interval", mode="before")
    @classmethod
    def _retry_interval(cls, value: Any) -> Any:
        return None if value is None else parse_retry_interval(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float


class TransportError(Exception):
    """The command could not be run or did not finish: the probe cannot tell.

    ``reason`` becomes the Result's reason, so rules can tell a changed SSH host key
    (``host_key_changed``) or refused credentials (``auth``) from a plain timeout.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class CommandRunner(Protocol):
    """Runs a command on the target: on the watcher host itself or over SSH."""

    description: str

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult: ...


@dataclass
class ProbeContext:
    """What the engine lends a probe: the target, its limits and shared clients.

    ``deadline`` is the end of the current check (``run_probe`` sets it from ``timeout``):
    sockets the check connects are shut down when it passes, whatever they are doing.
    """

    site: str
    target: str
    host: str | None
    labels: Mapping[str, str]
    timeout: float
    http: HttpClients
    runner: CommandRunner | None = None
    services: Mapping[str, Any] = field(default_factory=dict)
    deadline: Deadline | None = None

    def time_left(self) -> float:
        """Seconds left of this check (the whole timeout outside ``run_probe``)."""
        return self.timeout if self.deadline is None else self.deadline.remaining()


class Probe(ABC):
    """One kind of check. Subclasses set ``kind``, ``Config`` and ``metrics``.

    ``metrics`` lists every metric the probe can produce, so rules naming a metric it
    never produces are refused at validate time; ``None`` means the names come from the
    config or the target (Nagios perfdata, command regexes).
    """

    kind: ClassVar[str]
    Config: ClassVar[type[ProbeConfig]] = ProbeConfig
    metrics: ClassVar[frozenset[str] | None] = frozenset()
    labels: ClassVar[tuple[str, ...]] = ()
    needs_runner: ClassVar[bool] = False
    default_interval: ClassVar[timedelta | None] = None

    def __init__(self, config: ProbeConfig) -> None:
        self.config = config

    @abstractmethod
    def check(self, ctx: ProbeContext) -> Outcome | list[Outcome]:
        """Checks the target once. Must return, not raise, for a failing target."""

    def items(self) -> list[dict[str, str]]:
        """The labels of each item the config names (``[{"path": "/"}, ...]``).

        A check that fails as a whole (SSH refused, host key changed, timeout) reports one
        error per item, labelled like that item's own results: each item's recovery then
        replaces its own error, and none is left standing. ``[{}]``: one result per check,
        or items found only at run time.
        """
        return [{}]

    def close(self) -> None:  # noqa: B027 - most probes keep nothing
        """Releases anything the probe keeps between checks."""


def item_labels(probe: Probe) -> list[dict[str, str]]:
    """``probe.items()``, or one unlabelled item if even that fails."""
    try:
        return [dict(labels) for labels in probe.items()] or [{}]
    except Exception:  # a whole-check error must still be reported
        log.exception("probe %s could not list its items", probe.kind)
        return [{}]


def per_item(probe: Probe, outcomes: list[Outcome]) -> list[Outcome]:
    """A lone unlabelled error (the check failed as a whole: it raised, its transport
    failed, it returned nothing) as one error per configured item, labelled like its
    results; anything else as it is."""
    if len(outcomes) != 1 or outcomes[0].status != "error" or outcomes[0].labels:
        return outcomes
    whole = outcomes[0]
    return [replace(whole, labels=labels) for labels in item_labels(probe)]


def run_probe(
    probe: Probe,
    ctx: ProbeContext,
    probe_id: str,
    *,
    clock: Any = None,
    deadline: Deadline | None = None,
) -> list[Result]:
    """Runs one check and turns whatever happens into Results.

    The check ends at its timeout whatever its peer does: ``deadline`` (a new one of
    ``ctx.timeout`` if not given; the scheduler passes its own to be able to cancel it)
    shuts down every socket the check connected once it passes.
    """
    now = (clock or (lambda: datetime.now(UTC)))()
    started = time.perf_counter()
    deadline = deadline or Deadline(ctx.timeout)
    try:
        with deadline:
            outcome = probe.check(replace(ctx, deadline=deadline))
        outcomes = outcome if isinstance(outcome, list) else [outcome]
    except TransportError as exc:
        outcomes = [Outcome.error(str(exc), reason=exc.reason)]
    except Exception as exc:  # a bug in a probe must not kill the scheduler
        if not deadline.cut:
            log.exception("probe %s on %s raised", probe_id, ctx.target)
        outcomes = [Outcome.error(f"probe crashed: {type(exc).__name__}: {exc}")]
    duration = time.perf_counter() - started
    if not outcomes:
        outcomes = [Outcome.error("probe returned nothing")]
    if deadline.cut:
        outcomes = [_cut_short(o, ctx.timeout) for o in outcomes]
    return [
        Result(
            target=ctx.target,
            probe=probe_id,
            kind=probe.kind,
            status=o.status,
            message=one_line(redact(o.message)),
            metrics={k: float(v) for k, v in o.metrics.items() if v is not None},
            labels=dict(o.labels),
            evidence=cap_text(redact(o.evidence)) if o.evidence else "",
            duration_s=duration,
            at=now,
            reason=o.reason,
        )
        for o in per_item(probe, outcomes)
    ]


def _cut_short(outcome: Outcome, timeout: float) -> Outcome:
    """What a check says once its connections were cut at the deadline: it did not finish
    in time, whatever the probe made of the cut (a closed connection, a short answer),
    which is kept as evidence."""
    if outcome.reason == "timeout":
        return outcome
    seen = f"(after the cut the probe saw: {outcome.message})"
    return Outcome(
        "fail",
        f"did not finish within its timeout of {timeout:g}s; its connection was cut",
        outcome.metrics,
        outcome.labels,
        f"{outcome.evidence}\n{seen}" if outcome.evidence else seen,
        "timeout",
    )
