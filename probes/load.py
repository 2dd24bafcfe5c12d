"""``load``: the 1, 5 and 15 minute load averages, in total and per core.

Reads ``/proc/loadavg`` on Linux and falls back to ``uptime`` elsewhere; the core count
comes from ``getconf`` (or the config, for hosts whose CPU count is not what load is
measured against, e.g. containers with a CPU quota). Rules decide what is too high.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["LoadProbe", "LoadConfig", "parse_load"]

# A fixed script (no config in it): one exec for the averages and the core count.
LOAD_SCRIPT = (
    "cat /proc/loadavg 2>/dev/null || uptime; "
    "getconf _NPROCESSORS_ONLN 2>/dev/null || getconf NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu"
)
_PROC = re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)/(\d+)")
_UPTIME = re.compile(r"load averages?:\s*([\d.]+),?\s+([\d.]+),?\s+([\d.]+)")


class LoadConfig(ProbeConfig):
    cores: int | None = Field(default=None, ge=1)


def parse_load(output: str) -> dict[str, float] | None:
    """Figures from the script's output; None if it holds no load averages."""
    lines = output.strip().splitlines()
    if not lines:
        return None
    figures: dict[str, float] = {}
    proc = _PROC.match(lines[0])
    match = proc or _UPTIME.search(lines[0])
    if match is None:
        return None
    figures["load1"], figures["load5"], figures["load15"] = (
        float(match.group(i)) for i in (1, 2, 3)
    )
    if proc is not None:
        figures["procs_running"] = float(proc.group(4))
        figures["procs_total"] = float(proc.group(5))
    if len(lines) > 1 and lines[1].strip().isdigit() and int(lines[1]) > 0:
        figures["cores"] = float(lines[1].strip())
    return figures


class LoadProbe(Probe):
    kind = "load"
    Config = LoadConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "load1",
            "load5",
            "load15",
            "cores",
            "load1_per_core",
            "load5_per_core",
            "load15_per_core",
            "procs_running",
            "procs_total",
        }
    )
    needs_runner = True
    config: LoadConfig

    def check(self, ctx: ProbeContext) -> Outcome:
        assert ctx.runner is not None
        done = ctx.runner.run(["sh", "-c", LOAD_SCRIPT], ctx.timeout)
        evidence = done.stdout + (f"\n--- stderr ---\n{done.stderr}" if done.stderr.strip() else "")
        figures = parse_load(done.stdout)
        if figures is None:
            return Outcome.error(
                f"no load averages in the output (exit {done.exit_code})", evidence=evidence
            )
        if self.config.cores:
            figures["cores"] = float(self.config.cores)
        cores = figures.get("cores")
        if cores:
            for span in ("1", "5", "15"):
                figures[f"load{span}_per_core"] = round(figures[f"load{span}"] / cores, 3)
        on = f" on {cores:.0f} cores" if cores else ""
        message = f"load {figures['load1']:.2f} {figures['load5']:.2f} {figures['load15']:.2f}{on}"
        return Outcome.ok(message, metrics=figures, evidence=evidence)
