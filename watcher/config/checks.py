"""Checks of a config as a whole, after each model has checked its own fields: targets and their
via chains, alert quality against the rule packs, audits, check-ins, hosts."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import integrations
from rules.engine import RuleSet
from watcher.config.models import Target, WatcherConfig
from watcher.core.yamlsource import (
    ConfigIssue,
    Located,
    did_you_mean,
    format_path,
)


def check_targets(model: WatcherConfig, located: Located) -> list[ConfigIssue]:
    issues = []
    seen: dict[str, int] = {}
    names = {t.name for t in model.targets}
    for index, target in enumerate(model.targets):
        here = ("targets", index)
        if target.name in seen:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "name")),
                    format_path((*here, "name")),
                    f"target name {target.name!r} is used twice (first at targets[{seen[target.name]}])",
                    "each target needs its own name; incidents and tickets are keyed by it",
                )
            )
        seen.setdefault(target.name, index)
        probe_ids: dict[str, int] = {}
        for p_index, spec in enumerate(target.probe_specs()):
            where = (*here, "probes", p_index)
            if spec.id in probe_ids:
                issues.append(
                    ConfigIssue(
                        located.mark(where),
                        format_path(where),
                        f"target {target.name!r} has two {spec.kind} probes with the same name {spec.id!r}",
                        f"give each a distinct name, e.g. '- {spec.kind}: {{name: {spec.kind}-2, ...}}'",
                    )
                )
            probe_ids.setdefault(spec.id, p_index)
            if spec.probe_class.needs_runner and target.runner_kind == "ssh":
                ssh = model.ssh.merged(target.ssh)
                if not ssh.user:
                    issues.append(
                        ConfigIssue(
                            located.mark(where),
                            format_path(where),
                            f"{spec.kind} on {target.name!r} runs over SSH to {target.host}, but no SSH user is set",
                            "set ssh: {user: ...} at the top or on the target, or transport: local",
                        )
                    )
        if target.via is not None and target.via not in names:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "via")),
                    format_path((*here, "via")),
                    f"via names no target: {target.via!r}",
                    did_you_mean(target.via, names),
                )
            )
        if target.via == target.name:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "via")),
                    format_path((*here, "via")),
                    "a target cannot be its own bastion",
                )
            )
        if target.via is not None and target.via in names and target.via != target.name:
            issues.extend(_check_via(model, target, located, (*here, "via")))
        for d_index, dependency in enumerate(target.depends_on):
            parent = dependency.split("/", 1)[0]
            if parent not in names or parent == target.name:
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "depends_on", d_index)),
                        format_path((*here, "depends_on", d_index)),
                        f"depends_on names no other target: {dependency!r}",
                        did_you_mean(parent, names - {target.name}),
                    )
                )
        if target.host:
            _check_host(target.host, located, (*here, "host"), issues)
    integration_names: dict[str, str] = {}
    for role, kind, cfg in model.integrations.entries():
        name = cfg.name or kind
        key = f"{role}:{name}"
        if key in integration_names:
            issues.append(
                ConfigIssue(
                    located.mark(("integrations", role)),
                    format_path(("integrations", role)),
                    f"two {role} integrations are named {name!r}",
                    "give each a distinct name: ...",
                )
            )
        integration_names[key] = kind
        roles = integrations.integration_class(kind).roles
        if role not in roles:
            issues.append(
                ConfigIssue(
                    located.mark(("integrations", role)),
                    format_path(("integrations", role)),
                    f"{kind} cannot be used for {role}",
                    f"{kind} serves: {', '.join(sorted(roles))}",
                )
            )
    return issues


def check_alert_quality(
    model: WatcherConfig, located: Located, ruleset: RuleSet
) -> list[ConfigIssue]:
    """depends_on without loops; outages and maintenance windows that name real things."""
    from watcher.engine.maintenance import check_windows

    issues = []
    targets = {t.name: t for t in model.targets}
    graph = {
        t.name: [d.split("/", 1)[0] for d in t.depends_on if d.split("/", 1)[0] in targets]
        for t in model.targets
    }
    reported: set[frozenset[str]] = set()
    for index, target in enumerate(model.targets):
        loop = _loop_through(target.name, graph)
        if loop and frozenset(loop) not in reported:
            reported.add(frozenset(loop))
            path = ("targets", index, "depends_on")
            issues.append(
                ConfigIssue(
                    located.mark(path),
                    format_path(path),
                    "depends_on loops: " + " -> ".join(loop),
                    "a parent cannot depend on its own child",
                )
            )
    all_targets = {t.name: t for t in model.targets}
    for checkin in model.checkins:
        all_targets.setdefault(checkin.result_target, checkin.as_target())
    outage_names: set[str] = set()
    for index, spec in enumerate(model.outages):
        here = ("outages", index)
        if spec.name in all_targets or spec.name in outage_names:
            what = "a target" if spec.name in all_targets else "another outage"
            issues.append(
                ConfigIssue(
                    located.mark((*here, "name")),
                    format_path((*here, "name")),
                    f"{what} is also named {spec.name!r}",
                    "give the outage its own name",
                )
            )
        outage_names.add(spec.name)
        if spec.priority not in ruleset.priorities:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "priority")),
                    format_path((*here, "priority")),
                    f"priority {spec.priority} is not defined by any rule pack",
                    "defined: " + ", ".join(sorted(ruleset.priorities)),
                )
            )
        members = [
            name
            for name, t in all_targets.items()
            if (not spec.targets or any(target_glob(p, name) for p in spec.targets))
            and all(t.labels.get(k) == v for k, v in spec.labels.items())
        ]
        if len(members) < 2:
            issues.append(
                ConfigIssue(
                    located.mark(here),
                    format_path(here),
                    f"outage {spec.name!r} groups {len(members)} target{'s' if len(members) != 1 else ''}; it needs at least 2",
                    "check its labels: and targets: against the targets' labels",
                )
            )
    for index, key, problem, hint in check_windows(model.maintenance, all_targets, outage_names):
        path = ("maintenance", index, key)
        issues.append(ConfigIssue(located.mark(path), format_path(path), problem, hint))
    return issues


def _loop_through(start: str, graph: Mapping[str, list[str]]) -> list[str] | None:
    """The chain start -> ... -> start through depends_on, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for parent in graph.get(node, []):
            if parent == start:
                return [*path, start]
            if parent not in seen:
                seen.add(parent)
                stack.append((parent, [*path, parent]))
    return None


