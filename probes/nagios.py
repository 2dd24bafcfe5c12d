"""``nagios``: runs any Nagios/Monitoring-Plugins plugin on the target and reads its verdict.

Exit 0 is ``ok``, 1 ``fail`` (reason ``warning``), 2 ``fail`` (reason ``critical``), 3 and
anything else ``error`` (the plugin could not tell). Perfdata (``label=value[UOM];warn;
crit;min;max``, on the first line after ``|`` and in the long output) becomes metrics:
the label in lower_snake_case (``/var/log`` -> ``var_log``, ``/`` -> ``root``), the value in
base units (bytes for B/KB/MB/GB/TB, seconds for s/ms/us), and ``<name>_max`` where the
plugin gives a maximum. So the whole plugin ecosystem works, over SSH or locally.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import ClassVar

from pydantic import field_validator, model_validator

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["NagiosProbe", "NagiosConfig", "parse_plugin_output", "parse_perfdata", "metric_name"]

PLUGIN_DIR = "/usr/lib/nagios/plugins"
STATES = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}
_UNITS = {
    "": 1.0,
    "%": 1.0,
    "c": 1.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "b": 1.0,
    "kb": 1024.0,
    "mb": 1024.0**2,
    "gb": 1024.0**3,
    "tb": 1024.0**4,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
    "tib": 1024.0**4,
}
_NUMBER = re.compile(r"^([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)([A-Za-z%]*)$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class NagiosConfig(ProbeConfig):
    plugin: str | None = None
    args: list[str] = []
    run: list[str] | str | None = None
    plugin_dir: str = PLUGIN_DIR
    perfdata: list[str] = []

    @field_validator("perfdata")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"perfdata name {name!r} must be lower_snake_case, as watcher names them"
                )
        return value

    @model_validator(mode="after")
    def _one_command(self) -> NagiosConfig:
        if (self.plugin is None) == (self.run is None):
            raise ValueError("give plugin: (with args:) or run: (the whole command line), not both")
        if self.run is not None and self.args:
            raise ValueError("args: goes with plugin:; put the arguments into run: instead")
        if self.plugin is not None and not self.plugin.strip():
            raise ValueError("plugin: names a plugin, e.g. check_disk")
        return self

    def command(self) -> list[str] | str:
        if self.run is not None:
            return self.run
        assert self.plugin is not None
        path = self.plugin if "/" in self.plugin else f"{self.plugin_dir.rstrip('/')}/{self.plugin}"
        return [path, *self.args]


def metric_name(label: str) -> str:
    """A perfdata label as a metric name rules can use."""
    name = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    if not name:
        return "root" if label.strip() == "/" else "value"
    return f"m_{name}" if name[0].isdigit() else name


def _labels_and_values(text: str) -> Iterator[tuple[str, str]]:
    """Splits perfdata into (label, value) pairs; labels may be quoted and hold spaces."""
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return
        if text[i] == "'":
            j, label = i + 1, []
            while j < n:
                if text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    label.append("'")
                    j += 2
                elif text[j] == "'":
                    j += 1
                    break
                else:
                    label.append(text[j])
                    j += 1
            name = "".join(label)
        else:
            j = text.find("=", i)
            if j < 0:
                return
            name = text[i:j]
            if any(c.isspace() for c in name):  # a word without '=': skip it
                i += len(name.split()[0])
                continue
        if j >= n or text[j] != "=":
            # junk without '=': skip to the next space
            k = text.find(" ", j)
            i = n if k < 0 else k
            continue
        k = j + 1
        while k < n and not text[k].isspace():
            k += 1
        yield name, text[j + 1 : k]
        i = k


def parse_perfdata(text: str) -> dict[str, float]:
    """Perfdata as metrics; unparseable items are skipped, never fatal."""
    metrics: dict[str, float] = {}
    for label, value in _labels_and_values(text):
        fields = value.split(";")
        match = _NUMBER.match(fields[0])
        if match is None:
            continue  # "U" (unknown) and garbage
        factor = _UNITS.get(match.group(2).lower())
        if factor is None:
            factor = 1.0
        name = metric_name(label)
        metrics[name] = float(match.group(1).replace(",", ".")) * factor
        if len(fields) > 4:
            top = _NUMBER.match(fields[4])
            if top is not None:
                metrics[f"{name}_max"] = float(top.group(1).replace(",", ".")) * factor
    return metrics


def parse_plugin_output(stdout: str) -> tuple[str, str, dict[str, float]]:
    """(first line of text, long text, metrics) following the plugin API's output format."""
    lines = stdout.splitlines()
    if not lines:
        return "", "", {}
    first, _, perf = lines[0].partition("|")
    long_lines, perf_parts = [], [perf]
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line)
            continue
        text, bar, more = line.partition("|")
        long_lines.append(text)
        if bar:
            perf_parts.append(more)
            in_perf = True
    return first.strip(), "\n".join(long_lines).strip(), parse_perfdata(" ".join(perf_parts))


class NagiosProbe(Probe):
    kind = "nagios"
    Config = NagiosConfig
    metrics: ClassVar[frozenset[str] | None] = None  # named by the plugin's perfdata
    base_metrics: ClassVar[frozenset[str]] = frozenset({"exit_code"})
    needs_runner = True
    config: NagiosConfig

    @classmethod
    def produced_metrics(cls, config: NagiosConfig) -> set[str] | None:
        """Perfdata names are known only when the config lists them under ``perfdata:``."""
        if not config.perfdata:
            return None
        names = set(cls.base_metrics)
        for name in config.perfdata:
            names.update((name, f"{name}_max"))
        return names

    def check(self, ctx: ProbeContext) -> Outcome:
        assert ctx.runner is not None
        command = self.config.command()
        done = ctx.runner.run(command, ctx.timeout)
        text, long_text, perf = parse_plugin_output(done.stdout)
        metrics = {**perf, "exit_code": float(done.exit_code)}
        shown = command if isinstance(command, str) else shlex.join(command)
        evidence = f"$ {shown}\n(exit {done.exit_code})\n{done.stdout}"
        if done.stderr.strip():
            evidence += f"\n--- stderr ---\n{done.stderr}"
        said = text or (done.stderr.strip().splitlines() or ["no output"])[0]
        state = STATES.get(done.exit_code)
        if state == "ok":
            return Outcome.ok(said, metrics=metrics, evidence=evidence)
        if state in ("warning", "critical"):
            return Outcome.fail(said, metrics=metrics, evidence=evidence, reason=state)
        if done.exit_code == 127 or done.exit_code == 126:
            said = (
                f"plugin not found or not executable on the target (exit {done.exit_code}): {said}"
            )
        elif state is None:
            said = f"plugin exited {done.exit_code}: {said}"
        return Outcome.error(said, metrics=metrics, evidence=evidence, reason="unknown")
