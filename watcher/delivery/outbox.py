"""Delivers queued ticket and page actions, once each, with backoff on transient errors.

One worker thread per integration, so a slow helpdesk never holds up the pager. Actions
for one incident reach one integration in the order they were queued (a comment never
overtakes the ticket it belongs to). Before opening a ticket the worker asks the
helpdesk for an open ticket with the incident's fingerprint and adopts it: a watcher
that died after the helpdesk created the ticket, but before it stored the id, does not
open a second one.

Each delivery is two-phase: the store commits an "attempting" mark before the call and
the outcome after it. No action is sent while its mark cannot be written, and an
outcome the state file cannot take is kept in memory (the action is not handed out
again) until it can: one process never sends an action twice. An action whose mark a
killed watcher left is sent once more, with the same delivery id, unless the helpdesk
can be searched (a ticket open adopts instead); a second interrupted attempt is not
repeated but marked failed, so a receiver that cannot be searched gets it at most twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from integrations.base import Integration, PermanentError, TicketContent, TicketRef, TransientError
from watcher.core.secret import redact
from watcher.schedule.deadline import Deadline
from watcher.store import OutboxRow, Outcome, StateWriteError, Store

if TYPE_CHECKING:
    from watcher.web.metrics import Metrics

__all__ = ["Dispatcher", "backoff"]

log = logging.getLogger("watcher.outbox")

MAX_BACKOFF = 600.0
MAX_RETRY_AFTER = 3600.0
# How long a search made ahead of an open ("no open ticket has this fingerprint") stands in
# for the search the open would make: as long as the shipped rules' longest hold. An open
# after a longer hold searches again.
SEARCH_AHEAD_FRESH = 900.0


def backoff(attempts: int, retry_after: float | None = None, *, base: float = 5.0) -> float:
    """Seconds to wait before attempt ``attempts + 1``: doubling, jittered, capped."""
    delay = min(MAX_BACKOFF, base * (2 ** max(0, attempts - 1)))
    delay *= random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


class Dispatcher:
    """Runs one delivery worker per configured integration."""

    def __init__(
        self,
        store: Store,
        integrations: Mapping[str, Integration],
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        base_delay: float = 5.0,
    ) -> None:
        self.store = store
        self.integrations = dict(integrations)
        self.metrics = metrics
        self.clock = clock
        self.base_delay = base_delay
        self._stop = threading.Event()
        self._wake: dict[str, threading.Event] = {
            name: threading.Event() for name in self.integrations
        }
        self._threads: list[threading.Thread] = []
        self._in_flight: dict[str, Deadline] = {}  # per worker: cut by a stop that cannot wait
        self._search_ahead: dict[str, list[str]] = {name: [] for name in self.integrations}
        self._none_found: dict[tuple[str, str], float] = {}
        self._search_lock = threading.Lock()

    def start(self) -> None:
        for name in self.integrations:
            thread = threading.Thread(
                target=self._work, args=(name,), name=f"outbox-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self, name: str | None = None) -> None:
        for key, event in self._wake.items():
            if name is None or key == name:
                event.set()

    def search_ahead(self, fingerprint: str) -> None:
        """Asks each helpdesk, in its worker and when it is idle, for an open ticket with
        ``fingerprint`` while a rule's hold runs, so that the open when the hold is met
        needs no search first: one helpdesk round trip less (about 0.3 s on Request
        Tracker) between the hold and the ticket. Only "none found" is kept, used once, and
        only by this process: after a crash or a failed attempt the open searches again."""
        now = time.monotonic()
        for name, integration in self.integrations.items():
            if integration.role != "tickets":
                continue
            with self._search_lock:
                searched = self._none_found.get((name, fingerprint))
                if (
                    searched is not None and now - searched < SEARCH_AHEAD_FRESH
                ) or fingerprint in self._search_ahead[name]:
                    continue
                self._search_ahead[name].append(fingerprint)
            self._wake[name].set()

    def _searched_ahead(self, name: str, fingerprint: str) -> bool:
        """True if a search ahead found no ticket with ``fingerprint`` recently; forgets it."""
        with self._search_lock:
            searched = self._none_found.pop((name, fingerprint), None)
        return searched is not None and time.monotonic() - searched < SEARCH_AHEAD_FRESH

    def _run_searches_ahead(self, name: str) -> bool:
        with self._search_lock:
            fingerprints, self._search_ahead[name] = self._search_ahead[name], []
            now = time.monotonic()
            for key in [k for k, at in self._none_found.items() if now - at >= SEARCH_AHEAD_FRESH]:
                del self._none_found[key]
        for fingerprint in fingerprints:
            if self._stop.is_set():
                break
            try:
                found = self.integrations[name].find(fingerprint)
            except Exception as exc:  # the open will search for itself
                log.debug("%s: search ahead for %s failed: %s", name, fingerprint, redact(str(exc)))
                continue
            if found is None:
                with self._search_lock:
                    self._none_found[(name, fingerprint)] = time.monotonic()
        return bool(fingerprints)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops within ``timeout``: deliveries in flight get half of it to finish, then
        their connections are shut down. An action cut that way was not delivered (or its
        answer was lost) and stays in the outbox for the next start."""
        self._stop.set()
        self.wake()
        end = time.monotonic() + timeout
        finish_by = time.monotonic() + timeout / 2
        for thread in self._threads:
            thread.join(max(0.0, finish_by - time.monotonic()))
        for scope in list(self._in_flight.values()):
            scope.cancel()
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("a delivery did not end within %.1fs of the stop; left behind", timeout)
        for integration in self.integrations.values():
            integration.close()
        self.store.flush_outcomes()

    def drain(self, timeout: float = 30.0) -> bool:
        """Delivers whatever is due now, in the calling thread; True if nothing due remains."""
        deadline = self.clock() + timedelta(seconds=timeout)
        while self.clock() < deadline:
            self.store.flush_outcomes()
            rows = [
                r
                for r in self.store.due_actions(self.clock(), limit=100)
                if r.integration in self.integrations
            ]
            if not rows:
                return self.store.unrecorded == 0
            for row in rows:
                self.deliver(row)
            if not self.store.writable:
                return False  # nothing more can be marked or recorded
        return False

    def _work(self, name: str) -> None:
        event = self._wake[name]
        while not self._stop.is_set():
            event.clear()
            try:
                self.store.flush_outcomes()
                rows = self.store.due_actions(self.clock(), limit=200, integration=name)
                for row in rows:
                    if self._stop.is_set():
                        return
                    self._deliver_cuttable(name, row)
                writable = self.store.writable
                if (rows and writable) or self._run_searches_ahead(name):
                    continue
                wait = 5.0
                next_due = self.store.next_due(name)
                if next_due is not None and writable:
                    wait = min(wait, max(0.05, next_due - self.clock().timestamp()))
            except StateWriteError:
                wait = 5.0  # the store reports a state it cannot reach, once a minute
            except (
                Exception
            ):  # a dead worker would stop this integration's deliveries until a restart
                log.exception("%s: delivery worker error, trying again", name)
                wait = 5.0
            event.wait(wait)

    def _deliver_cuttable(self, name: str, row: OutboxRow) -> None:
        scope = self._in_flight[name] = Deadline(None)
        try:
            with scope:
                if not self._stop.is_set():  # a stop that came in between cuts nothing
                    self.deliver(row)
        finally:
            del self._in_flight[name]

    # ------------------------------------------------------------------ delivery

    def deliver(self, row: OutboxRow) -> bool:
        """Delivers one action; True if done. Never raises."""
        now = self.clock()
        integration = self.integrations.get(row.integration)
        if integration is None:
            self.store.record(
                Outcome(
                    row.id,
                    "failed",
                    now,
                    error=f"integration {row.integration!r} is no longer configured",
                )
            )
            return False
        if row.attempt_started is not None and not self._may_repeat(integration, row):
            log.error(
                "%s %s for incident %s: watcher was stopped twice while sending it; not sent"
                " a third time (the receiver may have it, delivery id %d)",
                row.integration,
                row.action,
                row.incident_id,
                row.id,
            )
            self.store.record(
                Outcome(
                    row.id,
                    "failed",
                    now,
                    error=f"watcher was stopped twice while sending it; not sent again,"
                    f" the receiver may have it (delivery id {row.id})",
                )
            )
            return False
        if not self.store.mark_attempting(row.id, now):
            return False  # the state file cannot take the mark: nothing is sent (it says why)
        if row.attempt_started is not None:
            log.warning(
                "%s %s for incident %s was being sent when watcher stopped; %s",
                row.integration,
                row.action,
                row.incident_id,
                "searching the helpdesk before opening"
                if row.action == "open" and integration.searchable
                else f"sending it once more with the same delivery id {row.id}",
            )
        try:
            content = replace(
                TicketContent.from_dict(row.payload), delivery_id=row.id, action=row.action
            )
            ticket = None
            if row.role == "tickets":
                ticket = self._ticket(integration, row, content)
            else:
                self._page(integration, row, content)
        except TransientError as exc:
            delay = backoff(row.attempts + 1, exc.retry_after, base=self.base_delay)
            message = redact(str(exc))
            log.warning(
                "%s %s for incident %s failed (attempt %d), retrying in %.0fs: %s",
                row.integration,
                row.action,
                row.incident_id,
                row.attempts + 1,
                delay,
                message,
            )
            self.metrics.outbox_failures.labels(row.integration, "transient").inc()
            self.store.record(
                Outcome(row.id, "pending", now, error=message, due=now + timedelta(seconds=delay))
            )
            return False
        except PermanentError as exc:
            message = redact(str(exc))
            log.error(
                "%s %s for incident %s failed permanently, not retrying: %s",
                row.integration,
                row.action,
                row.incident_id,
                message,
            )
            self.metrics.outbox_failures.labels(row.integration, "permanent").inc()
            self.store.record(Outcome(row.id, "failed", now, error=message))
            return False
        except Exception as exc:  # a bug in an integration: keep the action, retry later
            log.exception(
                "%s %s for incident %s raised", row.integration, row.action, row.incident_id
            )
            delay = backoff(row.attempts + 1, base=self.base_delay)
            self.metrics.outbox_failures.labels(row.integration, "bug").inc()
            self.store.record(
                Outcome(
                    row.id,
                    "pending",
                    now,
                    error=redact(f"{type(exc).__name__}: {exc}"),
                    due=now + timedelta(seconds=delay),
                )
            )
            return False
        recorded = self.store.record(
            Outcome(
                row.id,
                "done",
                self.clock(),
                ticket=(row.incident_id, row.integration, ticket.id, ticket.url)
                if ticket is not None
                else None,
            )
        )
        self.metrics.deliveries.labels(row.integration, row.action).inc()
        log.info(
            "%s %s for incident %s delivered%s",
            row.integration,
            row.action,
            row.incident_id,
            "" if recorded else " (recorded when the state file takes writes again)",
        )
        return True

    @staticmethod
    def _may_repeat(integration: Integration, row: OutboxRow) -> bool:
        """Whether an action a stopped watcher left mid-attempt may be sent again: a ticket
        open where the helpdesk is searched first, or any action repeated no time yet."""
        if row.role == "tickets" and row.action == "open" and integration.searchable:
            return True
        return row.interrupted < 1

    def _ticket(
        self, integration: Integration, row: OutboxRow, content: TicketContent
    ) -> TicketRef | None:
        """Carries out a ticket action; the ticket to record with its outcome, if any."""
        stored = self.store.ticket(row.incident_id, row.integration)
        ref = TicketRef(*stored) if stored else None
        if row.action == "open":
            if ref is not None:
                return None  # delivered before a crash, recorded, then redelivered: nothing to do
            found = (
                None
                if self._searched_ahead(row.integration, content.fingerprint)
                else integration.find(content.fingerprint)
            )
            if found is not None:
                self.metrics.tickets_adopted.labels(row.integration).inc()
                log.info(
                    "%s: adopted existing ticket %s for incident %s",
                    row.integration,
                    found.id,
                    row.incident_id,
                )
                return found
            created = integration.open(content)
            self.metrics.tickets_opened.labels(row.integration).inc()
            return created
        found = None
        if ref is None:
            ref = found = integration.find(content.fingerprint)
            if ref is None and not self._open_queued(row):
                # The incident was ticketed before this helpdesk was configured: it has no
                # ticket to update there, which is no failure.
                log.info(
                    "%s: incident %s has no ticket here to %s",
                    row.integration,
                    row.incident_id,
                    row.action,
                )
                return None
            if ref is None:
                raise PermanentError(
                    f"no {row.integration} ticket is known for incident {row.incident_id}"
                )
        method = {
            "comment": integration.comment,
            "priority": integration.set_priority,
            "resolve": integration.resolve,
            "reopen": integration.reopen,
        }.get(row.action)
        if method is None:
            raise PermanentError(f"unknown ticket action {row.action!r}")
        method(ref, content)
        return found

    def _open_queued(self, row: OutboxRow) -> bool:
        return any(
            r.integration == row.integration and r.action == "open"
            for r in self.store.outbox(incident_id=row.incident_id)
        )

    def _page(self, integration: Integration, row: OutboxRow, content: TicketContent) -> None:
        if row.action == "page":
            integration.page(content)
            self.metrics.pages_sent.labels(row.integration).inc()
        elif row.action == "page_ack":
            integration.page_acknowledge(content)
        elif row.action == "page_resolve":
            integration.page_resolve(content)
        elif row.action == "escalate":
            integration.page(content)
        else:
            raise PermanentError(f"unknown page action {row.action!r}")
