"""Why an incident's notifications are held back right now, decided for the engine.

Four reasons, most specific first:

- ``maintenance``: a window covers the target (watcher/engine/maintenance.py);
- ``parent``: a target it ``depends_on`` is down, or has not been checked since this
  target began failing (for up to one of the parent's check intervals, so a child
  checked just before its router does not page first);
- ``outage``: the target is a member of an open site-wide outage (watcher/engine/outage.py);
- ``grouping``: the target belongs to an outage group and its incident opened less than
  the group's ``wait`` ago: the group may be about to fail together.

The waiting kinds (for a parent's check, ``grouping``) only hold incidents that people
have not heard of yet. A target is *down* (for ``depends_on``) when one of its checks'
latest results is ``fail`` or ``error``, except a service that answers slowly or with a
certificate near expiry (reasons ``slow``, ``cert_expiring``): it is reachable, so it
explains nothing. An outage member *fails* while it has an open incident whose latest
result still fails; one whose failure a down parent explains is not counted.

The engine asks ``quiet()`` before every tracker step (with ``settling`` while a batch
is applied: any unheard outage-group member waits until the batch's outages are
assessed, so members that open in the same round are grouped even with ``wait: 0s``);
the tracker does the rest.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from probes.base import Result
from watcher.engine.incident import Incident
from watcher.engine.maintenance import Maintenance
from watcher.engine.outage import OUTAGE_PROBE, Failing, OutageConfig, assess, outage_fingerprint
from watcher.engine.tracker import Policy, Step, Suppression, resolve

__all__ = ["Suppressor", "describe", "DEGRADED_REASONS"]

DEGRADED_REASONS = frozenset({"slow", "cert_expiring"})
_RANK = {"open": 0, "acknowledged": 1, "pending": 2}


def _down(result: Result) -> bool:
    return result.status in ("fail", "error") and result.reason not in DEGRADED_REASONS


def _glob(pattern: str, name: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern)


class Suppressor:
    """The engine's view of which targets are down, since when, and who explains whom."""

    def __init__(self, store: Any | None = None) -> None:
        self.maintenance = Maintenance(store)
        self.site = ""
        self.labels: dict[str, dict[str, str]] = {}
        self.parents: dict[str, list[tuple[str, str | None]]] = {}
        self.depth: dict[str, int] = {}
        self.grace: dict[str, timedelta] = {}
        self.outages: list[OutageConfig] = []
        self.members: dict[str, list[str]] = {}
        self.groups_of: dict[str, list[OutageConfig]] = {}
        self._checks: dict[str, dict[tuple[str, str], Result]] = {}
        self._since: dict[str, datetime] = {}
        self._parent_incident: dict[tuple[str, str | None], Incident | None] = {}
        self._active_windows: list[Any] | None = None
        self._now: datetime | None = None

    # ------------------------------------------------------------------ config

    def configure(self, config: Any) -> None:
        m = config.model
        self.site = m.site
        targets = config.targets
        self.labels = {name: dict(t.labels) for name, t in targets.items()}
        self.parents = {}
        for t in m.targets:
            if t.depends_on:
                self.parents[t.name] = [
                    (d.split("/", 1)[0], d.split("/", 1)[1] if "/" in d else None)
                    for d in t.depends_on
                ]
        self.depth = {name: self._depth_of(name, set()) for name in targets}
        self.grace = {t.name: _grace(t, m) for t in m.targets}
        self.outages = list(m.outages)
        self.members = {}
        self.groups_of = {}
        for spec in self.outages:
            names = sorted(
                name
                for name, labels in self.labels.items()
                if (not spec.targets or any(_glob(p, name) for p in spec.targets))
                and all(labels.get(k) == v for k, v in spec.labels.items())
            )
            self.members[spec.name] = names
            for name in names:
                self.groups_of.setdefault(name, []).append(spec)
        self.maintenance.configure(m.maintenance, m.business_hours.timezone)
        self._checks = {k: v for k, v in self._checks.items() if k in targets}
        self._since = {k: v for k, v in self._since.items() if k in targets}

    def _depth_of(self, name: str, seen: set[str]) -> int:
        if name in seen:
            return 0  # a loop is refused at load; never recurse forever on one anyway
        parents = self.parents.get(name, [])
        return (
            1 + max((self._depth_of(p, seen | {name}) for p, _ in parents), default=-1)
            if parents
            else 0
        )

    def seed(self, latest: Iterable[Result], incidents: Iterable[Incident]) -> None:
        """After a restart: the latest results say who is down; the open incidents say
        since when (else the latest result's time)."""
        self.saw(sorted(latest, key=lambda r: r.at))
        first: dict[str, datetime] = {}
        for incident in incidents:
            seen = incident.first_seen
            if (
                incident.state != "resolved"
                and seen is not None
                and seen < first.get(incident.target, seen + timedelta(1))
            ):
                first[incident.target] = seen
        for target, since in list(self._since.items()):
            if target in first and first[target] < since:
                self._since[target] = first[target]

    # ----------------------------------------------------------------- results

    def saw(self, results: Iterable[Result]) -> None:
        """Takes a batch's results before any of them is applied, so a child finds its
        parent's result of the same round whatever order the batch came in."""
        touched = set()
        for result in results:
            checks = self._checks.setdefault(result.target, {})
            previous = checks.get((result.probe, result.item))
            if previous is not None and previous.at > result.at:
                continue
            checks[(result.probe, result.item)] = result
            touched.add(result.target)
        for target in touched:
            down = [r for r in self._checks[target].values() if _down(r)]
            if not down:
                self._since.pop(target, None)
            elif target not in self._since:
                self._since[target] = min(r.at for r in down)

    def forget(self, target: str, probe: str, item: str) -> None:
        """Drops a result that no longer stands: a whole-check error its items replaced."""
        checks = self._checks.get(target, {})
        if checks.pop((probe, item), None) is not None and not any(
            _down(r) for r in checks.values()
        ):
            self._since.pop(target, None)

    def order(self, results: Sequence[Result]) -> list[Result]:
        """Parents before their children (the batch's own order otherwise)."""
        if not self.parents:
            return list(results)
        return sorted(results, key=lambda r: self.depth.get(r.target, 0))

    def down(self, target: str, probe: str | None = None) -> bool:
        return any(
            _down(r)
            for (p, _), r in self._checks.get(target, {}).items()
            if probe is None or p == probe
        )

    def _checked_at(self, target: str, probe: str | None) -> datetime | None:
        times = [
            r.at
            for (p, _), r in self._checks.get(target, {}).items()
            if probe is None or p == probe
        ]
        return max(times) if times else None

    # ----------------------------------------------------------------- decisions

    def begin(self, now: datetime) -> None:
        """Once per engine step: the windows as the store has them now, fresh caches."""
        self.maintenance.refresh()
        self._active_windows = self.maintenance.active(now)
        self._now = now
        self._parent_incident = {}

    def quiet(
        self,
        target: str,
        incident: Incident | None,
        incidents: Mapping[str, Incident],
        now: datetime,
        *,
        settling: bool = False,
    ) -> Suppression | None:
        """Why ``target``'s incident (None: one about to be created) is held back now."""
        if self._now != now or self._active_windows is None:
            self.begin(now)
        if incident is not None and incident.probe == OUTAGE_PROBE and target not in self.labels:
            return self._outage_quiet(target, incident.labels, incident.members)
        labels = self.labels.get(target, {})
        covering = self.maintenance.covering(target, labels, now, self._active_windows)
        if covering is not None:
            return _in_maintenance(*covering)
        unheard = incident is None or incident.state == "pending" or not incident.notified
        for parent, probe in self.parents.get(target, ()):
            name = parent + (f"/{probe}" if probe else "")
            if self.down(parent, probe):
                found = self._incident_of(parent, probe, incidents)
                linked = found.id if found is not None else None
                why = f"{name} is down" + (f" (incident {linked})" if linked else "")
                return Suppression("parent", why, linked_to=linked, link="parent")
            if unheard:
                since = self._since.get(target)
                checked = self._checked_at(parent, probe)
                grace = self.grace.get(parent, timedelta(0))
                if (
                    since is not None
                    and (checked is None or checked < since)
                    and now - since < grace
                ):
                    return Suppression("parent", f"waiting for {name}'s next check")
        for spec in self.groups_of.get(target, ()):
            outage = incidents.get(outage_fingerprint(self.site, spec.name))
            if outage is not None and outage.active and target in outage.members:
                return Suppression(
                    "outage",
                    f"part of outage {spec.name} (incident {outage.id})",
                    linked_to=outage.id,
                    link="outage",
                )
        if unheard and not self._explained(target):
            began = (
                incident.priority_since
                if incident is not None and incident.state != "pending"
                else None
            )
            for spec in self.groups_of.get(target, ()):
                if settling or began is None or now - began < spec.wait:
                    return Suppression(
                        "grouping",
                        f"waiting {_seconds(spec.wait)} to see whether {spec.name} fails as a whole",
                    )
        return None

    def _outage_quiet(
        self, name: str, labels: Mapping[str, str], members: Sequence[str]
    ) -> Suppression | None:
        """An outage is held while a window covers it by name, or covers every member failing."""
        assert self._now is not None
        active = self._active_windows or []
        own = self.maintenance.covering(name, labels, self._now, active)
        if own is None and members:
            covered = [
                self.maintenance.covering(t, self.labels.get(t, {}), self._now, active)
                for t in members
            ]
            found = [c for c in covered if c is not None]
            if len(found) == len(covered):
                own = max(found, key=lambda c: c[1])
        if own is None:
            return None
        return _in_maintenance(*own)

    def _explained(self, target: str) -> bool:
        return any(self.down(parent, probe) for parent, probe in self.parents.get(target, ()))

    def _incident_of(
        self, parent: str, probe: str | None, incidents: Mapping[str, Incident]
    ) -> Incident | None:
        """The parent's most telling unresolved incident (open before acknowledged before pending)."""
        key = (parent, probe)
        if key not in self._parent_incident:
            candidates = [
                i
                for i in incidents.values()
                if i.target == parent
                and i.state != "resolved"
                and (probe is None or i.probe == probe)
            ]
            candidates.sort(
                key=lambda i: (_RANK.get(i.state, 3), int((i.priority or "P9")[1:]), i.id or 0)
            )
            self._parent_incident[key] = candidates[0] if candidates else None
        return self._parent_incident[key]

    # ----------------------------------------------------------------- outages

    def outage_steps(
        self, incidents: Mapping[str, Incident], policy: Policy, now: datetime
    ) -> list[Step]:
        """Each outage group's incident brought up to date from its members' incidents."""
        if self._now != now or self._active_windows is None:
            self.begin(now)
        failing_by_target: dict[str, list[Incident]] = {}
        steps = []
        configured = {outage_fingerprint(self.site, spec.name) for spec in self.outages}
        for incident in incidents.values():
            if not incident.active:
                continue
            if incident.probe == OUTAGE_PROBE and incident.target not in self.labels:
                if incident.fingerprint not in configured:  # its group left the config
                    step = Step(copy.deepcopy(incident))
                    assert step.incident is not None
                    resolve(
                        step.incident,
                        policy,
                        now,
                        step,
                        "the outage group is no longer configured",
                        by="watcher",
                    )
                    steps.append(step)
            elif not incident.ok_streak:
                failing_by_target.setdefault(incident.target, []).append(incident)
        for spec in self.outages:
            members = self.members.get(spec.name, [])
            failing = {}
            for target in members:
                own = failing_by_target.get(target)
                if not own or self._explained(target):
                    continue
                top = min(own, key=lambda i: (int((i.priority or "P9")[1:]), i.id or 0))
                began = min(i.priority_since or i.opened_at or now for i in own)
                failing[target] = Failing(began, top.summary or top.message)
            group_incident = incidents.get(outage_fingerprint(self.site, spec.name))
            if not failing and (group_incident is None or not group_incident.active):
                continue
            quiet = self._outage_quiet(spec.name, spec.labels, sorted(failing))
            step = assess(spec, group_incident, failing, len(members), policy, now, quiet=quiet)
            if step.changed:
                steps.append(step)
        return steps


