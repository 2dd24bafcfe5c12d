"""``command``: any command on the target; exit code and output decide, regexes make metrics.

The command comes from the config only. Nothing a target prints is ever put into a
command line.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import field_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["CommandProbe", "CommandConfig"]


class CommandConfig(ProbeConfig):
    run: list[str] | str
    ok_exit: list[int] = [0]
    expect: str | None = None
    metrics: dict[str, str] = {}

    @field_validator("run")
    @classmethod
    def _run(cls, value: list[str] | str) -> list[str] | str:
        if not value:
            raise ValueError("give the command as a list of arguments, or a shell string")
        return value

    @field_validator("expect")
    @classmethod
    def _expect(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"metric name {name!r} must be lower_snake_case")
            if _compile(pattern).groups < 1:
                raise ValueError(f"the regex for {name} needs one (group) around the number")
        return value


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


class CommandProbe(Probe):
    kind = "command"
    Config = CommandConfig
    metrics: ClassVar[frozenset[str] | None] = None  # named in the config
    base_metrics: ClassVar[frozenset[str]] = frozenset({"exit_code", "latency_s"})
    needs_runner = True
    config: CommandConfig

    @classmethod
    def produced_metrics(cls, config: CommandConfig) -> set[str]:
        """The exit code and latency, plus every metric the config's regexes name."""
        return set(cls.base_metrics) | set(config.metrics)

    def check(self, ctx: ProbeContext) -> Outcome:
        assert ctx.runner is not None
        cfg = self.config
        done = ctx.runner.run(cfg.run, ctx.timeout)
        metrics: dict[str, float] = {
            "exit_code": float(done.exit_code),
            "latency_s": done.duration_s,
        }
        evidence = f"$ {_show(cfg.run)}\n(exit {done.exit_code})\n{done.stdout}"
        if done.stderr.strip():
            evidence += f"\n--- stderr ---\n{done.stderr}"
        problems = []
        for name, pattern in cfg.metrics.items():
            match = _compile(pattern).search(done.stdout)
            if match is None:
                problems.append(f"no {name} in output")
                continue
            try:
                metrics[name] = float(match.group(1))
            except ValueError:
                problems.append(f"{name}: {match.group(1)!r} is not a number")
        first_line = (done.stdout.strip() or done.stderr.strip()).splitlines()[:1]
        said = first_line[0] if first_line else "no output"
        if done.exit_code not in cfg.ok_exit:
            return Outcome.fail(
                f"exit {done.exit_code}: {said}", metrics=metrics, evidence=evidence, reason="exit"
            )
        if cfg.expect is not None and not _compile(cfg.expect).search(done.stdout):
            return Outcome.fail(
                f"output does not match /{cfg.expect}/: {said}",
                metrics=metrics,
                evidence=evidence,
                reason="content",
            )
        if problems:
            return Outcome.error("; ".join(problems), metrics=metrics, evidence=evidence)
        return Outcome.ok(said, metrics=metrics, evidence=evidence)


def _show(command: list[str] | str) -> str:
    import shlex

    return command if isinstance(command, str) else shlex.join(command)
