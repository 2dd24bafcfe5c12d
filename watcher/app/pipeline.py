"""The engine: results in, incidents tracked, outbox filled, all in one transaction.

The engine owns the working set of incidents (the newest per fingerprint that can still
change) and is the only writer of incidents. Everything it does to an incident goes
through the pure functions in ``watcher.engine.tracker``; this module only feeds them and
persists what they return.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime

from probes.base import Result
from watcher.config.models import Config, Target
from watcher.delivery.escalation import ESCALATION_ROUTE
from watcher.delivery.render import ticket_content
from watcher.engine import tracker
from watcher.engine.incident import Action, Incident, fingerprint_of
from watcher.engine.outage import OUTAGE_PROBE
from watcher.engine.suppression import Suppressor
from watcher.engine.tracker import Policy, Step
from watcher.store import StateWriteError, Store, Tx

__all__ = ["Engine", "utcnow"]

log = logging.getLogger("watcher.engine")

# Why notifications of an incident may be held (watcher/engine/suppression.py): each is always
# exported, 0 or not, so a dashboard's series do not come and go.
HELD_REASONS = ("maintenance", "parent", "outage", "grouping")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_enqueue: Callable[[str], None] | None = None,
        on_hold: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_enqueue = on_enqueue or (lambda _name: None)
        # Told the fingerprint of each new pending incident whose hold may end in a ticket
        # (the outbox searches the helpdesk for it meanwhile).
        self.on_hold = on_hold or (lambda _fingerprint: None)
        self._lock = threading.RLock()
        self._to_wake: set[str] = set()
        self._holding: set[str] = set()
        self._tickers: list[Callable[[datetime], Sequence[Result]]] = []
        # targets and checks known from what was pushed (alerts), not from the config
        self._pushed_targets: dict[str, Target] = {}
        self._pushed_checks: set[tuple[str, str]] = set()
        self._latest: dict[tuple[str, str, str], Result] = {r.key: r for r in store.latest()}
        # dependencies, outages, maintenance windows: who is held back (watcher/engine/suppression.py)
        self.suppressor = Suppressor(store)
        self.configure(config)
        self._incidents: dict[str, Incident] = store.working_set(self.policy.reopen_within, clock())
        self.suppressor.seed(self._latest.values(), self._incidents.values())
        # In a cluster (watcher/cluster) this member changes only the incidents of the
        # targets it runs, and the outage incidents only if it leads.
        self.owns: Callable[[str], bool] = lambda _target: True
        self.owns_outages: Callable[[], bool] = lambda: True
        self.pin: Callable[[], AbstractContextManager[None]] = nullcontext

    def reload(self, *, others_only: bool = False) -> None:
        """Reads incidents and latest results again from the state, which other cluster
        members write too: all of them after the share moved, else only those of the
        targets this member does not run (its own are newest here)."""
        with self._lock:
            fresh = self.store.working_set(self.policy.reopen_within, self.clock())
            latest = {r.key: r for r in self.store.latest() if (r.target, r.probe) in self.checks}
            if others_only:
                fresh.update({f: i for f, i in self._incidents.items() if self._mine(i)})
                latest.update({k: r for k, r in self._latest.items() if self.owns(r.target)})
            self._incidents = fresh
            self._latest = latest
            self.suppressor.seed(self._latest.values(), self._incidents.values())

    def _mine(self, incident: Incident) -> bool:
        if incident.probe == OUTAGE_PROBE:
            return self.owns_outages()
        return self.owns(incident.target)

    def configure(self, config: Config) -> None:
        """Takes a new config (also on reload); incidents and history carry over."""
        with self._lock:
            self.config = config
            m = config.model
            self.policy = Policy(
                rules=config.rules,
                calendar=config.calendar,
                resolve_after=m.defaults.resolve_after,
                reopen_within=m.defaults.reopen_within,
                comment_every=m.defaults.comment_every,
                escalation_chain=tuple(
                    f"{c.name} ({c.role})" if c.name and c.role else c.label
                    for c in m.contacts.escalation
                ),
                flapping=m.flapping.settings(),
                flapping_by_target={t.name: t.flapping.settings() for t in m.targets if t.flapping},
            )
            self.suppressor.configure(config)
            self.targets = {**self._pushed_targets, **config.targets}
            self.routes: dict[str, list[str]] = {"tickets": [], "paging": [], "escalation": []}
            for role, kind, cfg in m.integrations.entries():
                self.routes[role].append(f"{role}/{cfg.name or kind}")
            if any(c.email for c in m.contacts.escalation):
                self.routes["escalation"].append(ESCALATION_ROUTE)
            base = f"http://{m.listen}" if m.listen else None
            self.status_url = base + "/" if base else None
            self.checks = {(t.name, s.id) for t in m.targets for s in t.probe_specs()}
            self.checks |= {(c.result_target, c.name) for c in m.checkins}
            self.checks |= self._pushed_checks
            self._latest = {k: v for k, v in self._latest.items() if (k[0], k[1]) in self.checks}

    # -------------------------------------------------------------------- results

    def process(self, results: Sequence[Result]) -> list[Step]:
        """Records a batch of results and applies them to incidents, atomically."""
        steps: list[Step] = []
        if not results:
            return steps
        with self._lock, self.pin():
            # In a cluster: only the results of this member's share, decided and written
            # under the one lease that share was computed from.
            results = [r for r in results if self.owns(r.target)]
            if results:
                steps = self._process(results)
        return steps

    def _process(self, results: Sequence[Result]) -> list[Step]:
        steps: list[Step] = []
        with self._write() as db:
            self.store.save_results(db, results)
            steps.extend(self._answered_per_item(db, results))
            now = self.clock()
            gate = self.suppressor
            gate.saw(results)
            gate.begin(now)
            grouping: list[str] = []
            for result in gate.order(results):
                target = self.targets.get(result.target)
                if target is None or (result.target, result.probe) not in self.checks:
                    continue  # a late result of a check a reload removed
                self._latest[result.key] = result
                evaluations = self.config.rules.evaluate(result, target.labels, target.host)
                groups: dict[str, list] = {}
                for evaluation in evaluations:
                    groups.setdefault(evaluation.group, []).append(evaluation)
                for group, group_evaluations in groups.items():
                    fingerprint = fingerprint_of(self.config.site, result.target, group)
                    incident = self._incidents.get(fingerprint)
                    # why it would be held back: asked only where there is something to hold
                    held = incident is not None or any(e.value is True for e in group_evaluations)
                    step = tracker.observe(
                        incident,
                        result,
                        group_evaluations,
                        self.policy,
                        result.at,
                        host=target.host,
                        labels=target.labels,
                        runbook=target.runbook,
                        quiet=gate.quiet(
                            result.target, incident, self._incidents, now, settling=True
                        )
                        if held
                        else None,
                    )
                    self._apply(db, step, result.at)
                    steps.append(step)
                    if step.incident is not None and step.incident.suppressed == "grouping":
                        grouping.append(fingerprint)
            if self.owns_outages():  # in a cluster the leader groups outages
                steps.extend(self._settle_outages(db, grouping, now))
        return steps

    def _answered_per_item(self, db: Tx, results: Sequence[Result]) -> list[Step]:
        """Clears what a check left when it failed as a whole with one unlabelled error
        (as a check whose items are found at run time does) once it answers per item
        again: no later result has that key, so nothing else would ever replace the error
        or clear its incidents. Pending ones are dropped, open ones resolved."""
        whole = {(r.target, r.probe) for r in results if not r.item}
        answered: dict[tuple[str, str], Result] = {}
        for r in results:
            if r.item and (r.target, r.probe) not in whole:
                answered.setdefault((r.target, r.probe), r)
        if not answered:
            return []
        stale = [(t, p, "") for t, p in answered if (t, p, "") in self._latest]
        if stale:
            self.store.forget_latest(db, stale)
            for key in stale:
                del self._latest[key]
                self.suppressor.forget(*key)
        steps = []
        for incident in list(self._incidents.values()):
            first = answered.get((incident.target, incident.probe))
            if first is None or incident.item or incident.state == "resolved":
                continue
            note = f"{incident.probe} answers per item again ({first.item}: {first.message})"
            step = tracker.resolve_by_hand(incident, self.policy, first.at, by="watcher", note=note)
            self._apply(db, step, first.at)
            steps.append(step)
        return steps

    def _settle_outages(self, db: Tx, grouping: Sequence[str], now: datetime) -> list[Step]:
        """After a batch: the outages assessed from what it opened, then the members it
        held back for that linked to their outage, or released to notify on their own."""
        gate = self.suppressor
        steps = gate.outage_steps(self._incidents, self.policy, now)
        for step in steps:
            self._apply(db, step, now)
        for fingerprint in dict.fromkeys(grouping):
            incident = self._incidents.get(fingerprint)
            if incident is None or incident.suppressed != "grouping":
                continue
            step = tracker.review(
                incident,
                self.policy,
                now,
                gate.quiet(incident.target, incident, self._incidents, now),
            )
            self._apply(db, step, now)
            steps.append(step)
        return steps

    def latest(self) -> list[Result]:
        return list(self._latest.values())

    def admit(self, target: Target, probe: str) -> None:
        """Accepts results of ``probe`` on ``target`` though the config lists neither:
        alerts pushed by Alertmanager name their targets themselves. A configured target
        of the same name keeps its own settings; a reload keeps what was admitted."""
        with self._lock:
            if (target.name, probe) in self.checks:
                return
            self._pushed_checks.add((target.name, probe))
            self.checks.add((target.name, probe))
            if target.name not in self.targets:
                self._pushed_targets[target.name] = target
                self.targets[target.name] = target

    # ----------------------------------------------------------------- time passes

    def add_ticker(self, ticker: Callable[[datetime], Sequence[Result]]) -> None:
        """Adds something whose results come from time passing, not from a probe run
        (a pushed heartbeat that goes late); ``tick()`` asks it with the engine's clock."""
        self._tickers.append(ticker)

    def tick(self) -> list[Step]:
        """Deadline breaches, deferred pages and whatever else waits on the clock."""
        now = self.clock()
        due: list[Result] = []
        for ticker in list(self._tickers):
            try:
                due.extend(ticker(now))
            except StateWriteError:
                pass  # the store reports it (or a cluster member's fence refused it)
            except Exception:  # one broken source must not stop deadlines and pages
                log.exception("ticker %r failed", ticker)
        steps = self.process(due)
        with self._lock, self.pin():
            self._forget_settled(now)
            gate = self.suppressor
            gate.begin(now)
            outage_steps = (
                gate.outage_steps(self._incidents, self.policy, now) if self.owns_outages() else []
            )
            unresolved = [
                i for i in self._incidents.values() if i.state != "resolved" and self._mine(i)
            ]
            if not unresolved and not outage_steps:
                return steps
            with self._write() as db:
                for step in outage_steps:
                    self._apply(db, step, now)
                    steps.append(step)
                for incident in unresolved:
                    if (
                        incident.target,
                        incident.probe,
                    ) not in self.checks and incident.probe != OUTAGE_PROBE:
                        # No result will ever come to resolve it, and it would page on.
                        note = "its check is no longer in the config"
                        step = tracker.resolve_by_hand(
                            incident, self.policy, now, by="watcher", note=note
                        )
                    elif incident.active:
                        quiet = gate.quiet(incident.target, incident, self._incidents, now)
                        step = tracker.tick(incident, self.policy, now, quiet)
                    else:
                        continue
                    self._apply(db, step, now)
                    steps.append(step)
        return steps

    def _forget_settled(self, now: datetime) -> None:
        """Drops incidents resolved too long ago to reopen, as a restart would not load
        them either (the state file keeps them): the working set stays as large as what
        can still change, however long the watcher runs."""
        settled = now - self.policy.reopen_within
        for fingerprint, incident in list(self._incidents.items()):
            if (
                incident.state == "resolved"
                and incident.resolved_at is not None
                and incident.resolved_at < settled
            ):
                del self._incidents[fingerprint]

    # ---------------------------------------------------------- people's requests

    def acknowledge(self, incident_id: int, *, by: str, source: str) -> Incident | None:
        return self._by_hand(
            incident_id,
            lambda inc, now: tracker.acknowledge(inc, self.policy, now, by=by, source=source),
            ("ack", by, ""),
        )

    def resolve(self, incident_id: int, *, by: str, note: str = "") -> Incident | None:
        return self._by_hand(
            incident_id,
            lambda inc, now: tracker.resolve_by_hand(inc, self.policy, now, by=by, note=note),
            ("resolve", by, note),
        )

    def mine(self, incident: Incident) -> bool:
        """True if this process decides for the incident (always, outside a cluster)."""
        return self._mine(incident)

    def _by_hand(
        self,
        incident_id: int,
        change: Callable[[Incident, datetime], Step],
        request: tuple[str, str, str],
    ) -> Incident | None:
        now = self.clock()
        with self._lock, self.pin():
            incident = next((i for i in self._incidents.values() if i.id == incident_id), None)
            if incident is None:
                stored = self.store.incident(incident_id)
                if stored is None:
                    return None
                incident = stored
            if not self._mine(incident):
                # Another cluster member decides for it: queued for that member, which
                # applies it within a second, as it does what the CLI queues.
                kind, by, note = request
                self.store.request(kind, incident_id, by, note, now)
                return incident
            step = change(incident, now)
            with self._write() as db:
                self._apply(db, step, now)
            return step.incident

    def incident_counts(self) -> dict[str, int]:
        with self._lock:
            tally = Tally(i.priority for i in self._incidents.values() if i.active and i.priority)
        return {p: tally.get(p, 0) for p in sorted(self.config.rules.priorities)}

    def held_counts(self) -> dict[str, int]:
        """Active incidents whose notifications are held, by why (maintenance, parent,
        outage, grouping), and those flapping: what /metrics shows of the quiet."""
        counts = dict.fromkeys((*HELD_REASONS, "flapping"), 0)
        with self._lock:
            for incident in self._incidents.values():
                if not incident.active:
                    continue
                if incident.suppressed:
                    counts[incident.suppressed] = counts.get(incident.suppressed, 0) + 1
                if incident.flapping:
                    counts["flapping"] += 1
        return counts

    def incidents(self) -> list[Incident]:
        with self._lock:
            return sorted(self._incidents.values(), key=lambda i: i.id or 0)

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        """A transaction after whose commit the dispatchers of new actions are woken."""
        kept = dict(self._incidents)  # steps replace incidents, never change them in place
        try:
            with self.store.transaction() as db:
                yield db
        except BaseException:
            # The state file rolled back, so must the working set: else it keeps incidents
            # (and ids) the file never got, told as if their actions had been queued.
            self._incidents = kept
            self._to_wake.clear()
            self._holding.clear()
            raise
        names, self._to_wake = self._to_wake, set()
        for name in names:
            self.on_enqueue(name)
        holding, self._holding = self._holding, set()
        for fingerprint in holding:
            self.on_hold(fingerprint)

    def _apply(self, db: Tx, step: Step, now: datetime) -> None:
        incident = step.incident
        if incident is None or not step.changed:
            return
        if step.dropped:
            if incident.id is not None:
                self.store.delete_incident(db, incident.id)
            self._incidents.pop(incident.fingerprint, None)
            return
        self.store.save_incident(db, incident, now)
        self._incidents[incident.fingerprint] = incident
        if step.created and incident.state == "pending" and self._may_ticket(incident):
            self._holding.add(incident.fingerprint)
        assert incident.id is not None
        self.store.add_events(db, incident.id, step.events)
        for event in step.events:
            log.info(
                "incident %s %s [%s] %s: %s",
                incident.id,
                event.kind,
                incident.priority,
                incident.target,
                event.message,
            )
        for action in step.actions:
            self._enqueue(db, incident, action, now)

    def _may_ticket(self, incident: Incident) -> bool:
        if not self.routes["tickets"]:
            return False
        rules = {r.name: r for r in self.config.rules.rules if r.name in incident.holds}
        priorities = self.config.rules.priorities
        return any(
            r.priority in priorities and priorities[r.priority].ticket for r in rules.values()
        )

    def _enqueue(self, db: Tx, incident: Incident, action: Action, now: datetime) -> None:
        names = self.routes[action.role]
        if not names:
            return
        assert incident.id is not None
        target_results = [r for r in self._latest.values() if r.target == incident.target]
        content = ticket_content(
            incident,
            policies=self.config.rules.priorities,
            calendar=self.policy.calendar,
            events=self.store.events(incident.id, limit=30),
            recent=self.store.recent_results(
                incident.target, incident.probe, incident.item, limit=10
            ),
            target_results=sorted(target_results, key=lambda r: (r.probe, r.item)),
            action=action.kind,
            text=action.text,
            status_url=self.status_url,
        )
        payload = content.to_dict()
        for name in names:
            self.store.enqueue(
                db,
                incident_id=incident.id,
                integration=name,
                role=action.role,
                action=action.kind,
                payload=payload,
                now=now,
            )
            self._to_wake.add(name)
