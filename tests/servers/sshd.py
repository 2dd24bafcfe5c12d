"""Real OpenSSH servers on loopback, and a bastion pair whose inner host only the bastion reaches.

Each :class:`Sshd` runs ``/usr/sbin/sshd -D -f DIR/sshd_config -E DIR/sshd.log`` with its own
ed25519 host key and a free port on 127.0.0.1. Logins use a dedicated unprivileged user
(``watchertest``) with an almost empty shell rc, so an ``exec`` costs only the shell start-up
(root's rc may run pyenv, ~90 ms per command). Start-up takes ~0.05 s.

Bastion pair: the inner sshd runs in its own network namespace, linked to the host by a veth
pair in the 198.18.0.0/15 benchmark range. Policy routing rules (``ip rule ... uidrange``) let
only the test user's uid reach the inner address over TCP; every other TCP connect from the
host (the tests and watcher run as root) gets ENETUNREACH. The bastion sshd opens
``direct-tcpip`` channels in its session process, which runs as the test user, so the inner
host is reachable *only* through the bastion. If namespaces cannot be used (not root, no
``ip``), the inner sshd listens on 127.0.0.2 instead and ``BastionPair.isolated`` is False:
then a direct connection would also work, so tests must not rely on it failing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import itertools
import os
import pwd
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from .base import (
    LOOPBACK,
    ManagedProcess,
    ServerStartError,
    free_port,
    make_workdir,
    register_cleanup,
    require_binary,
    require_root,
    run,
    tail_file,
    unregister_cleanup,
    wait_for_port,
)

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
TEST_USER = "watchertest"
TEST_PASSWORD = "watcher-Test-pw-1"
KEY_PASSPHRASE = "watcher-key-passphrase"

# A light rc: sshd runs every exec through the login shell, which sources ~/.bashrc.
_LIGHT_RC = "# watcher test user: kept empty so that every ssh exec stays cheap\n"


# --------------------------------------------------------------------------- test user


@dataclass(frozen=True)
class TestUser:
    """The unprivileged login user the test sshds accept."""

    __test__ = False

    name: str
    password: str
    uid: int
    gid: int
    home: Path


_user_lock = threading.Lock()
_user_cache: dict[str, TestUser] = {}


def ensure_test_user(name: str = TEST_USER, password: str = TEST_PASSWORD) -> TestUser:
    """Create the login user if missing (useradd), set its password (chpasswd), light rc files.

    Idempotent; the user is left in place after the session (creating it again costs ~50 ms
    and a lingering unprivileged account with a known password on a CI box is harmless).
    """
    with _user_lock:
        if name in _user_cache:
            return _user_cache[name]
        require_root("creating the ssh test user")
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            run(
                [
                    "useradd",
                    "--create-home",
                    "--shell",
                    "/bin/bash",
                    "--comment",
                    "watcher test login",
                    name,
                ]
            )
            pw = pwd.getpwnam(name)
        run(["chpasswd"], input=f"{name}:{password}\n")
        home = Path(pw.pw_dir)
        home.mkdir(parents=True, exist_ok=True)
        for rc in (".bashrc", ".profile", ".bash_logout"):
            (home / rc).write_text(_LIGHT_RC)
            os.chown(home / rc, pw.pw_uid, pw.pw_gid)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        user = TestUser(name, password, pw.pw_uid, pw.pw_gid, home)
        _user_cache[name] = user
        return user


# --------------------------------------------------------------------------- client keys


@dataclass(frozen=True)
class ClientKeys:
    """Client key pairs (OpenSSH format, mode 0600) that every test sshd authorizes."""

    ed25519: Path
    ecdsa: Path
    rsa: Path
    ed25519_encrypted: Path
    passphrase: str = KEY_PASSPHRASE

    @property
    def private_keys(self) -> dict[str, Path]:
        return {
            "ed25519": self.ed25519,
            "ecdsa": self.ecdsa,
            "rsa": self.rsa,
            "ed25519_encrypted": self.ed25519_encrypted,
        }

    def public_lines(self) -> list[str]:
        """The ``.pub`` lines, for authorized_keys."""
        return [Path(f"{p}.pub").read_text().strip() for p in self.private_keys.values()]

    def pkey(self, kind: str = "ed25519") -> paramiko.PKey:
        """Load one as a paramiko key (the encrypted one with its passphrase)."""
        path = self.private_keys[kind]
        passphrase = self.passphrase.encode() if kind == "ed25519_encrypted" else None
        # cryptography wants bytes; positional, as paramiko 5 renamed the argument
        return paramiko.PKey.from_path(path, passphrase)


def make_client_keys(directory: Path) -> ClientKeys:
    """Generate ed25519, ecdsa (P-256), rsa (2048, fast to make) and a passphrase ed25519 key."""
    ssh_keygen = require_binary(SSH_KEYGEN)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specs = {
        "ed25519": (["-t", "ed25519"], ""),
        "ecdsa": (["-t", "ecdsa", "-b", "256"], ""),
        "rsa": (["-t", "rsa", "-b", "2048"], ""),
        "ed25519_encrypted": (["-t", "ed25519"], KEY_PASSPHRASE),
    }
    paths: dict[str, Path] = {}
    for kind, (args, passphrase) in specs.items():
        path = directory / f"id_{kind}"
        if not path.exists():
            run(
                [
                    ssh_keygen,
                    "-q",
                    *args,
                    "-N",
                    passphrase,
                    "-C",
                    f"watcher-test-{kind}",
                    "-f",
                    str(path),
                ]
            )
        path.chmod(0o600)  # OpenSSH clients refuse group/world-readable private keys
        paths[kind] = path
    return ClientKeys(**paths)


# --------------------------------------------------------------------------- host keys


def openssh_fingerprint(public_line: str) -> str:
    """``SHA256:...`` of an OpenSSH public key line, exactly as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_hosts_host(host: str, port: int) -> str:
    """The host field OpenSSH writes in known_hosts (brackets only for non-22 ports)."""
    return host if port == 22 else f"[{host}]:{port}"


