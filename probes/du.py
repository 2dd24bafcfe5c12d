"""``du``: the largest directories under given paths, for the audit's cleanup candidates.

An audit probe: it walks whole trees, so it runs rarely (daily by default) with a long
timeout (5 minutes). For each path it gives one result with the path's total, and one per
directory among the ``top`` largest (labels ``path`` and ``dir``), so history shows which
directories grow. ``du -x`` stays on the path's filesystem; the sort happens on the
target, so only ``top`` lines per path cross the wire.

With ``old_files``, it also looks for files not modified for ``older_than`` under each of
those paths (GNU ``find -xdev``): one result per path (labels ``path`` and
``older_than``) with their count and total size, and one per file among the ``top``
largest of them (labels ``path``, ``older_than`` and ``file``; metrics ``file_bytes`` and
``age_days``), which the evidence also lists for a reader. Readers of the facts (the
audit) take them from those results, never from the evidence text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from probes.base import CommandResult, Outcome, Probe, ProbeConfig, ProbeContext, Result
from watcher.core.durations import format_duration, parse_duration

__all__ = [
    "DuProbe",
    "DuConfig",
    "OldFile",
    "OldFilesConfig",
    "OldFilesScan",
    "listed_old_files",
    "old_files_of",
    "parse_du",
    "parse_old_files",
]

# "$1".."$3" are the depth, the path and the line count: config values are arguments,
# never part of the script text.
_DU_SCRIPT = 'du -x -k -d "$1" -- "$2" | sort -rn | head -n "$3"'

# "$1".."$3" are the path, the age in minutes and the line count. Names end in NUL so
# that a newline in a name cannot split a record: tr turns newlines in names into "?" and
# the NULs into line ends. The sort runs on the target; awk passes the top lines and
# counts and sums every match. Exit 2: no such directory; 3: find without -printf.
_OLD_FILES_SCRIPT = r"""
now=$(date +%s)
[ -d "$1" ] || { echo "no such directory: $1" >&2; exit 2; }
find "$1" -maxdepth 0 -printf '' >/dev/null 2>&1 || {
  echo "find has no -printf here: old files need GNU find" >&2; exit 3; }
printf 'now\t%s\n' "$now"
find "$1" -xdev -type f -mmin +"$2" -printf '%s\t%T@\t%p\000' | tr '\n\000' '?\n' |
  sort -rn |
  awk -v top="$3" 'NR <= top + 0 { print } { n++; s += $1 } END { printf "total\t%.0f\t%.0f\n", n, s }'