def _check_via(
    model: WatcherConfig, target: Target, located: Located, path: tuple[Any, ...]
) -> list[ConfigIssue]:
    """A bastion must be an SSH host itself, and a chain of them must end somewhere."""
    by_name = {t.name: t for t in model.targets}
    bastion = by_name[target.via]  # type: ignore[index]
    if bastion.host is None or bastion.runner_kind != "ssh":
        return [
            ConfigIssue(
                located.mark(path),
                format_path(path),
                f"via: {bastion.name!r} is not reached over SSH, so it cannot be a bastion",
                f"give {bastion.name!r} a host: (and transport: ssh if that host is local)",
            )
        ]
    chain = [target.name]
    hop: Target | None = bastion
    while hop is not None:
        if hop.name in chain:
            loop = " -> ".join([*chain, hop.name])
            return [
                ConfigIssue(
                    located.mark(path),
                    format_path(path),
                    f"via: loops: {loop}",
                    "end the chain at a host reached directly",
                )
            ]
        chain.append(hop.name)
        hop = by_name.get(hop.via) if hop.via else None
    return []


def check_audits(model: WatcherConfig, located: Located) -> list[ConfigIssue]:
    """Scheduled audits need a mail relay, someone to mail, and names of their own."""
    issues = []
    keys: dict[str, int] = {}
    for index, audit in enumerate(model.audits):
        here = ("audits", index)
        if model.smtp is None:
            issues.append(
                ConfigIssue(
                    located.mark(here),
                    format_path(here),
                    "scheduled audits are mailed through the smtp: relay, which is not set",
                    "add smtp: {host: mail.example.org, port: 25, from: watcher@example.org}",
                )
            )
        if not audit.recipients(model.contacts):
            lists = [entry for entry in audit.to if "@" not in entry]
            issues.append(
                ConfigIssue(
                    located.mark((*here, "to")),
                    format_path((*here, "to")),
                    "no address to mail this audit to"
                    + (f": contacts.{lists[0]} has no email" if lists else ""),
                    "give the contacts an email, or write addresses: to: [it-manager@example.org]",
                )
            )
        if audit.key in keys:
            issues.append(
                ConfigIssue(
                    located.mark(here),
                    format_path(here),
                    f"two audits run at {audit.key!r}; each needs its own name to remember its last run",
                    "add name: weekly-managers (any name) to one of them",
                )
            )
        keys.setdefault(audit.key, index)
    return issues


def check_checkins(model: WatcherConfig, located: Located) -> list[ConfigIssue]:
    """Each check-in: a schedule, a way to authenticate, a name no other check uses."""
    issues = []
    seen: dict[str, int] = {}
    targets = {t.name: t for t in model.targets}
    for index, checkin in enumerate(model.checkins):
        here = ("checkins", index)

        def issue(
            message: str, hint: str = "", key: str | None = None, here: tuple[Any, ...] = here
        ) -> None:
            path = (*here, key) if key else here
            issues.append(ConfigIssue(located.mark(path), format_path(path), message, hint))

        if checkin.name in seen:
            issue(
                f"two check-ins are named {checkin.name!r} (first at checkins[{seen[checkin.name]}])",
                "",
                "name",
            )
        seen.setdefault(checkin.name, index)
        if (checkin.period is None) == (checkin.schedule is None):
            issue(
                "a check-in needs either period: or schedule:, not both"
                if checkin.period
                else "a check-in needs period: or schedule:",
                'write period: 1d (runs every day) or schedule: "30 2 * * *" (cron), with grace: 2h',
            )
        if checkin.period is not None and checkin.period.total_seconds() <= 0:
            issue("period must be longer than 0", "e.g. period: 1h", "period")
        if checkin.token is None and model.api_token is None:
            issue(
                f"nobody can check in to {checkin.name!r}: it has no token and there is no api_token",
                'add token: "${BACKUP_CHECKIN_TOKEN}" to the check-in, or api_token: at the top',
            )
        if model.listen is None:
            issue(
                "check-ins arrive over HTTP, but listen: is off",
                "set listen: 0.0.0.0:9177 (or the address jobs reach)",
            )
        if checkin.target is not None and checkin.target not in targets:
            issue(
                f"target names no configured target: {checkin.target!r}",
                did_you_mean(checkin.target, targets),
                "target",
            )
        elif checkin.target is not None:
            if checkin.name in {spec.id for spec in targets[checkin.target].probe_specs()}:
                issue(
                    f"target {checkin.target!r} already has a probe named {checkin.name!r}",
                    "rename the check-in; its results sit beside that target's probes",
                    "name",
                )
        elif checkin.name in targets:
            issue(
                f"a target is also named {checkin.name!r}",
                f"add target: {checkin.name} to attach the check-in to it, or rename one",
                "name",
            )
    return issues


def _check_host(
    host: str, located: Located, path: tuple[Any, ...], issues: list[ConfigIssue]
) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            issues.append(
                ConfigIssue(
                    located.mark(path), format_path(path), f"{host!r} is not a host name or address"
                )
            )


def target_glob(pattern: str, name: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern)