# --------------------------------------------------------------------------- sshd


class Sshd:
    """One OpenSSH server with its own config, host key, port and log in ``workdir``.

    ``netns``: run inside that network namespace (``ip netns exec``); ``host`` is then the
    namespace's address. ``extra_config``: more sshd_config lines, which win over the
    defaults here (sshd keeps the *first* value of a keyword, so plain lines go first; from
    the first ``Match`` line on they go last, where Match blocks must be), e.g.
    ``["PasswordAuthentication no"]`` or ``["AllowTcpForwarding no"]``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        user: TestUser | None = None,
        client_keys: ClientKeys | None = None,
        extra_config: Sequence[str] = (),
        netns: str | None = None,
    ) -> None:
        require_binary(SSHD)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.netns = netns
        self.port = port if port is not None else free_port()
        self.test_user = user or ensure_test_user()
        self.client_keys = client_keys or make_client_keys(self.workdir / "client-keys")
        self.extra_config = list(extra_config)
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.pid_path = self.workdir / "sshd.pid"
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        self.authorized_keys_path = self._authorized_keys_location()
        self._process: ManagedProcess | None = None
        self._make_host_key()
        self._write_authorized_keys()

    # -- public attributes
    @property
    def user(self) -> str:
        return self.test_user.name

    @property
    def password(self) -> str:
        return self.test_user.password

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def host_public_key_line(self) -> str:
        """``ssh-ed25519 AAAA...`` (no comment)."""
        return " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])

    @property
    def host_key(self) -> paramiko.PKey:
        """The host public key as a paramiko key (compare with ``transport.get_remote_server_key()``)."""
        key_type, b64 = self.host_public_key_line.split()
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))

    @property
    def host_key_fingerprint(self) -> str:
        """``SHA256:...`` like OpenSSH prints it."""
        return openssh_fingerprint(self.host_public_key_line)

    def known_hosts_line(self) -> str:
        """``[127.0.0.1]:PORT ssh-ed25519 AAAA...``"""
        return f"{known_hosts_host(self.host, self.port)} {self.host_public_key_line}"

    def write_known_hosts(self, path: Path) -> Path:
        """Write a known_hosts file holding just this server; returns the path."""
        Path(path).write_text(self.known_hosts_line() + "\n")
        return Path(path)

    # -- set-up
    def _authorized_keys_location(self) -> Path:
        # sshd reads AuthorizedKeysFile as the login user, so every directory on the way
        # must be traversable by it; a 0700 pytest tmp dir is not, so fall back to a
        # world-traversable dir of our own.
        path = self.workdir.resolve()
        for parent in [path, *path.parents]:
            if not parent.stat().st_mode & 0o001:
                return make_workdir("sshd-keys") / "authorized_keys"
        return self.workdir / "authorized_keys"

    def _make_host_key(self) -> None:
        for p in (self.host_key_path, Path(f"{self.host_key_path}.pub")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        run(
            [
                require_binary(SSH_KEYGEN),
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "watcher-test-host",
                "-f",
                str(self.host_key_path),
            ]
        )

    def _write_authorized_keys(self) -> None:
        self.authorized_keys_path.write_text("\n".join(self.client_keys.public_lines()) + "\n")
        self.authorized_keys_path.chmod(0o644)

    def _write_config(self) -> None:
        match_at = next(
            (
                i
                for i, line in enumerate(self.extra_config)
                if line.strip().lower().startswith("match ")
            ),
            len(self.extra_config),
        )
        lines = [
            *self.extra_config[:match_at],
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin no",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding yes",
            "UseDNS no",
            "LogLevel VERBOSE",
            # Benchmarks open many connections at once; the default 10:30:100 drops them.
            "MaxStartups 200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            *self.extra_config[match_at:],
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- control
    def start(self, timeout: float = 10.0) -> Sshd:
        """Start (or restart after stop/kill) on the same port with the current host key."""
        if self.running():
            return self
        # Privilege separation needs this directory; it lives on /run (tmpfs), so a fresh
        # boot or container may not have it.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._write_config()
        run([SSHD, "-t", "-f", str(self.config_path)])  # config errors surface here, clearly
        argv = [SSHD, "-D", "-f", str(self.config_path), "-E", str(self.log_path)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]  # execs sshd: same pid
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._process = ManagedProcess(
            argv, self.workdir / "sshd.stdout.log", name=f"sshd:{self.port}"
        )
        self._process.start()
        if self.netns:
            self._wait_listening_in_log(log_offset, timeout)
        else:
            try:
                wait_for_port(
                    self.host, self.port, timeout, process=self._process, log_path=self.log_path
                )
            except ServerStartError:
                self._process.kill()
                raise
        return self

    def _wait_listening_in_log(self, offset: int, timeout: float) -> None:
        # The namespace address is unreachable for root on purpose, so we cannot probe it by
        # connecting; sshd logs this line once its socket is listening.
        needle = f"Server listening on {self.host} port {self.port}."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
                fh.seek(offset)
                if needle in fh.read().decode("utf-8", "replace"):
                    return
            if self._process is not None and not self._process.running():
                break
            time.sleep(0.01)
        assert self._process is not None
        self._process.kill()
        raise ServerStartError(
            f"sshd in netns {self.netns} not listening on {self.host}:{self.port}\n"
            f"--- {self.log_path} ---\n{tail_file(self.log_path)}\n{self._process.log_tail()}"
        )

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def stop(self) -> None:
        """SIGTERM sshd and its session processes (open connections drop)."""
        if self._process is not None:
            self._process.stop()

    def kill(self, sessions: bool = True) -> None:
        """SIGKILL, like a crash. ``sessions=False`` leaves established sessions alive,
        as killing only the listener would on a real host."""
        if self._process is not None:
            self._process.kill_tree = sessions
            try:
                self._process.kill()
            finally:
                self._process.kill_tree = True

    def restart(self) -> Sshd:
        self.stop()
        return self.start()

    def regenerate_host_key(self) -> str:
        """New host key (same path); restarts sshd if it was running. Returns the new fingerprint."""
        was_running = self.running()
        if was_running:
            self.stop()
        self._make_host_key()
        if was_running:
            self.start()
        return self.host_key_fingerprint

    # -- convenience for tests
    def client(
        self,
        *,
        key: str | None = "ed25519",
        password: bool = False,
        sock: object = None,
        timeout: float = 10.0,
    ) -> paramiko.SSHClient:
        """A connected paramiko SSHClient that verifies this server's host key strictly."""
        client = paramiko.SSHClient()
        client.get_host_keys().add(
            known_hosts_host(self.host, self.port), self.host_key.get_name(), self.host_key
        )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        kwargs: dict[str, object] = {
            "hostname": self.host,
            "port": self.port,
            "username": self.user,
            "timeout": timeout,
            "allow_agent": False,
            "look_for_keys": False,
            "sock": sock,
        }
        if password:
            kwargs["password"] = self.password
        else:
            kwargs["pkey"] = self.client_keys.pkey(key or "ed25519")
        client.connect(**kwargs)  # type: ignore[arg-type]
        return client

    def __repr__(self) -> str:
        return f"<Sshd {self.host}:{self.port} netns={self.netns} running={self.running()}>"