def _in_maintenance(window: Any, end: datetime) -> Suppression:
    return Suppression(
        "maintenance",
        f"maintenance {window.name!r} until {end.astimezone(window.tz):%Y-%m-%d %H:%M %Z}",
    )


def _seconds(delta: timedelta) -> str:
    from watcher.core.durations import format_duration

    return format_duration(delta)


def _grace(target: Any, model: Any) -> timedelta:
    """How long a child waits for this target's next check: its longest interval plus timeout."""
    longest = timedelta(0)
    for spec in target.probe_specs():
        interval, timeout = target.timing(spec, model.defaults)
        longest = max(longest, interval + timeout)
    return longest


def describe(incident: Incident) -> str:
    """A short note for lists and the status page: why it is quiet, what it stands for."""
    notes = []
    if incident.suppressed == "maintenance":
        notes.append("maintenance")
    elif incident.suppressed == "parent":
        notes.append(f"child of #{incident.linked_to}" if incident.linked_to else "parent down")
    elif incident.suppressed == "outage":
        notes.append(f"member of #{incident.linked_to}")
    elif incident.suppressed == "grouping":
        notes.append("grouping")
    if incident.flapping:
        notes.append("flapping")
    if incident.probe == OUTAGE_PROBE and incident.total_members:
        notes.append(f"outage {len(incident.members)}/{incident.total_members}")
    if incident.suppressed is None and incident.active and not incident.notified:
        notes.append("owed")
    return ", ".join(notes)
