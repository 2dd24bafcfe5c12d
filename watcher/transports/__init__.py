"""Where commands run: the watcher host itself (``local``) or a target over SSH (``ssh``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from probes.base import CommandResult, CommandRunner, TransportError

if TYPE_CHECKING:
    from watcher.config import Target, WatcherConfig

__all__ = ["CommandResult", "CommandRunner", "TransportError", "OUTPUT_CAP", "Runners"]

# Bytes kept of each of stdout and stderr; the rest is read and dropped so a chatty
# command can neither fill memory nor block on a full pipe.
OUTPUT_CAP = 64 * 1024


class Runners:
    """Hands each target the runner its probes use; SSH connections are pooled per host."""

    def __init__(self, config: WatcherConfig) -> None:
        from watcher.transports.local import LocalRunner

        self.config = config
        self.local = LocalRunner()
        self._ssh = None

    def for_target(self, target: Target) -> CommandRunner:
        if target.runner_kind == "local":
            return self.local
        return _Unavailable(f"ssh to {target.host}")

    def close(self) -> None:
        pass


class _Unavailable:
    def __init__(self, description: str) -> None:
        self.description = description

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        raise TransportError(f"{self.description}: the SSH transport is not available in this build")
