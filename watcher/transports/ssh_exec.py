"""One command on an open SSH channel, within a deadline, its output capped.

The only place paramiko's internals are used (see the pin in pyproject.toml):
``Channel.exec_command`` waits for the server's answer without a timeout, so the exec request
is sent here and its answer awaited with one.
"""

from __future__ import annotations

import contextlib
import selectors
import time

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from probes.base import CommandResult, TransportError, decode_output
from watcher.schedule import deadline as check_deadline
from watcher.transports import OUTPUT_CAP

__all__ = ["remaining", "run_on_channel"]


def remaining(deadline: float, where: str, doing: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError(f"{where}: timed out {doing}", reason="timeout")
    return left


def _exec(channel: paramiko.Channel, command: str, deadline: float, where: str) -> None:
    """``Channel.exec_command`` with a deadline: paramiko's own waits for the server's
    answer without one, which would stick a worker on a host that stopped answering."""
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("exec")
    message.add_boolean(True)
    message.add_string(command)
    # paramiko internals (see pyproject.toml's pin): its stubs know neither
    channel._event_pending()  # type: ignore[attr-defined]
    channel.transport._send_user_message(message)  # type: ignore[union-attr]
    if not channel.event.wait(remaining(deadline, where, "starting the command")):
        raise TimeoutError
    if not channel.event_ready:
        if channel.closed or not channel.transport.is_active():  # type: ignore[union-attr]
            raise EOFError("the channel closed before the command started")
        raise TransportError(f"{where}: the server refused to run the command")


def _signal_kill(channel: paramiko.Channel) -> None:
    """Asks sshd (7.9+) to KILL the command; best effort, the channel closes anyway."""
    with contextlib.suppress(Exception):
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("signal")
        message.add_boolean(False)
        message.add_string("KILL")
        channel.transport._send_user_message(message)  # type: ignore[union-attr]


def run_on_channel(
    channel: paramiko.Channel, command: str, deadline: float, timeout: float, where: str
) -> CommandResult:
    started = time.perf_counter()
    try:
        # Like the local runner, ask for the C locale so df and friends stay parseable;
        # sshd honours it where AcceptEnv allows LC_* (Debian's default), else ignores it.
        channel.set_environment_variable("LC_ALL", "C")
        _exec(channel, command, deadline, where)
        stdout, stderr = _read_until_eof(channel, deadline, check_deadline.current())
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError
        exit_code = channel.recv_exit_status()
    except TimeoutError:
        _signal_kill(channel)
        channel.close()
        raise TransportError(
            f"{where}: command did not finish within {timeout:.1f}s; its channel was closed",
            reason="timeout",
        ) from None
    except TransportError:
        channel.close()
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        channel.close()
        raise TransportError(
            f"{where}: connection lost while the command ran: {exc}", reason="unreachable"
        ) from None
    channel.close()
    return CommandResult(
        exit_code=exit_code,
        stdout=decode_output(stdout),
        stderr=decode_output(stderr),
        duration_s=time.perf_counter() - started,
    )


def _read_until_eof(
    channel: paramiko.Channel, deadline: float, check: check_deadline.Deadline | None = None
) -> tuple[bytes, bytes]:
    """Reads stdout and stderr as they come, keeping OUTPUT_CAP bytes of each and dropping
    the rest, so a chatty command can neither fill memory nor stall on a full window.
    A check cut from outside (a stopping watcher) ends the wait within a quarter second."""
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        # The channel's fileno is a pipe paramiko sets whenever either buffer has data or
        # the channel reaches EOF, so one select covers both streams.
        selector.register(channel.fileno(), selectors.EVENT_READ)
        while True:
            progressed = False
            if channel.recv_ready():
                _keep(out, channel.recv(65536))
                progressed = True
            if channel.recv_stderr_ready():
                _keep(err, channel.recv_stderr(65536))
                progressed = True
            if progressed:
                continue
            if channel.eof_received or channel.closed:
                return bytes(out), bytes(err)
            left = deadline - time.monotonic()
            if left <= 0 or (check is not None and check.cut):
                raise TimeoutError
            selector.select(left if check is None else min(left, 0.25))


def _keep(buffer: bytearray, chunk: bytes) -> None:
    if len(buffer) < OUTPUT_CAP:
        buffer += chunk[: OUTPUT_CAP - len(buffer)]
