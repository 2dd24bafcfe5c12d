"""One end time per check (or delivery) that no peer can stretch.

A socket timeout bounds each read, not the conversation: a peer that trickles one byte a
second keeps every read short and a check (or ``watcher once``, or a stopping daemon)
waiting forever. A ``Deadline`` is the monotonic moment the work must end. While one is
active in a thread (``with deadline:``), every socket that thread connects is watched:
the interpreter's ``socket.connect`` audit event names it, whichever library made it
(http.client, smtplib, imaplib, poplib, urllib3), and a duplicate of its descriptor is
kept. When the deadline passes, or ``cancel()`` is called (a stopping daemon), the
watchdog shuts those sockets down: a read blocked deep inside a library returns at once
and the peer sees its connection closed. Work that blocks on something else (a child
process, an SSH channel) registers a callback with ``on_expiry``.

Sockets that outlive the work (a pooled SSH connection shared by many checks) are made
inside ``unwatched()``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Deadline", "current", "unwatched", "within_current", "CUT_AFTER"]

# The watchdog cuts this long after the deadline, so code that sets its own timeouts from
# ``remaining()`` sees its TimeoutError first (and says so); the cut is the backstop.
CUT_AFTER = 0.25

_local = threading.local()


class Deadline:
    """The end of one piece of work; ``None`` seconds means no end but ``cancel()``."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = math.inf if seconds is None else time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._callbacks: list[Callable[[], None]] = []
        self._cut = False  # the watchdog or cancel() ended the work from outside
        self._finished = False

    def __repr__(self) -> str:
        return f"Deadline({self.seconds!r}, remaining={self.remaining():.3f}, cut={self._cut})"

    def remaining(self) -> float:
        """Seconds left (0 once passed or cut); ``inf`` for a deadline with no end."""
        if self._cut:
            return 0.0
        return max(0.0, self.end - time.monotonic())

    @property
    def passed(self) -> bool:
        return self._cut or time.monotonic() >= self.end

    @property
    def cut(self) -> bool:
        """True if the work was ended from outside: its sockets shut, its callbacks run."""
        return self._cut

    def timeout(self, limit: float | None = None) -> float:
        """A timeout for the next blocking call: what is left (at most ``limit``); raises
        ``TimeoutError`` once nothing is."""
        left = self.remaining()
        if left <= 0:
            raise TimeoutError("the deadline has passed")
        return left if limit is None else min(left, limit)

    # ------------------------------------------------------------------ watching

    def watch(self, sock: socket.socket) -> None:
        """Shuts ``sock`` down when the deadline passes. A duplicate descriptor is kept, so
        the socket may be wrapped in TLS (which detaches the original) or closed and its
        number reused by anyone: the watchdog only ever touches its own duplicate."""
        try:
            # Not ``sock.dup()``: a TLS socket refuses it, and a subclass may not rebuild.
            duplicate = socket.socket(
                sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno())
            )
        except OSError:
            return
        with self._lock:
            if not self._finished and not self._cut:
                self._sockets.append(duplicate)
                return
            cut = self._cut
        if cut:
            _shut(duplicate)
        duplicate.close()

    def on_expiry(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` (from the watchdog's thread) if the work is cut."""
        with self._lock:
            if not self._cut:
                self._callbacks.append(callback)
                return
        _quietly(callback)

    def cancel(self) -> None:
        """Ends the work now: shuts its sockets down and runs its callbacks."""
        with self._lock:
            if self._cut or self._finished:
                return
            self._cut = True
            for sock in self._sockets:
                _shut(sock)  # under the lock: ``__exit__`` may not close it meanwhile
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _quietly(callback)

    # ------------------------------------------------------------------ scope

    def __enter__(self) -> Deadline:
        _install_hook()
        _stack().append(self)
        if self.end != math.inf:
            _WATCHDOG.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        stack = _stack()
        if stack and stack[-1] is self:
            stack.pop()
        with self._lock:
            self._finished = True
            sockets, self._sockets = self._sockets, []
            self._callbacks = []
            for sock in sockets:
                sock.close()


def current() -> Deadline | None:
    """The deadline active in this thread, if any."""
    stack = _stack()
    return stack[-1] if stack else None


def within_current(timeout: float) -> float:
    """``timeout``, or less if the active deadline leaves less."""
    active = current()
    return timeout if active is None else min(timeout, active.remaining())


@contextlib.contextmanager
def unwatched() -> Iterator[None]:
    """Sockets connected inside are not tied to the active deadline (they outlive it)."""
    stack = _stack()
    saved = stack[:]
    stack.clear()
    try:
        yield
    finally:
        stack[:] = saved


def _stack() -> list[Deadline]:
    stack: list[Deadline] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _quietly(callback: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        callback()


# ---------------------------------------------------------------------- the audit hook

_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audited event in the process: the common case must cost nothing.
    if event != "socket.connect":
        return
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1].watch(args[0])


def _install_hook() -> None:
    global _hook_installed
    if _hook_installed:
        return
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # hooks cannot be removed: installed once, on first use
            _hook_installed = True


# ---------------------------------------------------------------------- the watchdog


class _Watchdog:
    """One daemon thread that cuts every deadline the moment it passes."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.end + CUT_AFTER, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is deadline:
                self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(wait)
                _, _, deadline = heapq.heappop(self._heap)
            deadline.cancel()  # a finished deadline ignores it


_WATCHDOG = _Watchdog()
