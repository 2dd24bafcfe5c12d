"""``uptime``: how long the target has been up, from ``/proc/uptime`` (Linux).

The message says it as a person would ("up 3 days 4 h"); the seconds are the ``uptime_s``
metric, so a rule can catch a reboot (``uptime_s < 600``).
"""

from __future__ import annotations

from typing import ClassVar

from probes.base import Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["UptimeConfig", "UptimeProbe", "human_uptime"]


class UptimeConfig(ProbeConfig):
    """No options of its own."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def human_uptime(seconds: float) -> str:
    """``up 3 days 4 h``: the two largest units, which is what anyone reading it wants."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"up {_plural(days, 'day')} {hours} h"
    if hours:
        return f"up {hours} h {minutes} min"
    if minutes:
        return f"up {minutes} min"
    return f"up {secs} s"


class UptimeProbe(Probe):
    kind = "uptime"
    Config = UptimeConfig
    metrics: ClassVar[frozenset[str]] = frozenset({"uptime_s"})
    needs_runner = True

    def check(self, ctx: ProbeContext) -> Outcome:
        assert ctx.runner is not None
        done = ctx.runner.run(["cat", "/proc/uptime"], ctx.timeout)
        try:
            seconds = float(done.stdout.split()[0])
        except (IndexError, ValueError):
            said = done.stderr.strip() or done.stdout.strip()[:200] or "no output"
            return Outcome.error(
                f"cannot read /proc/uptime (exit {done.exit_code}): {said}",
                evidence=done.stdout + done.stderr,
            )
        return Outcome.ok(
            human_uptime(seconds), metrics={"uptime_s": seconds}, evidence=done.stdout
        )
