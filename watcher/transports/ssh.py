"""Runs probe commands on targets over SSH, through one persistent connection per host.

Every probe on a host shares one paramiko Transport per (host, port, user, bastion); each
command is a new ``exec`` channel on it, so a check costs one channel round trip instead
of a TCP connect, a key exchange and an authentication. The host key is verified before
any credential or command is sent: against ``known_hosts`` (default ``~/.ssh/known_hosts``)
and watcher's own trust file, or against a pinned ``host_key: SHA256:...``. An unknown key
is refused unless ``trust_on_first_use: true`` says to record it; a changed key is always
refused, with a message that says so.

A command that outlives its timeout has its channel closed (and a KILL signal requested),
raises ``TransportError`` within the timeout, and leaves the connection serving the next
check. A connection found dead is reopened once before giving up, so a restarted sshd
costs no watcher restart.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from probes.base import CommandResult, TransportError
from watcher.core.secret import Secret
from watcher.schedule import deadline as check_deadline
from watcher.transports.known_hosts import (
    fingerprint,
    known_hosts_name,
    matching_entries,
)
from watcher.transports.ssh_exec import remaining, run_on_channel

if TYPE_CHECKING:
    from watcher.config.models import SshOptions, Target, WatcherConfig

__all__ = [
    "HostKeyError",
    "SshConnection",
    "SshPool",
    "SshRunner",
    "SshSettings",
    "fingerprint",
    "settings_for",
]

log = logging.getLogger("watcher.ssh")

DEFAULT_KEY_FILES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# OpenSSH allows 10 sessions per connection (MaxSessions); stay under it by default.
DEFAULT_MAX_CHANNELS = 8
# The signature algorithms each known_hosts key type can be verified with.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


class HostKeyError(TransportError):
    """The host presented a key that is not the one we know (or one we do not know)."""


@dataclass(frozen=True)
class SshSettings:
    """Everything needed to reach one host, resolved from ``ssh:`` and the target."""

    target: str
    host: str
    user: str
    port: int = 22
    key_files: tuple[Path, ...] = ()
    passphrase: Secret | None = None
    password: Secret | None = None
    agent: bool = False
    known_hosts: Path = Path(DEFAULT_KNOWN_HOSTS).expanduser()
    host_key: str | None = None
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0
    banner_timeout: float = 10.0
    auth_timeout: float = 10.0
    keepalive: float = 30.0
    idle_close: float = 300.0
    max_channels: int = DEFAULT_MAX_CHANNELS
    via: SshSettings | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[object, ...]:
        """Targets whose settings agree (the same host, port and user, reached and checked
        the same way) share one connection; the target's name does not matter."""
        return (replace(self, target="", via=None), self.via.key if self.via else None)

    @property
    def where(self) -> str:
        hop = f" via {self.via.target}" if self.via else ""
        return f"ssh {self.user}@{known_hosts_name(self.host, self.port)}{hop}"


