"""A bounded pool of daemon worker threads.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits,
so one call stuck inside a library keeps ``watcher once`` (after it printed) or a
stopped daemon alive. These workers are daemon threads: a process that is done exits,
and ``shutdown`` waits for running calls at most as long as it is told.

``resize`` changes the bound while running (``workers: auto``); ``auto_workers`` says what
the bound should be from how many checks start a second and how long they take.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["DaemonPool", "auto_workers", "AUTO_MIN", "AUTO_MAX", "AUTO_HEADROOM"]

# The fixed default that ``auto`` replaced: auto never runs fewer, so it is never slower
# than before (run time is measured from a worker taking a check, so a pool too small for
# many fast checks would not see its own queue).
AUTO_MIN = 16
AUTO_MAX = 256
# Twice the mean concurrency: check times vary (a few timeouts among fast answers), and a
# pool sized to the mean exactly queues whenever a burst comes.
AUTO_HEADROOM = 2.0


def auto_workers(
    rate_per_s: float,
    mean_check_s: float,
    *,
    headroom: float = AUTO_HEADROOM,
    lowest: int = AUTO_MIN,
    highest: int = AUTO_MAX,
) -> int:
    """Workers for checks starting at ``rate_per_s`` that each take ``mean_check_s``:
    Little's law (checks running at once = rate x time each) with ``headroom``, bounded."""
    wanted = math.ceil(max(0.0, rate_per_s) * max(0.0, mean_check_s) * headroom)
    return max(lowest, min(highest, wanted))


_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool:
    """Runs submitted calls on up to ``workers`` daemon threads, started as needed."""

    def __init__(self, workers: int, *, name: str = "worker") -> None:
        self.workers = workers
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            self._queue.put((future, fn, args, kwargs))
            if self._idle == 0 and len(self._threads) < self.workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle = max(0, self._idle - 1)
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args, kwargs
            with self._lock:
                if len(self._threads) > self.workers:  # resized down: this one goes
                    self._threads.remove(threading.current_thread())
                    return
                self._idle += 1

    def resize(self, workers: int) -> None:
        """Sets the bound; threads beyond it end after their current call."""
        with self._lock:
            self.workers = workers
            # calls already queued get the new threads now, not at the next submit
            for _ in range(min(self._queue.qsize(), workers - len(self._threads))):
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None
    ) -> bool:
        """Takes no more calls; True if every worker ended (within ``timeout`` if waiting)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if not wait:
            return not any(t.is_alive() for t in threads)
        end = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in threads)
