"""``memory``: RAM and swap in use, from ``/proc/meminfo`` (Linux).

``used_percent`` counts what the kernel cannot hand out without swapping: total minus
``MemAvailable`` (page cache that can be dropped is not "used"). Kernels before 3.14 lack
``MemAvailable``; there free + buffers + cached stands in for it.
"""

from __future__ import annotations

from typing import ClassVar

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["MemoryConfig", "MemoryProbe", "parse_meminfo", "memory_figures"]


class MemoryConfig(ProbeConfig):
    """No options of its own."""


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per field (the file says kB, meaning KiB)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            factor = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            fields[name.strip()] = int(parts[0]) * factor
    return fields


def memory_figures(info: dict[str, int]) -> dict[str, float] | None:
    total = info.get("MemTotal")
    if not total:
        return None
    available = info.get("MemAvailable")
    if available is None:
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    swap_total = info.get("SwapTotal", 0)
    swap_used = max(0, swap_total - info.get("SwapFree", 0))
    return {
        "total_bytes": float(total),
        "available_bytes": float(available),
        "used_bytes": float(total - available),
        "used_percent": round(100.0 * (total - available) / total, 2),
        "swap_total_bytes": float(swap_total),
        "swap_used_bytes": float(swap_used),
        "swap_used_percent": round(100.0 * swap_used / swap_total, 2) if swap_total else 0.0,
    }


class MemoryProbe(Probe):
    kind = "memory"
    Config = MemoryConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "total_bytes",
            "available_bytes",
            "used_bytes",
            "used_percent",
            "swap_total_bytes",
            "swap_used_bytes",
            "swap_used_percent",
        }
    )
    needs_runner = True

    def check(self, ctx: ProbeContext) -> Outcome:
        assert ctx.runner is not None
        done = ctx.runner.run(["cat", "/proc/meminfo"], ctx.timeout)
        figures = memory_figures(parse_meminfo(done.stdout))
        if figures is None:
            said = done.stderr.strip() or "no MemTotal in /proc/meminfo"
            return Outcome.error(
                f"cannot read memory figures (exit {done.exit_code}): {said}",
                evidence=done.stdout + done.stderr,
            )
        swap = (
            f", swap {figures['swap_used_percent']:.0f}% used"
            if figures["swap_total_bytes"]
            else ", no swap"
        )
        message = (
            f"memory {figures['used_percent']:.0f}% used, "
            f"{figures['available_bytes'] / 2**30:.2f} GiB available of {figures['total_bytes'] / 2**30:.2f} GiB{swap}"
        )
        return Outcome.ok(message, metrics=figures, evidence=done.stdout)
