"""Where commands run: the watcher host itself (``local``) or a target over SSH (``ssh``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from probes.base import CommandResult, CommandRunner, TransportError

if TYPE_CHECKING:
    from watcher.config.models import Target, WatcherConfig
    from watcher.transports.ssh import SshPool

__all__ = ["CommandResult", "CommandRunner", "TransportError", "OUTPUT_CAP", "Runners"]

# Bytes kept of each of stdout and stderr; the rest is read and dropped so a chatty
# command can neither fill memory nor block on a full pipe.
OUTPUT_CAP = 64 * 1024


class Runners:
    """Hands each target the runner its probes use; SSH connections are pooled per host.

    ``base_dir`` is the config file's folder: relative ``state``, ``key_file`` and
    ``known_hosts`` paths are taken from there. Keys trusted on first use are recorded in
    ``<state>.known_hosts`` beside the state file.
    """

    def __init__(self, config: WatcherConfig, *, base_dir: Path | None = None) -> None:
        from watcher.transports.local import LocalRunner

        self.config = config
        self.base_dir = base_dir
        self.local = LocalRunner()
        self._ssh: SshPool | None = None
        self._lock = threading.Lock()

    @property
    def trust_file(self) -> Path:
        state = Path(self.config.state).expanduser()
        if not state.is_absolute() and self.base_dir is not None:
            state = self.base_dir / state
        return state.with_suffix(".known_hosts")

    @property
    def ssh(self) -> SshPool:
        from watcher.transports.ssh import SshPool

        with self._lock:
            if self._ssh is None:
                self._ssh = SshPool(trust_file=self.trust_file)
            return self._ssh

    def for_target(self, target: Target) -> CommandRunner:
        if target.runner_kind == "local":
            return self.local
        from watcher.transports.ssh import settings_for

        try:
            settings = settings_for(target, self.config, self.base_dir)
        except TransportError as exc:
            return _Unavailable(f"ssh to {target.host}", str(exc))
        return self.ssh.runner(settings)

    def close(self) -> None:
        with self._lock:
            pool, self._ssh = self._ssh, None
        if pool is not None:
            pool.close()


class _Unavailable:
    """Stands in for a runner that cannot be built; every check says why."""

    def __init__(self, description: str, problem: str) -> None:
        self.description = description
        self.problem = problem

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        raise TransportError(f"{self.description}: {self.problem}")
