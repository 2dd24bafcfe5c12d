"""A peer that never finishes: it sends ``head`` at once, then ``drip`` one byte at a time,
forever, and notes when each client closes its connection.

With ``drip=b""`` it says nothing at all after ``head`` (a TLS handshake that stalls, a
service that accepted and hangs). Whatever the client sends is read and dropped.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import threading
import time
from dataclasses import dataclass

from tests.servers.base import LOOPBACK

__all__ = ["TricklingPeer"]


@dataclass
class _Connection:
    opened: float
    closed: float | None = None


class TricklingPeer:
    def __init__(self, *, head: bytes = b"", drip: bytes = b"x", every: float = 0.1) -> None:
        self.head = head
        self.drip = drip
        self.every = every
        self.connections: list[_Connection] = []
        self._stop = threading.Event()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        accept = threading.Thread(target=self._accept, name="trickle-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://{self.address}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            record = _Connection(time.monotonic())
            with self._lock:
                self.connections.append(record)
                self._open.append(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn, record), name="trickle", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, record: _Connection) -> None:
        drops = itertools.cycle(self.drip) if self.drip else None
        try:
            if self.head:
                conn.sendall(self.head)
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], self.every)
                if readable and not conn.recv(65536):
                    break  # the client closed (or shut down) its side
                if drops is not None and not readable:
                    conn.sendall(bytes([next(drops)]))
        except OSError:
            pass  # reset by the client: closed too
        finally:
            if not self._stop.is_set():
                record.closed = time.monotonic()
            with contextlib.suppress(OSError):
                conn.close()

    def wait_all_closed(self, timeout: float = 10.0) -> bool:
        """True once at least one client came and every client closed its connection."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self.connections and all(c.closed is not None for c in self.connections):
                    return True
            time.sleep(0.05)
        return False

    def wait_connected(self, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.connections:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(2)

    def __enter__(self) -> TricklingPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
