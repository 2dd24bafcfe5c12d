"""Builders for tests that run probes over SSH against the real sshd fixtures.

``new_pool`` gives a pool that is closed afterwards; ``settings_for_sshd``
points watcher's SSH settings at a test sshd with its host key in a known_hosts file, and
``run_check`` runs a probe the way the scheduler does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from probes.base import CommandRunner, Probe, ProbeContext, Result, run_probe
from tests.servers.base import make_workdir
from tests.servers.sshd import Sshd
from watcher.delivery.httpclient import HttpClients
from watcher.transports.local import LocalRunner
from watcher.transports.ssh import SshPool, SshSettings

__all__ = ["new_pool", "runner_for", "settings_for_sshd", "run_check", "context"]


@contextmanager
def new_pool() -> Iterator[SshPool]:
    """A fresh pool whose trust-on-first-use file lives in its own directory."""
    pool = SshPool(trust_file=make_workdir("ssh-trust") / "watcher.known_hosts")
    try:
        yield pool
    finally:
        pool.close()


def settings_for_sshd(
    sshd: Sshd, *, known: bool = True, key: str = "ed25519", **changes: Any
) -> SshSettings:
    """Settings that reach ``sshd`` as its test user with one client key.

    ``known``: write the server's key into a fresh known_hosts file (else an empty one).
    """
    known_hosts = make_workdir("known-hosts") / "known_hosts"
    if known:
        sshd.write_known_hosts(known_hosts)
    else:
        known_hosts.write_text("")
    settings = SshSettings(
        target="t",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        key_files=(sshd.client_keys.private_keys[key],),
        known_hosts=known_hosts,
        connect_timeout=10.0,
    )
    return replace(settings, **changes)


def context(runner: CommandRunner | None, timeout: float = 10.0, target: str = "t") -> ProbeContext:
    return ProbeContext(
        site="test",
        target=target,
        host="127.0.0.1",
        labels={},
        timeout=timeout,
        http=HttpClients(),
        runner=runner,
    )


def run_check(
    probe: Probe, runner: CommandRunner | None, timeout: float = 10.0, probe_id: str | None = None
) -> list[Result]:
    """Runs one check as the scheduler does (errors become results, never exceptions)."""
    return run_probe(probe, context(runner, timeout), probe_id or probe.kind)


@contextmanager
def runner_for(kind: str, sshd_factory: Callable[..., Sshd]) -> Iterator[CommandRunner]:
    """``ssh``: a pooled runner to a fresh test sshd; ``local``: the watcher host itself."""
    if kind == "local":
        yield LocalRunner()
        return
    sshd = sshd_factory()
    with new_pool() as pool:
        yield pool.runner(settings_for_sshd(sshd))
