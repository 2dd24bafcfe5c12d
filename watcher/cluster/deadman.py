"""The dead man's switch: the cluster's leader calls a URL once per interval, so a site
whose watchers all died is noticed by whoever watches that URL (another site's watcher's
``/checkin/NAME``, a hosted heartbeat service).

One call per cluster per interval: the leader asks the database (``once``, fenced by its
lease) before each call, so a leader that changes mid-interval does not call twice.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from watcher.store.errors import StateWriteError

__all__ = ["DeadMansSwitch"]

log = logging.getLogger("watcher.cluster")

TIMEOUT = 10.0


class DeadMansSwitch:
    def __init__(self, node: Any, settings: Callable[[], Any]) -> None:
        self.node = node
        self.settings = settings  # the config's dead_mans_switch: (url, interval) or None
        self.pings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dead-mans-switch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT + 1)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.ping_if_due()
            except Exception:  # a broken URL must not stop the next interval's ping
                log.exception("dead man's switch failed")

    def ping_if_due(self) -> bool:
        switch = self.settings()
        if switch is None or not self.node.is_leader:
            return False
        try:
            if not self.node.tables.once("dead_mans_switch", switch.interval.total_seconds()):
                return False
        except StateWriteError:
            return False  # fenced or the database is away: no leader may speak for the cluster
        request = urllib.request.Request(
            switch.url,
            data=f"cluster leader {self.node.name}\n".encode(),
            headers={"Content-Type": "text/plain"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                response.read(1024)
        except OSError as exc:
            log.warning("dead man's switch: %s did not answer (%s)", _safe(switch.url), exc)
            return False
        self.pings += 1
        return True


def _safe(url: str) -> str:
    # a token in the URL's path or query is a secret: only its scheme and host are told
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