# --------------------------------------------------------------------------- namespace


_ns_counter = itertools.count(1)
_NS_PREFIX = "wt"
# Policy-routing priorities, below the main table's 32766.
_RULE_ALLOW_PREF = 9000
_RULE_DENY_PREF = 9001


class IsolatedNamespace:
    """A network namespace joined to the host by a /30 veth link in 198.18.0.0/15.

    Only ``allowed_uid`` may open TCP connections from the host to ``ns_ip``: the deny rule
    matches ``ipproto tcp`` so that reverse-path lookups (no protocol) and everything else
    keep working. Created and destroyed with ``ip``; registered for cleanup at session end.
    """

    def __init__(self, allowed_uid: int) -> None:
        n = next(_ns_counter)
        self.name = f"{_NS_PREFIX}{os.getpid()}n{n}"
        # Interface names are limited to 15 characters.
        self.host_if = f"wt{os.getpid() % 100000}h{n}"[:15]
        self.ns_if = f"wt{os.getpid() % 100000}i{n}"[:15]
        self.allowed_uid = allowed_uid
        self.host_ip = ""
        self.ns_ip = ""
        self._cleanup_handle: int | None = None
        self._rules: list[list[str]] = []

    @staticmethod
    def _pick_subnet() -> ipaddress.IPv4Network:
        listing = run(["ip", "-o", "-4", "addr", "show"]).stdout
        used = [ipaddress.ip_interface(a).network for a in re.findall(r"inet (\S+)", listing)]
        base = ipaddress.ip_network("198.18.0.0/15")
        for _ in range(100):
            offset = 4 * random.randrange(1, base.num_addresses // 4 - 1)
            net = ipaddress.ip_network((int(base.network_address) + offset, 30))
            if not any(net.overlaps(u) for u in used):
                return net
        raise RuntimeError("no free /30 in 198.18.0.0/15")

    def create(self) -> IsolatedNamespace:
        cleanup_stale_namespaces()
        net = self._pick_subnet()
        host_ip, ns_ip = (str(h) for h in net.hosts())
        self.host_ip, self.ns_ip = host_ip, ns_ip
        self._cleanup_handle = register_cleanup(self.destroy)
        run(["ip", "netns", "add", self.name])
        run(
            [
                "ip",
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                self.ns_if,
                "netns",
                self.name,
            ]
        )
        run(["ip", "addr", "add", f"{host_ip}/30", "dev", self.host_if])
        run(["ip", "link", "set", self.host_if, "up"])
        run(["ip", "-n", self.name, "addr", "add", f"{ns_ip}/30", "dev", self.ns_if])
        run(["ip", "-n", self.name, "link", "set", self.ns_if, "up"])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        uid = str(self.allowed_uid)
        self._rules = [
            [
                "pref",
                str(_RULE_ALLOW_PREF),
                "to",
                f"{ns_ip}/32",
                "uidrange",
                f"{uid}-{uid}",
                "lookup",
                "main",
            ],
            ["pref", str(_RULE_DENY_PREF), "to", f"{ns_ip}/32", "ipproto", "tcp", "unreachable"],
        ]
        for rule in self._rules:
            run(["ip", "rule", "add", *rule])
        return self

    def destroy(self) -> None:
        for rule in self._rules:
            run(["ip", "rule", "del", *rule], check=False)
        self._rules = []
        # Deleting the host end removes the pair; deleting the namespace kills nothing we
        # own (the sshd in it is stopped by its own cleanup, registered later = run earlier).
        run(["ip", "link", "del", self.host_if], check=False)
        run(["ip", "netns", "del", self.name], check=False)
        if self._cleanup_handle is not None:
            unregister_cleanup(self._cleanup_handle)
            self._cleanup_handle = None


def cleanup_stale_namespaces() -> None:
    """Remove namespaces (and their rules) left by an earlier, killed test session."""
    listing = run(["ip", "netns", "list"], check=False).stdout
    for match in re.finditer(rf"^{_NS_PREFIX}(\d+)n(\d+)\b", listing, re.M):
        pid = int(match.group(1))
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        name = match.group(0)
        addrs = run(["ip", "-n", name, "-o", "-4", "addr", "show"], check=False).stdout
        for ip in re.findall(r"inet (198\.1[89]\.\d+\.\d+)/30", addrs):
            for pref in (_RULE_ALLOW_PREF, _RULE_DENY_PREF):
                rules = run(["ip", "rule", "show", "pref", str(pref)], check=False).stdout
                for _ in range(rules.count(f"to {ip} ")):
                    run(["ip", "rule", "del", "pref", str(pref), "to", f"{ip}/32"], check=False)
        # Any process still in it would keep the veth alive; none of ours should be.
        pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
        for p in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(p), 9)
        run(["ip", "netns", "del", name], check=False)


