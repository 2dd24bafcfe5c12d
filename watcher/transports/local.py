"""Runs probe commands on the watcher host itself."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from probes.base import CommandResult, TransportError, decode_output
from watcher.schedule import deadline as check_deadline
from watcher.transports import OUTPUT_CAP

__all__ = ["LocalRunner"]


class LocalRunner:
    """A ``CommandRunner`` for the local host. Argv lists run without a shell."""

    description = "local"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # A fixed, small environment: a probe's result must not depend on who started
        # the watcher, and LC_ALL=C keeps df, uptime and friends parseable.
        self._env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C",
        }
        if env:
            self._env.update(env)

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        argv: Sequence[str] | str = command
        shell = isinstance(command, str)
        # What is left of the check, not a whole timeout per command of a probe.
        timeout = check_deadline.within_current(timeout)
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                shell=shell,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # so a timeout can kill the whole process group
            )
        except FileNotFoundError:
            name = command if shell else command[0]
            raise TransportError(f"command not found: {name}", reason="not_found") from None
        except OSError as exc:
            raise TransportError(f"cannot start command: {exc}") from None
        check = check_deadline.current()
        if check is not None:
            # A check cut from outside (a stopping watcher) takes its command with it.
            check.on_expiry(lambda: _signal_group(proc))
        out, err, timed_out = _read_capped(proc, timeout)
        if timed_out or (check is not None and check.cut):
            _kill_group(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            raise TransportError(
                f"command did not finish within {timeout:.1f}s and was killed", reason="timeout"
            )
        return CommandResult(
            exit_code=proc.returncode,
            stdout=decode_output(out),
            stderr=decode_output(err),
            duration_s=time.perf_counter() - started,
        )


def _read_capped(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes, bool]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None and proc.stderr is not None  # started with PIPE for both
    buffers: dict[Any, bytearray] = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    with selectors.DefaultSelector() as selector:
        for stream in buffers:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), True
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fileobj]
                if len(buffer) < OUTPUT_CAP:
                    buffer += chunk[: OUTPUT_CAP - len(buffer)]
    try:
        proc.wait(timeout=max(0.01, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), True
    finally:
        for stream in buffers:
            stream.close()
    return bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr]), False


def _signal_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:  # not reaped yet, so its group id is still its own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