def settings_for(
    target: Target, model: WatcherConfig, base_dir: Path | None = None, _seen: tuple[str, ...] = ()
) -> SshSettings:
    """Merges ``ssh:`` defaults with the target's own and resolves ``via:`` recursively."""
    opts: SshOptions = model.ssh.merged(target.ssh)
    if target.host is None:
        raise TransportError(f"target {target.name} has no host to reach over SSH")
    if not opts.user:
        raise TransportError(f"no SSH user for {target.name}: set ssh: {{user: ...}}")

    def path(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() or base_dir is None else base_dir / candidate

    via = None
    if target.via is not None:
        if target.via in (*_seen, target.name):
            raise TransportError(f"the via: chain of {target.name} loops back to {target.via}")
        by_name = {t.name: t for t in model.targets}
        if target.via not in by_name:
            raise TransportError(f"via: names no target: {target.via}")
        via = settings_for(by_name[target.via], model, base_dir, (*_seen, target.name))
    key_files: tuple[Path, ...] = (path(opts.key_file),) if opts.key_file else ()
    agent = opts.agent if opts.agent is not None else not (key_files or opts.password)
    if not key_files and not opts.password and opts.agent is None:
        # Nothing configured: do what ssh does, the agent and then the usual key files.
        key_files = tuple(
            p for p in (Path(f).expanduser() for f in DEFAULT_KEY_FILES) if p.is_file()
        )
    connect = opts.connect_timeout.total_seconds() if opts.connect_timeout else 10.0
    return SshSettings(
        target=target.name,
        host=target.host,
        user=opts.user,
        port=opts.port or 22,
        key_files=key_files,
        passphrase=opts.passphrase,
        password=opts.password,
        agent=agent,
        known_hosts=path(opts.known_hosts or DEFAULT_KNOWN_HOSTS),
        host_key=opts.host_key,
        trust_on_first_use=bool(opts.trust_on_first_use),
        connect_timeout=connect,
        banner_timeout=opts.banner_timeout.total_seconds() if opts.banner_timeout else connect,
        auth_timeout=opts.auth_timeout.total_seconds() if opts.auth_timeout else connect,
        keepalive=opts.keepalive.total_seconds() if opts.keepalive else 30.0,
        idle_close=opts.idle_close.total_seconds() if opts.idle_close else 300.0,
        max_channels=opts.max_channels or DEFAULT_MAX_CHANNELS,
        via=via,
    )


class SshRunner:
    """A ``CommandRunner`` for one target: argv lists are shell-quoted, strings sent as is.

    SSH always runs a command through the login shell on the target, so an argv list is
    joined with ``shlex.join``: every argument arrives as one word, whatever it contains.
    """

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection
        self.description = connection.settings.where

    def run(self, command: Sequence[str] | str, timeout: float) -> CommandResult:
        text = command if isinstance(command, str) else shlex.join(command)
        return self.connection.run(text, timeout)


class SshPool:
    """The connections of one watcher: one per host, opened on demand, closed when idle.

    ``trust_file`` is watcher's own known_hosts, where trust-on-first-use records keys;
    it is read (with the configured known_hosts) for every target.
    """

    def __init__(self, trust_file: Path | None = None) -> None:
        self.trust_file = trust_file
        self._connections: dict[tuple[object, ...], SshConnection] = {}
        self._lock = threading.Lock()
        self._trust_lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def runner(self, settings: SshSettings) -> SshRunner:
        return SshRunner(self.connection(settings))

    def connection(self, settings: SshSettings) -> SshConnection:
        via = self.connection(settings.via) if settings.via else None
        with self._lock:
            conn = self._connections.get(settings.key)
            if conn is None:
                conn = SshConnection(settings, pool=self, via=via)
                self._connections[settings.key] = conn
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap_idle, name="ssh-idle", daemon=True
                )
                self._reaper.start()
            return conn

    def connections(self) -> list[SshConnection]:
        with self._lock:
            return list(self._connections.values())

    def close(self) -> None:
        self._stop.set()
        # Tunnelled connections first: closing a bastion drops the channels they ride on.
        for conn in sorted(self.connections(), key=lambda c: -c.depth):
            conn.close()
        if self._reaper is not None:
            self._reaper.join(timeout=2)

    def _reap_idle(self) -> None:
        while not self._stop.is_set():
            conns = self.connections()
            shortest = min((c.settings.idle_close for c in conns), default=30.0)
            self._stop.wait(min(30.0, max(0.2, shortest / 4)))
            now = time.monotonic()
            for conn in sorted(conns, key=lambda c: -c.depth):
                conn.close_if_idle(now)

    # -- trust on first use
    def record_host_key(self, settings: SshSettings, key: paramiko.PKey) -> Path:
        """Appends the key to the trust file, unless another connection just did."""
        if self.trust_file is None:
            raise HostKeyError(
                f"{settings.where}: trust_on_first_use needs a state file to record keys beside"
            )
        name = known_hosts_name(settings.host, settings.port)
        with self._trust_lock:
            if any(
                entry.key.asbytes() == key.asbytes() and not entry.revoked
                for entry in matching_entries(self.trust_file, name)
            ):
                return self.trust_file
            self.trust_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.trust_file, "a", encoding="utf-8") as fh:
                fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
        return self.trust_file


@dataclass
class _KnownKey:
    key: paramiko.PKey
    source: str
    revoked: bool = False