def namespaces_available() -> bool:
    """True if we may create network namespaces here (root and a working ``ip netns``)."""
    if os.geteuid() != 0:
        return False
    try:
        subprocess.run(
            ["ip", "netns", "list"], check=True, capture_output=True, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


# --------------------------------------------------------------------------- bastion pair


class BastionPair:
    """A bastion sshd on 127.0.0.1 and an inner sshd reachable only through it.

    Unpacks as ``bastion, inner, inner_host, inner_port = pair``. ``isolated`` tells whether
    the inner host is really unreachable directly (network namespace) or merely on
    127.0.0.2 (fallback).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        client_keys: ClientKeys | None = None,
        user: TestUser | None = None,
        isolate: bool = True,
    ) -> None:
        workdir = Path(workdir)
        self.user = user or ensure_test_user()
        self.client_keys = client_keys or make_client_keys(workdir / "client-keys")
        self.bastion = Sshd(workdir / "bastion", user=self.user, client_keys=self.client_keys)
        self.namespace: IsolatedNamespace | None = None
        self.isolation_error = (
            "" if namespaces_available() else "network namespaces need root and ip(8)"
        )
        if isolate and not self.isolation_error:
            namespace = IsolatedNamespace(self.user.uid)
            try:
                self.namespace = namespace.create()
            except RuntimeError as exc:  # e.g. a container without CAP_NET_ADMIN
                namespace.destroy()
                self.isolation_error = str(exc).splitlines()[0]
        self.isolated = self.namespace is not None
        if self.namespace is not None:
            self.inner = Sshd(
                workdir / "inner",
                host=self.namespace.ns_ip,
                netns=self.namespace.name,
                user=self.user,
                client_keys=self.client_keys,
            )
        else:
            # Fallback: another loopback address. Reachable directly too, so tests must
            # check ``isolated`` before asserting that a direct connection fails.
            self.inner = Sshd(
                workdir / "inner", host="127.0.0.2", user=self.user, client_keys=self.client_keys
            )

    @property
    def inner_host(self) -> str:
        return self.inner.host

    @property
    def inner_port(self) -> int:
        return self.inner.port

    def __iter__(self) -> Iterator[object]:
        return iter((self.bastion, self.inner, self.inner_host, self.inner_port))

    def start(self) -> BastionPair:
        self.bastion.start()
        self.inner.start()
        return self

    def stop(self) -> None:
        self.inner.stop()
        self.bastion.stop()
        if self.namespace is not None:
            self.namespace.destroy()

    def inner_client(self, key: str = "ed25519") -> tuple[paramiko.SSHClient, paramiko.SSHClient]:
        """Connect to the inner host through the bastion (direct-tcpip); returns (bastion, inner)."""
        outer = self.bastion.client(key=key)
        transport = outer.get_transport()
        assert transport is not None
        channel = transport.open_channel(
            "direct-tcpip", (self.inner_host, self.inner_port), ("127.0.0.1", 0)
        )
        return outer, self.inner.client(key=key, sock=channel)
