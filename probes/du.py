"""``du``: the largest directories under given paths, for the audit's cleanup candidates.

An audit probe: it walks whole trees, so it runs rarely (daily by default) with a long
timeout (5 minutes). For each path it gives one result with the path's total, and one per
directory among the ``top`` largest (labels ``path`` and ``dir``), so history shows which
directories grow. ``du -x`` stays on the path's filesystem; the sort happens on the
target, so only ``top`` lines per path cross the wire.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from pydantic import Field, field_validator

from probes.base import CommandResult, Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["DuProbe", "DuConfig", "parse_du"]

# "$1".."$3" are the depth, the path and the line count: config values are arguments,
# never part of the script text.
_DU_SCRIPT = 'du -x -k -d "$1" -- "$2" | sort -rn | head -n "$3"'


class DuConfig(ProbeConfig):
    paths: list[str]
    depth: int = Field(default=1, ge=1, le=10)
    top: int = Field(default=10, ge=1, le=200)
    interval: timedelta | None = timedelta(hours=24)
    timeout: timedelta | None = timedelta(minutes=5)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list the directories to measure, e.g. paths: [/home, /var]")
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must be an absolute path")
        return value


def parse_du(output: str) -> list[tuple[str, int]]:
    """(directory, bytes) from ``du -k`` lines, largest first."""
    sizes = []
    for line in output.splitlines():
        size, _, path = line.partition("\t")
        if size.strip().isdigit() and path:
            sizes.append((path, int(size) * 1024))
    return sorted(sizes, key=lambda item: -item[1])


class DuProbe(Probe):
    kind = "du"
    Config = DuConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {"total_bytes", "size_bytes", "share_percent", "unreadable"}
    )
    labels = ("path", "dir")
    needs_runner = True
    default_interval = timedelta(hours=24)
    config: DuConfig

    def check(self, ctx: ProbeContext) -> list[Outcome]:
        assert ctx.runner is not None
        cfg = self.config
        outcomes: list[Outcome] = []
        for path in cfg.paths:
            done = ctx.runner.run(
                ["sh", "-c", _DU_SCRIPT, "du", str(cfg.depth), path, str(cfg.top + 1)], ctx.timeout
            )
            outcomes.extend(self._path(path, done))
        return outcomes

    def _path(self, path: str, done: CommandResult) -> list[Outcome]:
        sizes = parse_du(done.stdout)
        unreadable = sum(1 for line in done.stderr.splitlines() if "Permission denied" in line)
        total = next(
            (size for p, size in sizes if p.rstrip("/") == path.rstrip("/") or p == path), None
        )
        if total is None:
            said = (done.stderr.strip() or "du printed nothing").splitlines()[0]
            return [
                Outcome.error(
                    f"cannot measure {path}: {said}",
                    labels={"path": path},
                    evidence=done.stdout + done.stderr,
                )
            ]
        dirs = [(p, size) for p, size in sizes if p.rstrip("/") != path.rstrip("/")][
            : self.config.top
        ]
        table = "\n".join(f"{size / 2**20:12.1f} MiB  {p}" for p, size in dirs)
        note = f" ({unreadable} unreadable, not counted)" if unreadable else ""
        largest = f"; largest {dirs[0][0]} {dirs[0][1] / 2**30:.2f} GiB" if dirs else ""
        summary = Outcome.ok(
            f"{path}: {total / 2**30:.2f} GiB{largest}{note}",
            metrics={"total_bytes": float(total), "unreadable": float(unreadable)},
            labels={"path": path},
            evidence=f"{total / 2**20:12.1f} MiB  {path} (total)\n{table}"
            + (f"\n--- stderr ---\n{done.stderr}" if done.stderr.strip() else ""),
        )
        return [summary] + [
            Outcome.ok(
                f"{d}: {size / 2**20:.1f} MiB",
                metrics={
                    "size_bytes": float(size),
                    "share_percent": round(100.0 * size / total, 2) if total else 0.0,
                },
                labels={"path": path, "dir": d},
            )
            for d, size in dirs
        ]
