"""Shared plumbing for the real test servers: ports, readiness polling, process control.

Every server the suite starts goes through :class:`ManagedProcess` (or registers its own
cleanup with :func:`register_cleanup`), so :func:`cleanup_all` — run by the pytest plugin at
session end and by ``atexit`` as a last resort — can stop whatever a failing or interrupted
test left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"

# Set WATCHER_KEEP_SERVER_DIRS=1 to keep configs and logs of the servers for debugging.
KEEP_DIRS_ENV = "WATCHER_KEEP_SERVER_DIRS"


class ServerStartError(RuntimeError):
    """A server did not come up in time; the message carries the tail of its log."""


# --------------------------------------------------------------------------- cleanup registry

_cleanups: list[tuple[int, Callable[[], None]]] = []
_cleanup_lock = threading.Lock()
_cleanup_seq = 0


def register_cleanup(fn: Callable[[], None]) -> int:
    """Register ``fn`` to run at session end (LIFO); returns a handle for :func:`unregister_cleanup`."""
    global _cleanup_seq
    with _cleanup_lock:
        _cleanup_seq += 1
        _cleanups.append((_cleanup_seq, fn))
        return _cleanup_seq


def unregister_cleanup(handle: int) -> None:
    """Forget a cleanup registered earlier (the owner already cleaned up)."""
    with _cleanup_lock:
        _cleanups[:] = [(h, f) for h, f in _cleanups if h != handle]


def cleanup_all() -> list[str]:
    """Run every pending cleanup, newest first; returns the errors instead of raising."""
    errors: list[str] = []
    while True:
        with _cleanup_lock:
            if not _cleanups:
                break
            _, fn = _cleanups.pop()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on with the others
            errors.append(f"{getattr(fn, '__qualname__', fn)}: {exc!r}")
    return errors


atexit.register(cleanup_all)


def make_workdir(prefix: str) -> Path:
    """Create a world-traversable (0755) temp dir, removed at session end.

    pytest's tmp_path lives under a 0700 directory, but sshd reads authorized_keys and
    Postfix/Dovecot deliver and read mail as unprivileged users, so they need a path that
    other users can traverse. The name carries our pid (``.p<pid>.``) so that
    :func:`reap_stale_servers` can recognise what a killed session left behind.
    """
    path = Path(tempfile.mkdtemp(prefix=f"watcher-{prefix}.p{os.getpid()}.", dir="/tmp"))
    path.chmod(0o755)
    if os.environ.get(KEEP_DIRS_ENV) != "1":
        register_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


_STALE_DIR = re.compile(r"/tmp/watcher-[^/\s\x00]*?\.p(\d+)\.[^/\s\x00]+")


# Executables of the servers this package starts; nothing else is ever reaped.
_SERVER_EXES = {
    "sshd",
    "master",
    "dovecot",
    "perl",
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-blackbox-exporter",
    "ruby3.1",  # Redmine's WEBrick
    "postgres",
}


def reap_stale_servers() -> list[str]:
    """Stop servers, unmount tmpfs and remove dirs left by a test session that was killed.

    A process is reaped only if it is one of our server executables *and* its command line,
    working directory (Postfix's master runs in its queue dir) or ``RT_SITE_CONFIG`` points
    into a workdir whose session pid is dead. Returns what it did, for the log.
    """
    done: list[str] = []

    def stale(text: str) -> str | None:
        for m in _STALE_DIR.finditer(text):
            pid = int(m.group(1))
            if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                return m.group(0)
        return None

    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            exe = os.path.basename(os.readlink(f"/proc/{entry}/exe"))
            if exe not in _SERVER_EXES:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode("utf-8", "replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rt_config = next(
            (e.decode("utf-8", "replace") for e in environ if e.startswith(b"RT_SITE_CONFIG=")), ""
        )
        where = stale(cmdline) or stale(cwd + "/") or stale(rt_config)
        if where:
            terminate_pids([int(entry), *descendants(int(entry))], timeout=3)
            done.append(f"killed {entry} ({where})")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            mountpoint = line.split()[1]
            if stale(mountpoint):
                subprocess.run(
                    ["umount", "-l", mountpoint], capture_output=True, stdin=subprocess.DEVNULL
                )
                done.append(f"unmounted {mountpoint}")
    for path in Path("/tmp").glob("watcher-*.p*.*"):
        # Mounts inside were detached above, so rmtree only sees our own files. Dirs kept
        # on purpose for debugging stay while WATCHER_KEEP_SERVER_DIRS=1.
        if os.environ.get(KEEP_DIRS_ENV) != "1" and path.is_dir() and stale(str(path)) == str(path):
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
    return done


# --------------------------------------------------------------------------- ports / polling


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now (bind to port 0 and release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _fail_start(
    what: str, process: ManagedProcess | None, log_path: Path | None = None
) -> ServerStartError:
    """Build the start-up error, with the tail of the server's log so CI output explains it."""
    path = log_path or (process.log_path if process is not None else None)
    tail = tail_file(path) if path is not None else ""
    if tail:
        what += f"\n--- last lines of {path} ---\n{tail}"
    return ServerStartError(what)


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 15.0,
    *,
    process: ManagedProcess | None = None,
    log_path: Path | None = None,
) -> float:
    """Poll until host:port accepts TCP connections; return the seconds it took.

    Fails fast if ``process`` exits, and puts the server's log tail in the error.
    """
    start = time.monotonic()
    deadline = start + timeout
    delay = 0.01
    while True:
        if port_open(host, port):
            return time.monotonic() - start
        if process is not None and not process.running():
            raise _fail_start(
                f"{process.name} exited (code {process.returncode}) before {host}:{port} opened",
                process,
                log_path,
            )
        if time.monotonic() > deadline:
            raise _fail_start(
                f"{host}:{port} not accepting connections after {timeout}s", process, log_path
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def urlopen(
    url: str | urllib.request.Request,
    timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
):  # type: ignore[no-untyped-def]
    """urllib's urlopen without proxies: an http_proxy in CI's environment must never
    route our loopback requests elsewhere."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ssl_context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
    return urllib.request.build_opener(*handlers).open(url, timeout=timeout)


def wait_for_http(
    url: str,
    timeout: float = 15.0,
    *,
    process: ManagedProcess | None = None,
    expect_status: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    log_path: Path | None = None,
) -> int:
    """Poll ``url`` until it answers (any HTTP status, or ``expect_status``); return the status."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last = "no answer"
    while True:
        status: int | None = None
        try:
            with urlopen(url, timeout=2, ssl_context=ssl_context) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:  # a 4xx/5xx still proves the server is up
            status = exc.code
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        if status is not None:
            if expect_status is None or status == expect_status:
                return status
            last = f"HTTP {status}"
        if process is not None and not process.running():
            raise _fail_start(
                f"{process.name} exited (code {process.returncode}) before {url} answered", process
            )
        if time.monotonic() > deadline:
            raise _fail_start(f"{url} not ready after {timeout}s (last: {last})", process, log_path)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- binaries


def require_binary(path_or_name: str) -> str:
    """Return the binary's absolute path, or fail: a test that needs a real server never
    skips, in CI or not (``make test`` installs the packages; ``-m 'not slow'`` is how to
    leave the heaviest out locally)."""
    found = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if found and os.access(found, os.X_OK):
        return found
    pytest.fail(
        f"{path_or_name} missing; run make test (scripts/install-debian-deps.sh) to install it"
    )


def require_root(what: str) -> None:
    """Same policy as require_binary for things only root can do (useradd, mount, netns)."""
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (make test runs with sudo; CI runs as root)")


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short helper command; on failure raise with its output (not just the exit code)."""
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,  # CI has no stdin
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def tail_file(path: Path | str, lines: int = 40) -> str:
    """Last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """All live descendant pids of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def read_pidfile(path: Path) -> int | None:
    """The pid in a pidfile (first integer), or None if absent/empty."""
    try:
        text = path.read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None


def terminate_pids(pids: Sequence[int], timeout: float = 10.0) -> None:
    """SIGTERM the pids, wait up to ``timeout``, then SIGKILL the survivors."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        live = [p for p in pids if pid_alive(p)]
        if not live:
            return
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while any(pid_alive(p) for p in live) and time.monotonic() < deadline:
            time.sleep(0.02)


class ManagedProcess:
    """A server process with a log file, stoppable by its real pid.

    ``pidfile``: for daemons that fork (Postfix, Dovecot without -F), the pid that counts is
    the one the daemon writes there, not the Popen pid (which may be a wrapper or shim).
    ``kill_tree``: also stop the process's descendants (pre-fork workers, sshd session
    children) — collected before the signal, because once the parent dies they are
    reparented and can no longer be found.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        name: str | None = None,
        pidfile: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        kill_tree: bool = True,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.name = name or Path(self.argv[0]).name
        self.pidfile = pidfile
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.kill_tree = kill_tree
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None
        self._cleanup_handle: int | None = None
        self._last_pid: int | None = None

    # -- state
    @property
    def pid(self) -> int | None:
        """The server's real pid: from the pidfile if one is configured, else Popen's."""
        if self.pidfile is not None:
            pid = read_pidfile(self.pidfile)
            if pid is not None:
                self._last_pid = pid
                return pid
            return self._last_pid
        return self.popen.pid if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def running(self) -> bool:
        """True while the server process is alive."""
        if self.pidfile is not None:
            pid = self.pid
            if pid is not None:
                return pid_alive(pid)
            # Not written yet: the launcher is still starting the daemon.
            return self.popen is not None and self.popen.poll() is None
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail_file(self.log_path, lines)

    # -- control
    def start(self) -> ManagedProcess:
        """Launch the process (no-op if it is running)."""
        if self.popen is not None and self.running():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.pidfile is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()  # a stale pid must not be mistaken for the new daemon
            self._last_pid = None
        # Append: a restart keeps the earlier history in the same log.
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,  # CI has no stdin; never let a server wait on it
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                # Own session: a Ctrl-C at the terminal must not reach the servers before
                # the fixtures get to stop them in order.
                start_new_session=True,
            )
        if self._cleanup_handle is None:
            self._cleanup_handle = register_cleanup(self.stop)
        return self

    def _signal_targets(self) -> list[int]:
        pid = self.pid
        if pid is None or not pid_alive(pid):
            return []
        return [pid, *(descendants(pid) if self.kill_tree else [])]

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: stop_signal to the server (and its tree), SIGKILL after ``timeout``."""
        targets = self._signal_targets()
        if targets:
            main, rest = targets[0], targets[1:]
            with contextlib.suppress(ProcessLookupError):
                os.kill(main, self.stop_signal)
            deadline = time.monotonic() + timeout
            while pid_alive(main) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.02)
            terminate_pids([main, *rest], timeout=min(timeout, 5.0))
        self._reap(wait=True)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server (and its tree) at once, like a crash."""
        targets = self._signal_targets()
        for p in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in targets) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.01)
        self._reap(wait=True)
        self._forget()

    def _reap(self, wait: bool = False) -> None:
        if self.popen is None:
            return
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        else:
            self.popen.poll()

    def _forget(self) -> None:
        if self._cleanup_handle is not None:
            unregister_cleanup(self._cleanup_handle)
            self._cleanup_handle = None

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} running={self.running()}>"