"""
# Shown when a name has control characters: as "?", the way ls -q shows them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _absolute(value: list[str], example: str) -> list[str]:
    if not value:
        raise ValueError(f"list the directories, e.g. paths: {example}")
    for path in value:
        if not path.startswith("/"):
            raise ValueError(f"{path!r} must be an absolute path")
    return value


class OldFilesConfig(BaseModel):
    """``old_files: {paths: [/var/log], older_than: 30d, top: 10}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str]
    older_than: timedelta = timedelta(days=30)
    top: int = Field(default=10, ge=1, le=50)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        return _absolute(value, "[/var/log]")

    @field_validator("older_than", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("older_than")
    @classmethod
    def _a_day_at_least(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise ValueError(
                f"older_than is {format_duration(value)}: give a day or more, e.g. 30d"
            )
        return value


class DuConfig(ProbeConfig):
    paths: list[str]
    depth: int = Field(default=1, ge=1, le=10)
    top: int = Field(default=10, ge=1, le=200)
    old_files: OldFilesConfig | None = None
    interval: timedelta | None = timedelta(hours=24)
    timeout: timedelta | None = timedelta(minutes=5)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        return _absolute(value, "[/home, /var]")


def parse_du(output: str) -> list[tuple[str, int]]:
    """(directory, bytes) from ``du -k`` lines, largest first."""
    sizes = []
    for line in output.splitlines():
        size, _, path = line.partition("\t")
        if size.strip().isdigit() and path:
            sizes.append((path, int(size) * 1024))
    return sorted(sizes, key=lambda item: -item[1])


@dataclass(frozen=True)
class OldFile:
    size_bytes: int
    age_days: int
    name: str  # control characters shown as "?"


@dataclass(frozen=True)
class OldFilesScan:
    count: int
    size_bytes: int
    largest: list[OldFile]


def parse_old_files(output: str) -> OldFilesScan | None:
    """The scan from the old-files script's output; None if it did not finish."""
    now: float | None = None
    largest: list[OldFile] = []
    for line in output.splitlines():
        fields = line.split("\t", 2)
        if fields[0] == "now" and len(fields) == 2:
            now = float(fields[1])
        elif fields[0] == "total" and len(fields) == 3:
            return OldFilesScan(int(float(fields[1])), int(float(fields[2])), largest)
        elif len(fields) == 3 and fields[0].isdigit():
            age = 0.0 if now is None else max(0.0, now - float(fields[1])) / 86400
            largest.append(OldFile(int(fields[0]), math.floor(age), _CONTROL.sub("?", fields[2])))
    return None


_LISTED = re.compile(r"^\s*(\d+)\s+(\d+)  (.+)$")


def listed_old_files(evidence: str) -> list[OldFile]:
    """The largest old files as an old-files result's evidence lists them."""
    files = []
    for line in evidence.split("\n--- stderr ---\n")[0].splitlines():
        if match := _LISTED.match(line):
            files.append(OldFile(int(match[1]), int(match[2]), match[3]))
    return files


def old_files_of(scan: Result, results: Iterable[Result]) -> list[OldFile]:
    """The largest old files of an old-files result ``scan``, largest first: the per-file
    results of the same run (same target, check and time, same path and age)."""
    files = [
        OldFile(int(r.metrics["file_bytes"]), int(r.metrics.get("age_days", 0)), r.labels["file"])
        for r in results
        if "file" in r.labels
        and "file_bytes" in r.metrics
        and (r.target, r.probe, r.at) == (scan.target, scan.probe, scan.at)
        and r.labels.get("path") == scan.labels.get("path")
        and r.labels.get("older_than") == scan.labels.get("older_than")
    ]
    return sorted(files, key=lambda f: (-f.size_bytes, f.name))


def _mib_or_gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


class DuProbe(Probe):
    kind = "du"
    Config = DuConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "total_bytes",
            "size_bytes",
            "share_percent",
            "unreadable",
            "old_files",
            "old_bytes",
            "file_bytes",
            "age_days",
        }
    )
    labels = ("path", "dir", "older_than", "file")
    needs_runner = True
    default_interval = timedelta(hours=24)
    config: DuConfig

    def items(self) -> list[dict[str, str]]:
        # The largest directories (label dir) are found at run time: their last sizes stay.
        cfg = self.config
        items = [{"path": path} for path in cfg.paths]
        if cfg.old_files is not None:
            age = format_duration(cfg.old_files.older_than)
            items += [{"path": path, "older_than": age} for path in cfg.old_files.paths]
        return items

    def check(self, ctx: ProbeContext) -> list[Outcome]:
        assert ctx.runner is not None
        cfg = self.config
        outcomes: list[Outcome] = []
        for path in cfg.paths:
            done = ctx.runner.run(
                ["sh", "-c", _DU_SCRIPT, "du", str(cfg.depth), path, str(cfg.top + 1)], ctx.timeout
            )
            outcomes.extend(self._path(path, done))
        if cfg.old_files is not None:
            old = cfg.old_files
            minutes = str(int(old.older_than.total_seconds() // 60))
            for path in old.paths:
                done = ctx.runner.run(
                    ["sh", "-c", _OLD_FILES_SCRIPT, "du", path, minutes, str(old.top)],
                    ctx.timeout,
                )
                outcomes.extend(self._old_files(path, old.older_than, done))
        return outcomes

    def _old_files(self, path: str, older_than: timedelta, done: CommandResult) -> list[Outcome]:
        age = format_duration(older_than)
        labels = {"path": path, "older_than": age}
        scan = parse_old_files(done.stdout) if done.exit_code == 0 else None
        if scan is None:
            said = (done.stderr.strip() or f"exit code {done.exit_code}").splitlines()[-1]
            return [
                Outcome.error(
                    f"cannot list old files in {path}: {said}",
                    labels=labels,
                    evidence=done.stdout + done.stderr,
                )
            ]
        unreadable = sum(1 for line in done.stderr.splitlines() if "Permission denied" in line)
        note = f" ({unreadable} unreadable, not counted)" if unreadable else ""
        heading = (
            f"{scan.count} files under {path} not modified for over {age}: "
            f"{scan.size_bytes} bytes{note}"
        )
        table = [f"{'bytes':>14}  {'days':>5}  file"] + [
            f"{f.size_bytes:>14}  {f.age_days:>5}  {f.name}" for f in scan.largest
        ]
        summary = Outcome.ok(
            f"{path}: {scan.count} files not modified for over {age}, "
            f"{_mib_or_gib(scan.size_bytes)}{note}",
            metrics={
                "old_files": float(scan.count),
                "old_bytes": float(scan.size_bytes),
                "unreadable": float(unreadable),
            },
            labels=labels,
            evidence="\n".join([heading, *table])
            + (f"\n--- stderr ---\n{done.stderr}" if done.stderr.strip() else ""),
        )
        return [summary] + [
            Outcome.ok(
                f"{f.name}: {_mib_or_gib(f.size_bytes)}, {f.age_days} days old",
                metrics={"file_bytes": float(f.size_bytes), "age_days": float(f.age_days)},
                labels={**labels, "file": f.name},
            )
            for f in scan.largest
        ]

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
