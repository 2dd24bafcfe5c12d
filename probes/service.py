"""``service``: a systemd unit is active, or a process is running.

``unit:`` asks ``systemctl is-active`` (one call for every listed unit); ``process:``
counts processes by exact name in ``ps -e -o comm=``; ``pattern:`` counts command lines
matching an extended regex with ``pgrep -f``. One result per unit or process, labelled
``service``, so each gets its own incident.

A unit that is not active, or fewer processes than ``min_count``, is ``fail``; a host where
systemd is not running (or ``ps`` is missing) is ``error``: the probe cannot tell.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from probes.base import CommandResult, Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["ServiceProbe", "ServiceConfig"]

# systemctl is-active prints one of these per unit; anything else means it could not tell.
_UNIT_STATES = {
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
    "refreshing",
}
_COMM_LEN = 15  # the kernel keeps the first 15 bytes of a process name


class ServiceConfig(ProbeConfig):
    unit: list[str] = []
    process: list[str] = []
    pattern: str | None = None
    min_count: int = Field(default=1, ge=0)

    @field_validator("unit", "process", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> ServiceConfig:
        given = [k for k in ("unit", "process", "pattern") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of unit: (systemd), process: (a name) or pattern: (a regex)"
            )
        for name in [*self.unit, *self.process]:
            if not name.strip() or name.startswith("-"):
                raise ValueError(f"{name!r} is not a unit or process name")
        return self


class ServiceProbe(Probe):
    kind = "service"
    Config = ServiceConfig
    metrics: ClassVar[frozenset[str]] = frozenset({"active", "processes"})
    labels = ("service",)
    needs_runner = True
    config: ServiceConfig

    def items(self) -> list[dict[str, str]]:
        cfg = self.config
        names = cfg.unit or cfg.process or ([cfg.pattern] if cfg.pattern else [])
        return [{"service": name} for name in names]

    def check(self, ctx: ProbeContext) -> list[Outcome]:
        assert ctx.runner is not None
        cfg = self.config
        if cfg.unit:
            return self._units(ctx)
        if cfg.process:
            return self._processes(ctx)
        assert cfg.pattern is not None
        done = ctx.runner.run(["pgrep", "-f", "--", cfg.pattern], ctx.timeout)
        if done.exit_code not in (0, 1):
            return [_could_not_tell(f"pgrep -f {cfg.pattern!r}", done, cfg.pattern)]
        count = len(done.stdout.split())
        return [
            self._verdict(cfg.pattern, count, f"processes matching /{cfg.pattern}/", done.stdout)
        ]

    def _units(self, ctx: ProbeContext) -> list[Outcome]:
        assert ctx.runner is not None
        units = self.config.unit
        done = ctx.runner.run(["systemctl", "is-active", "--", *units], ctx.timeout)
        states = done.stdout.split()
        if len(states) != len(units) or not set(states) <= _UNIT_STATES:
            return [_could_not_tell("systemctl is-active", done, unit) for unit in units]
        outcomes = []
        for unit, state in zip(units, states, strict=True):
            labels = {"service": unit}
            if state in ("active", "reloading", "refreshing"):
                outcomes.append(
                    Outcome.ok(f"{unit} is {state}", metrics={"active": 1.0}, labels=labels)
                )
                continue
            status = ctx.runner.run(
                ["systemctl", "status", "--no-pager", "--lines=20", "--", unit], ctx.timeout
            )
            outcomes.append(
                Outcome.fail(
                    f"{unit} is {state}",
                    metrics={"active": 0.0},
                    labels=labels,
                    evidence=status.stdout + status.stderr,
                    reason=state,
                )
            )
        return outcomes

    def _processes(self, ctx: ProbeContext) -> list[Outcome]:
        assert ctx.runner is not None
        done = ctx.runner.run(["ps", "-e", "-o", "comm="], ctx.timeout)
        names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if done.exit_code != 0 or not names:
            return [_could_not_tell("ps -e -o comm=", done, name) for name in self.config.process]
        return [
            self._verdict(
                name, sum(1 for n in names if n == name[:_COMM_LEN]), f"{name} processes", ""
            )
            for name in self.config.process
        ]

    def _verdict(self, service: str, count: int, what: str, evidence: str) -> Outcome:
        wanted = self.config.min_count
        metrics = {"processes": float(count), "active": 1.0 if count >= wanted else 0.0}
        labels = {"service": service}
        if count >= wanted:
            return Outcome.ok(
                f"{count} {what} running", metrics=metrics, labels=labels, evidence=evidence
            )
        return Outcome.fail(
            f"{count} {what} running, expected at least {wanted}",
            metrics=metrics,
            labels=labels,
            evidence=evidence,
            reason="not_running",
        )


def _could_not_tell(command: str, done: CommandResult, service: str) -> Outcome:
    said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
    return Outcome.error(
        f"{command} could not tell (exit {done.exit_code}): {said}",
        labels={"service": service},
        evidence=done.stdout + done.stderr,
    )