class SshConnection:
    """One host's transport, reopened when found dead, with a cap on concurrent channels."""

    def __init__(
        self, settings: SshSettings, *, pool: SshPool, via: SshConnection | None = None
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.via = via
        self.depth: int = via.depth + 1 if via else 0
        self._transport: paramiko.Transport | None = None
        self._slots = threading.BoundedSemaphore(settings.max_channels)
        self._connect_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._failure: tuple[float, TransportError] | None = None
        self._keys: list[tuple[str, paramiko.PKey]] | None = None
        self._busy = 0
        self._tunnels: set[SshConnection] = set()
        self.last_used = time.monotonic()
        self.connects = 0
        self._closed = False
        if via is not None:
            via._tunnels.add(self)

    # -- state
    @property
    def connected(self) -> bool:
        transport = self._transport
        return transport is not None and transport.is_active()

    def close(self) -> None:
        """Closes the transport for good: a check still connecting drops what it opens."""
        with self._state_lock:
            self._closed = True
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def close_if_idle(self, now: float) -> bool:
        with self._state_lock:
            idle = now - self.last_used >= self.settings.idle_close and self._busy == 0
            if not idle or self._transport is None or any(t.connected for t in self._tunnels):
                return False
            transport, self._transport = self._transport, None
        log.debug("%s: closing after %.0fs idle", self.settings.where, now - self.last_used)
        transport.close()
        return True

    def _touch(self, busy: int = 0) -> None:
        with self._state_lock:
            self._busy += busy
            self.last_used = time.monotonic()
        if self.via is not None:
            self.via._touch()

    # -- running commands
    def run(self, command: str, timeout: float) -> CommandResult:
        # A probe that runs several commands gets what is left of its check, not a whole
        # timeout per command.
        timeout = check_deadline.within_current(timeout)
        deadline = time.monotonic() + timeout
        where = self.settings.where
        if not self._slots.acquire(timeout=max(0.0, timeout)):
            raise TransportError(
                f"{where}: all {self.settings.max_channels} channels stayed busy for {timeout:.1f}s "
                "(raise ssh: max_channels, or the checks' timeouts)",
                reason="timeout",
            )
        self._touch(+1)
        try:
            channel = self._open_channel(deadline)
            return run_on_channel(channel, command, deadline, timeout, where)
        finally:
            self._touch(-1)
            self._slots.release()

    def _open_channel(self, deadline: float) -> paramiko.Channel:
        where = self.settings.where
        for attempt in (1, 2):
            transport = self.transport(deadline)
            try:
                return transport.open_session(
                    timeout=remaining(deadline, where, "opening a channel")
                )
            except paramiko.ChannelException as exc:
                raise TransportError(
                    f"{where}: the server refused a session channel: {exc}"
                ) from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # A transport that cannot open a channel is dead or hung: drop it. Nothing
                # ran yet, so one fresh connection is safe to try if time is left.
                self._discard(transport)
                if time.monotonic() >= deadline:
                    raise TransportError(
                        f"{where}: timed out opening a channel", reason="timeout"
                    ) from None
                if attempt == 2:
                    raise TransportError(
                        f"{where}: connection lost: {exc}", reason="unreachable"
                    ) from None
                log.info(
                    "%s: connection found dead (%s), reconnecting", where, exc or type(exc).__name__
                )
        raise AssertionError("unreachable")

    def _discard(self, transport: paramiko.Transport) -> None:
        with self._state_lock:
            if self._transport is transport:
                self._transport = None
        transport.close()

    # -- connecting
    def transport(self, deadline: float) -> paramiko.Transport:
        """The live transport, connecting first if there is none (or it died)."""
        transport = self._transport
        if transport is not None and transport.is_active():
            return transport
        where = self.settings.where
        if self._closed:
            raise TransportError(f"{where}: the connection pool was closed", reason="unreachable")
        waiting_since = time.monotonic()
        if not self._connect_lock.acquire(timeout=max(0.0, deadline - waiting_since)):
            raise TransportError(
                f"{where}: timed out waiting for the connection to open", reason="timeout"
            )
        try:
            transport = self._transport
            if transport is not None and transport.is_active():
                return transport
            failure = self._failure
            if failure is not None and failure[0] >= waiting_since:
                # Checks that queued behind a failed attempt share its answer rather than
                # each waiting out a connect timeout in turn.
                raise type(failure[1])(str(failure[1]), reason=failure[1].reason)
            try:
                transport = self._connect(deadline)
            except TransportError as exc:
                self._failure = (time.monotonic(), exc)
                raise
            with self._state_lock:
                closed = self._closed
                if not closed:
                    self._transport = transport
            if closed:
                transport.close()
                raise TransportError(
                    f"{where}: the connection pool was closed", reason="unreachable"
                )
            self._failure = None
            self.connects += 1
            return transport
        finally:
            self._connect_lock.release()

    def _connect(self, deadline: float) -> paramiko.Transport:
        s = self.settings
        limit = min(deadline, time.monotonic() + s.connect_timeout)
        sock = self._socket(limit)
        try:
            transport = paramiko.Transport(sock)
        except Exception:
            sock.close()
            raise
        try:
            transport.banner_timeout = max(0.1, min(s.banner_timeout, limit - time.monotonic()))
            transport.handshake_timeout = max(0.1, limit - time.monotonic())
            known = self._known_keys()
            _prefer_key_types(transport, known)
            negotiated = threading.Event()
            transport.start_client(event=negotiated)
            if not negotiated.wait(max(0.0, limit - time.monotonic())):
                raise TransportError(
                    f"{s.where}: no SSH handshake within {s.connect_timeout:.0f}s", reason="timeout"
                )
            if not transport.is_active():
                raise TransportError(
                    f"{s.where}: SSH handshake failed: {transport.get_exception() or 'connection closed'}",
                    reason="unreachable",
                )
            self._verify_host_key(transport.get_remote_server_key(), known)
            transport.auth_timeout = max(0.1, min(s.auth_timeout, deadline - time.monotonic()))
            self._authenticate(transport)
            transport.set_keepalive(max(1, int(s.keepalive)))
        except TransportError:
            transport.close()
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise TransportError(
                f"{s.where}: SSH connection failed: {exc}", reason="unreachable"
            ) from None
        except BaseException:
            transport.close()
            raise
        log.info("%s: connected", s.where)
        return transport

    def _socket(self, limit: float) -> socket.socket | paramiko.Channel:
        s = self.settings
        budget = limit - time.monotonic()
        if budget <= 0:
            raise TransportError(f"{s.where}: no time left to connect", reason="timeout")
        if self.via is not None:
            bastion = self.via.transport(limit)
            try:
                return bastion.open_channel(
                    "direct-tcpip",
                    (s.host, s.port),
                    ("127.0.0.1", 0),
                    timeout=max(0.1, limit - time.monotonic()),
                )
            except paramiko.ChannelException as exc:
                raise TransportError(
                    f"{s.where}: the bastion could not reach {s.host}:{s.port} ({exc.text})",
                    reason="unreachable",
                ) from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.via._discard(bastion)
                raise TransportError(
                    f"{s.where}: tunnel through the bastion failed: {exc}", reason="unreachable"
                ) from None
        try:
            # The connection is shared by every check on the host and outlives this one:
            # the deadline of the check that happens to open it must not shut it down.
            with check_deadline.unwatched():
                sock = socket.create_connection((s.host, s.port), timeout=budget)
        except TimeoutError:
            raise TransportError(
                f"{s.where}: TCP connect timed out after {budget:.1f}s", reason="timeout"
            ) from None
        except ConnectionRefusedError:
            raise TransportError(
                f"{s.where}: connection refused (is sshd running?)", reason="unreachable"
            ) from None
        except OSError as exc:
            raise TransportError(
                f"{s.where}: cannot connect: {exc.strerror or exc}", reason="unreachable"
            ) from None
        # Each exec is a few small packets answered by the server: without TCP_NODELAY,
        # Nagle's algorithm holds them back ~40 ms per check waiting for delayed ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    # -- host keys
    def _known_keys(self) -> list[_KnownKey]:
        s = self.settings
        name = known_hosts_name(s.host, s.port)
        files = [s.known_hosts] + ([self.pool.trust_file] if self.pool.trust_file else [])
        known: list[_KnownKey] = []
        for file in files:
            for entry in matching_entries(file, name):
                known.append(_KnownKey(entry.key, f"{file} line {entry.lineno}", entry.revoked))
        return known

    def _verify_host_key(self, key: paramiko.PKey, known: list[_KnownKey]) -> None:
        s = self.settings
        name = known_hosts_name(s.host, s.port)
        presented = f"{key.get_name()} {fingerprint(key)}"
        revoked = [k for k in known if k.revoked]
        known = [k for k in known if not k.revoked]
        for k in revoked:
            if k.key.asbytes() == key.asbytes():
                # As OpenSSH: a revoked key is never accepted, pinned or listed elsewhere.
                raise HostKeyError(
                    f"{s.where}: host key REVOKED: the host presented {presented}, which "
                    f"{k.source} marks @revoked. Someone may be using a stolen key; the host "
                    "needs a new key. No command was sent.",
                    reason="host_key_changed",
                )
        if s.host_key:
            if fingerprint(key) != s.host_key:
                raise HostKeyError(
                    f"{s.where}: host key CHANGED: the host presented {presented}, but host_key pins "
                    f"{s.host_key}. Someone may be intercepting the connection, or the host was "
                    "reinstalled: verify the key with its admin before changing host_key. No command was sent.",
                    reason="host_key_changed",
                )
            return
        if any(k.key.asbytes() == key.asbytes() for k in known):
            return
        if known:
            listed = "; ".join(
                f"{k.key.get_name()} {fingerprint(k.key)} ({k.source})" for k in known
            )
            raise HostKeyError(
                f"{s.where}: host key CHANGED: the host presented {presented}, but known is {listed}. "
                "Someone may be intercepting the connection, or the host was reinstalled: verify the "
                "new key with its admin, then replace that line. No command was sent.",
                reason="host_key_changed",
            )
        if s.trust_on_first_use:
            where = self.pool.record_host_key(s, key)
            log.warning("%s: trusting %s on first use; recorded in %s", s.where, presented, where)
            return
        raise HostKeyError(
            f"{s.where}: host key not known: the host presented {presented}, which is in neither "
            f"{s.known_hosts} nor {self.pool.trust_file or 'a trust file'}. Verify it, then add it "
            f"(ssh-keyscan -p {s.port} {s.host} >> {s.known_hosts}), pin it with host_key: SHA256:..., "
            f"or set trust_on_first_use: true. No command was sent to {name}.",
            reason="host_key_unknown",
        )

    # -- authentication
    def _authenticate(self, transport: paramiko.Transport) -> None:
        s = self.settings
        tried: list[str] = []
        for label, key in self._client_keys():
            tried.append(label)
            if (
                _try_auth(lambda k=key: transport.auth_publickey(s.user, k))
                and transport.is_authenticated()
            ):
                return
        if s.agent:
            with contextlib.closing(paramiko.Agent()) as agent:
                for key in agent.get_keys():
                    tried.append(f"agent key {fingerprint(key)}")
                    if (
                        _try_auth(lambda k=key: transport.auth_publickey(s.user, k))
                        and transport.is_authenticated()
                    ):
                        return
        if s.password:
            tried.append("password")
            secret = s.password.reveal()
            if (
                _try_auth(lambda: transport.auth_password(s.user, secret))
                and transport.is_authenticated()
            ):
                return
        if not tried:
            raise TransportError(
                f"{s.where}: no credentials to offer: set ssh: key_file, password, or agent: true "
                "(with SSH_AUTH_SOCK set)",
                reason="auth",
            )
        raise TransportError(
            f"{s.where}: authentication refused (tried {', '.join(tried)}); check the user, key or "
            "password: retrying will not help",
            reason="auth",
        )

    def _client_keys(self) -> list[tuple[str, paramiko.PKey]]:
        if self._keys is None:
            self._keys = [
                (f"key {path}", _load_key(path, self.settings)) for path in self.settings.key_files
            ]
        return self._keys


# --------------------------------------------------------------------------- helpers


def _try_auth(attempt: object) -> bool:
    try:
        attempt()  # type: ignore[operator]
    except paramiko.BadAuthenticationType:
        return False
    except paramiko.AuthenticationException:
        return False
    return True


def _load_key(path: Path, settings: SshSettings) -> paramiko.PKey:
    where = settings.where
    if not path.is_file():
        raise TransportError(
            f"{where}: key_file {path} does not exist or is not a file", reason="auth"
        )
    passphrase = settings.passphrase.reveal().encode() if settings.passphrase else None
    try:
        # positional: paramiko 5 renamed this argument (passphrase -> password)
        # bytes, as paramiko's key loaders take it at run time (its annotation says str)
        return paramiko.PKey.from_path(path, passphrase)  # type: ignore[arg-type]
    except (paramiko.SSHException, ValueError, TypeError, OSError) as exc:
        # An encrypted key without a passphrase: paramiko's loader raises
        # PasswordRequiredException, cryptography's (OpenSSH format) a TypeError.
        if passphrase is None and isinstance(exc, (paramiko.PasswordRequiredException, TypeError)):
            raise TransportError(
                f"{where}: key_file {path} is encrypted: set ssh: passphrase", reason="auth"
            ) from None
        hint = " (wrong passphrase?)" if passphrase else ""
        raise TransportError(
            f"{where}: cannot load key_file {path}{hint}: {exc}", reason="auth"
        ) from None


def _prefer_key_types(transport: paramiko.Transport, known: list[_KnownKey]) -> None:
    """Asks for the key types we can check first, as ssh does, so a host with several host
    keys shows the one in known_hosts rather than one we would have to call unknown."""
    wanted: list[str] = []
    for k in known:
        for algorithm in _ALGORITHMS.get(k.key.get_name(), (k.key.get_name(),)):
            if algorithm not in wanted:
                wanted.append(algorithm)
    if not wanted:
        return
    options = transport.get_security_options()
    available = list(options.key_types)
    preferred = [a for a in wanted if a in available]
    if preferred:
        options.key_types = preferred + [a for a in available if a not in preferred]
