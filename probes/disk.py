"""``disk``: space and inodes per mount, through ``df`` on the target (local or SSH).

One result per path, labelled ``path``, so rules group incidents per mount.
"""

from __future__ import annotations

from typing import ClassVar

from probes.base import CommandResult, Outcome, Probe, ProbeConfig, ProbeContext

__all__ = ["DiskProbe", "DiskConfig", "parse_df"]

# Filesystems that are not storage anyone fills by accident; listed paths are always checked.
DEFAULT_EXCLUDED = [
    "tmpfs",
    "devtmpfs",
    "squashfs",
    "overlay",
    "efivarfs",
    "ramfs",
    "nsfs",
    "tracefs",
]


class DiskConfig(ProbeConfig):
    paths: list[str] = []
    exclude_types: list[str] = DEFAULT_EXCLUDED


def parse_df(space: str, inodes: str) -> dict[str, dict[str, float | str]]:
    """Parses ``df -P -B1`` and ``df -P -i`` output into figures keyed by mount point.

    POSIX output wraps nothing with -P, so each line is: filesystem, total, used, free,
    capacity, mounted-on (which may contain spaces, so it is everything after field 5).
    """
    mounts: dict[str, dict[str, float | str]] = {}
    for line in space.splitlines()[1:]:
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[1].isdigit():
            continue
        total, used, free = int(fields[1]), int(fields[2]), int(fields[3])
        usable = used + free
        mounts[fields[5]] = {
            "device": fields[0],
            "size_bytes": float(total),
            "used_bytes": float(used),
            "free_bytes": float(free),
            # As df computes it: reserved blocks do not count as available to users.
            "used_percent": round(100.0 * used / usable, 2) if usable else 0.0,
        }
    for line in inodes.splitlines()[1:]:
        fields = line.split(None, 5)
        if len(fields) < 6 or fields[5] not in mounts or not fields[1].isdigit():
            continue
        total, used, free = int(fields[1]), int(fields[2]), int(fields[3])
        mounts[fields[5]]["inodes_free"] = float(free)
        mounts[fields[5]]["inodes_used_percent"] = round(100.0 * used / total, 2) if total else 0.0
    return mounts


class DiskProbe(Probe):
    kind = "disk"
    Config = DiskConfig
    metrics: ClassVar[frozenset[str]] = frozenset(
        {
            "used_percent",
            "free_bytes",
            "used_bytes",
            "size_bytes",
            "inodes_used_percent",
            "inodes_free",
        }
    )
    labels = ("path",)
    needs_runner = True
    config: DiskConfig

    def items(self) -> list[dict[str, str]]:
        # Mounts found at run time cannot be named before df answers: then one item.
        return [{"path": path} for path in self.config.paths] or [{}]

    def check(self, ctx: ProbeContext) -> list[Outcome]:
        assert ctx.runner is not None
        cfg = self.config
        excludes = [] if cfg.paths else [a for t in cfg.exclude_types for a in ("-x", t)]
        space = ctx.runner.run(["df", "-P", "-B1", *excludes, "--", *cfg.paths], ctx.timeout)
        inodes = ctx.runner.run(["df", "-P", "-i", *excludes, "--", *cfg.paths], ctx.timeout)
        mounts = parse_df(space.stdout, inodes.stdout)
        if not cfg.paths:
            if not mounts:
                return [_df_failed(space)]
            return [
                self._outcome(mount, mount, figures, space)
                for mount, figures in sorted(mounts.items())
            ]
        # df prints one line per argument it could read, in order, naming the mount that
        # holds it; the ones it could not read are named on stderr instead.
        lines = [line for line in space.stdout.splitlines()[1:] if line.strip()]
        unreadable = _df_complaints(space.stderr)
        readable = [p for p in cfg.paths if p not in unreadable]
        mount_of = (
            {path: line.split(None, 5)[-1] for path, line in zip(readable, lines, strict=True)}
            if len(readable) == len(lines)
            else {}
        )
        outcomes = []
        for path in cfg.paths:
            mount = mount_of.get(path)
            if mount is None or mount not in mounts:
                said = [line for line in space.stderr.splitlines() if path in line] or [
                    space.stderr.strip()
                ]
                outcomes.append(
                    Outcome.error(
                        f"cannot read {path}: {said[0] or 'df printed nothing'}",
                        labels={"path": path},
                        evidence=space.stdout + space.stderr,
                    )
                )
                continue
            outcomes.append(self._outcome(path, mount, mounts[mount], space))
        return outcomes

    @staticmethod
    def _outcome(
        path: str, mount: str, figures: dict[str, float | str], df: CommandResult
    ) -> Outcome:
        metrics = {k: v for k, v in figures.items() if isinstance(v, float)}
        free_gb = metrics["free_bytes"] / 1e9
        on = "" if mount == path else f" (on {mount})"
        message = f"{path}{on}: {metrics['used_percent']:.1f}% used, {free_gb:.2f} GB free"
        if "inodes_used_percent" in metrics:
            message += f", inodes {metrics['inodes_used_percent']:.0f}% used"
        return Outcome.ok(message, metrics=metrics, labels={"path": path}, evidence=df.stdout)


def _df_complaints(stderr: str) -> set[str]:
    """The paths df named in ``df: PATH: reason`` lines (GNU quotes odd names)."""
    named = set()
    for line in stderr.splitlines():
        if line.startswith("df: ") and ": " in line[4:]:
            name = line[4:].rsplit(": ", 1)[0]
            if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
                name = name[1:-1]
            named.add(name)
    return named


def _df_failed(df: CommandResult) -> Outcome:
    return Outcome.error(
        f"df failed (exit {df.exit_code}): {df.stderr.strip()[:200]}",
        evidence=df.stdout + df.stderr,
    )
