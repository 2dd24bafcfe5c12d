"""Acknowledgement from the helpdesk: asks each ticketer, at its own ``poll_every``,
whether someone took an unacknowledged incident's ticket.

A ticket counts as taken when it has an owner, or when a person moved it out of
``new`` (to open, or straight to resolved). watcher itself only comments on its
tickets, so it never moves one out of ``new``. The acknowledgement goes through
``Engine.acknowledge(..., source="helpdesk")`` like one from the CLI or the HTTP API:
it stops repaging and meets the response SLA. Only incidents in state ``open`` are
asked about, so a quiet site costs no requests at all, and only once their ticket has
heard of their opening: until a reopening reaches it (or while it is held back), a
ticket still shows the resolution of the time before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from integrations.base import DeliveryError, Integration, TicketRef
from watcher.core.secret import redact
from watcher.store import Store

if TYPE_CHECKING:
    from watcher.app.pipeline import Engine

__all__ = ["HelpdeskPoller"]

log = logging.getLogger("watcher.acks")

WAKE_EVERY = 5.0


class HelpdeskPoller:
    """One thread; each ticket integration is asked at most once per its ``poll_every``."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        integrations: Mapping[str, Integration],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self._integrations: dict[str, Integration] = {}
        self._last: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leads: Callable[[], bool] = lambda: True
        self.replace(integrations)

    def replace(self, integrations: Mapping[str, Integration]) -> None:
        """Takes the integrations of a reloaded config (closing the old ones)."""
        polled = {
            name: i
            for name, i in integrations.items()
            if i.role == "tickets" and _poll_every(i) is not None
        }
        with self._lock:
            old, self._integrations = self._integrations, polled
        for integration in old.values():
            integration.close()

    @property
    def active(self) -> bool:
        return bool(self._integrations)

    def start(self) -> None:
        if not self.active or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="helpdesk-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.replace({})

    def _loop(self) -> None:
        while not self._stop.wait(WAKE_EVERY):
            if not self.leads():
                continue  # in a cluster, the leader polls for all
            try:
                self.poll()
            except Exception:  # a bug here must not end acknowledgement for good
                log.exception("helpdesk poll failed")

    def poll(self, *, force: bool = False) -> list[int]:
        """One round over the integrations that are due (all with ``force``); returns the
        ids of the incidents it acknowledged."""
        now = self.clock()
        acknowledged: list[int] = []
        with self._lock:
            due = []
            for name, integration in self._integrations.items():
                every = _poll_every(integration)
                last = self._last.get(name)
                if force or every is None or last is None or now - last >= every:
                    self._last[name] = now
                    due.append((name, integration))
        if not due:
            return acknowledged
        waiting = [
            i
            for i in self.engine.incidents()
            if i.state == "open" and i.ticketed and i.notified and i.id is not None
        ]
        for name, integration in due:
            for incident in waiting:
                assert incident.id is not None
                if incident.id in acknowledged:
                    continue
                stored = self.store.ticket(incident.id, name)
                if stored is None or self._reopening(incident.id, name):
                    continue  # the ticket has yet to hear of this opening: its status may be an earlier one's
                ref = TicketRef(*stored)
                try:
                    status = integration.status(ref)
                except DeliveryError as exc:
                    log.warning(
                        "%s: cannot read ticket %s, will ask again: %s",
                        name,
                        ref.id,
                        redact(str(exc)),
                    )
                    break  # the helpdesk is down or refusing: no point asking about the others now
                if status is None:
                    continue
                if status.taken or status.state in ("open", "resolved"):
                    what = (
                        f"took ticket {ref.id}"
                        if status.taken
                        else f"moved ticket {ref.id} to {status.state}"
                    )
                    by = status.owner or f"{name.split('/', 1)[-1]} user"
                    log.info("%s: %s %s: acknowledging incident %s", name, by, what, incident.id)
                    result = self.engine.acknowledge(incident.id, by=by, source="helpdesk")
                    if result is not None and result.state == "acknowledged":
                        acknowledged.append(incident.id)
        return acknowledged

    def _reopening(self, incident_id: int, name: str) -> bool:
        pending = self.store.outbox(incident_id=incident_id, states=["pending"])
        return any(r.integration == name and r.action == "reopen" for r in pending)


def _poll_every(integration: Integration) -> timedelta | None:
    every = getattr(integration.config, "poll_every", None)
    if not isinstance(every, timedelta) or every <= timedelta(0):
        return None
    return every
