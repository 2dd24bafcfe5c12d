"""Loading watcher.yml: the YAML with its positions, ${ENV} expansion, the models, the rule packs
merged, and every problem found reported together."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ValidationError,
)

import probes
from probes.base import ProbeConfig
from rules.condition import RESULT_FIELDS
from rules.engine import RuleSet
from rules.model import TEMPLATE_BASE_FIELDS, Rule, RuleOverride, RulePack, template_fields
from watcher.config.checks import (
    check_alert_quality,
    check_audits,
    check_checkins,
    check_targets,
    target_glob,
)
from watcher.config.errors import validation_issues, without_env_values
from watcher.config.models import (
    SHIPPED_RULES,
    Config,
    ProbeSpec,
    WatcherConfig,
    install_entry_types,
)
from watcher.core.yamlsource import (
    ConfigError,
    ConfigIssue,
    Located,
    did_you_mean,
    format_path,
    load_yaml,
)

__all__ = ["load_config", "load_for_reading"]


def load_config(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: Literal["required", "optional"] = "required",
) -> Config:
    """Loads watcher.yml and its rule packs; raises ConfigError listing every problem.

    With ``secrets="optional"`` (commands that only read the state), an unset ``${VAR}``
    reads as empty and is listed in ``Config.unset`` instead of being a problem."""
    loaded: list[Located] = []
    try:
        return _load_config(Path(path), environ, loaded, secrets)
    except ConfigError as exc:
        if not any(located.from_env for located in loaded):
            raise
        issues = exc.issues
        for located in loaded:
            issues = [without_env_values(issue, located) for issue in issues]
        raise ConfigError(issues) from None


def load_for_reading(path: str | Path) -> Config:
    """The config for a command that only reads (incidents, explain, audit, maintenance):
    unset ``${VAR}`` secrets read as empty, with one warning on stderr naming them, since
    only commands that probe or deliver (run, once, test-integration) need them."""
    config = load_config(path, secrets="optional")
    if config.unset:
        names = sorted({i.message.split()[2] for i in config.unset})
        print(
            f"watcher: warning: {', '.join(names)} not set; read as empty "
            "(only run, once and test-integration need them)",
            file=sys.stderr,
        )
    return config


# The settings each check after validation reads: when some settings fail validation, the
# checks that do not read them still run, so one pass reports every mistake it can.
_CHECK_NEEDS = {
    "targets": {"integrations", "ssh", "targets"},
    "checkins": {"api_token", "checkins", "listen", "targets"},
    "audits": {"audits", "contacts", "smtp"},
    "rules": {"checkins", "site", "targets"},
    "alert quality": {"checkins", "maintenance", "outages", "targets"},
}


def _load_config(
    file: Path, environ: Mapping[str, str] | None, loaded: list[Located], secrets: str
) -> Config:
    install_entry_types()
    located = load_yaml(file, environ=environ, defer_unset=True)
    loaded.append(located)
    issues: list[ConfigIssue] = []
    if not isinstance(located.data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    located.mark(()),
                    "",
                    "the file must be a mapping of settings (site:, targets:, ...)",
                )
            ]
        )
    failed: set[str] = set()
    try:
        model: WatcherConfig | None = WatcherConfig.model_validate(located.data)
    except ValidationError as exc:
        issues.extend(validation_issues(exc, located, WatcherConfig))
        locs = [e["loc"] for e in exc.errors() if e["loc"]]
        failed = {str(loc[0]) for loc in locs}
        model = _without_failed(located.data, locs)
    packs: list[tuple[Located, RulePack]] = []
    rule_files: list[Path] = []
    rule_names = located.data.get("rules", ["default"])
    if not isinstance(rule_names, list):
        rule_names = []  # the model's own validation reports it
    for index, name in enumerate(rule_names):
        rule_file = _resolve_rule_file(file.parent, str(name))
        if rule_file is None:
            issues.append(
                ConfigIssue(
                    located.mark(("rules", index)),
                    format_path(("rules", index)),
                    f"rule file {name!r} not found (looked beside {file.name} and in the shipped packs)",
                    "the shipped pack is 'default'; other paths are relative to "
                    + str(file.parent),
                )
            )
            continue
        try:
            rules_located = load_yaml(rule_file, environ=environ, defer_unset=True)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        loaded.append(rules_located)
        try:
            packs.append((rules_located, RulePack.model_validate(rules_located.data or {})))
            rule_files.append(rule_file)
        except ValidationError as exc:
            issues.extend(validation_issues(exc, rules_located, RulePack))

    def runs(check: str) -> bool:
        return model is not None and not (_CHECK_NEEDS[check] & failed)

    if model is not None and runs("targets"):
        issues.extend(check_targets(model, located))
    if model is not None and runs("checkins"):
        issues.extend(check_checkins(model, located))
    if model is not None and runs("audits"):
        issues.extend(check_audits(model, located))
    # The rule packs are checked even when the targets did not load; what depends on the
    # targets is then left for when they do.
    ruleset, rule_issues = _merge_rules(model if runs("rules") else None, packs)
    issues.extend(rule_issues)
    if model is not None and runs("alert quality"):
        issues.extend(check_alert_quality(model, located, ruleset))
    unset = [issue for source in loaded for issue in source.unset]
    if secrets == "required" and unset:
        # A value left empty by an unset ${VAR} may fail its own check too: said once
        where = {(i.mark.file if i.mark else "", i.path) for i in unset}
        issues = [i for i in issues if (i.mark.file if i.mark else "", i.path) not in where]
        issues.extend(unset)
    if issues or model is None or failed:
        raise ConfigError(issues)
    return Config(file=file, model=model, rules=ruleset, rule_files=rule_files, unset=unset)


def _without_failed(data: dict[str, Any], locs: list[tuple[Any, ...]]) -> WatcherConfig | None:
    """The model of ``data`` without what failed validation (the failing items of a list,
    other settings' defaults), so the checks that read none of it can still run; None if
    even that fails."""
    kept = dict(data)
    # One pass over the failures: a list with 20,000 failing items must not be filtered
    # 20,000 times.
    drop: dict[str, set[int]] = {}
    for loc in locs:
        name = str(loc[0])
        if isinstance(data.get(name), list) and len(loc) > 1 and isinstance(loc[1], int):
            drop.setdefault(name, set()).add(loc[1])
        else:
            kept.pop(name, None)
    for name, items in drop.items():
        if name in kept:
            kept[name] = [item for i, item in enumerate(data[name]) if i not in items]
    try:
        return WatcherConfig.model_validate(kept)
    except ValidationError:
        return None


def _resolve_rule_file(base: Path, name: str) -> Path | None:
    if name == "default":
        name = "rules/default.yml"
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        beside = base / candidate
        if beside.is_file():
            return beside
        shipped = (
            SHIPPED_RULES / candidate.name
            if candidate.parts[:1] == ("rules",)
            else SHIPPED_RULES / candidate
        )
        if shipped.is_file():
            return shipped
        if (SHIPPED_RULES / f"{name}.yml").is_file():
            return SHIPPED_RULES / f"{name}.yml"
        return None
    return candidate if candidate.is_file() else None


def _merge_rules(
    model: WatcherConfig | None, packs: list[tuple[Located, RulePack]]
) -> tuple[RuleSet, list[ConfigIssue]]:
    priorities: dict[str, Any] = {}
    by_name: dict[str, tuple[Rule, Located, int]] = {}
    issues = []
    overrides: list[str] = []
    for located, pack in packs:
        priorities.update(pack.priorities)
        for index, rule in enumerate(pack.rules):
            if isinstance(rule, RuleOverride):
                base = by_name.get(rule.name)
                if base is None:
                    issues.append(_no_rule_to_override(rule, located, index, sorted(by_name)))
                    continue
                # in the place of the rule it changes: the rest of its pack's order stays
                by_name[rule.name] = (rule.apply(base[0]), located, index)
                overrides.append(
                    f"{located.file}: rule {rule.name} changes {', '.join(rule.changed)} "
                    f"of the rule of that name in {base[1].file}"
                )
                continue
            by_name.pop(rule.name, None)  # a later pack's rule of the same name replaces it
            by_name[rule.name] = (rule, located, index)
    configured: dict[str, ProbeSpec] = {}
    target_names: set[str] = set()
    if model is not None:
        configured = {spec.id: spec for t in model.targets for spec in t.probe_specs()}
        configured.update(
            {c.name: ProbeSpec("heartbeat", c.name, ProbeConfig()) for c in model.checkins}
        )
        target_names = {t.name for t in model.targets} | {c.result_target for c in model.checkins}
    configured_kinds = {spec.kind for spec in configured.values()}
    for rule, located, index in by_name.values():
        here = ("rules", index)
        if rule.priority not in priorities:
            issues.append(
                ConfigIssue(
                    located.mark((*here, "priority")),
                    format_path((*here, "priority")),
                    f"priority {rule.priority} is not defined by any rule pack",
                    "defined: "
                    + (", ".join(sorted(priorities)) or "none; list rules/default.yml first"),
                )
            )
        kinds: set[str] = set()
        unresolved = False
        for p_index, selector in enumerate(rule.probe):
            if selector in probes.REGISTRY:
                kinds.add(selector)
            elif selector in configured:
                kinds.add(configured[selector].kind)
            elif model is None:
                unresolved = True  # may name a probe of a target that did not load
            else:
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "probe", p_index)),
                        format_path((*here, "probe", p_index)),
                        f"no probe kind or configured probe is called {selector!r}",
                        did_you_mean(selector, [*probes.REGISTRY, *configured]),
                    )
                )
        for t_index, pattern in enumerate(rule.target):
            if not any(target_glob(pattern, name) for name in target_names) and target_names:
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "target", t_index)),
                        format_path((*here, "target", t_index)),
                        f"target {pattern!r} matches no configured target",
                        did_you_mean(pattern, target_names),
                    )
                )
        known = (
            None
            if unresolved
            else _known_metrics(
                kinds or set(probes.REGISTRY), configured, configured_kinds, restrict=bool(kinds)
            )
        )
        if known is not None:
            allowed = known | RESULT_FIELDS
            for name in sorted(rule.when.names - allowed):
                issues.append(
                    ConfigIssue(
                        located.mark((*here, "when")),
                        format_path((*here, "when")),
                        f"{name!r} is not a metric that {_kinds_text(kinds)} produces",
                        did_you_mean(name, allowed) or "known: " + ", ".join(sorted(known)),
                    )
                )
            for key in ("summary", "group"):
                template = getattr(rule, key)
                if template is None:
                    continue
                for name in sorted(template_fields(template) - allowed - TEMPLATE_BASE_FIELDS):
                    issues.append(
                        ConfigIssue(
                            located.mark((*here, key)),
                            format_path((*here, key)),
                            f"{{{name}}} is not a field this rule's results have",
                            did_you_mean(name, allowed | TEMPLATE_BASE_FIELDS),
                        )
                    )
    rules = [rule for rule, _, _ in by_name.values()]
    ruleset = RuleSet(priorities, rules, site=model.site if model else "?", overrides=overrides)
    return ruleset, issues


def _no_rule_to_override(
    rule: RuleOverride, located: Located, index: int, names: list[str]
) -> ConfigIssue:
    guess = did_you_mean(rule.name, names)
    return ConfigIssue(
        located.mark(("rules", index, "name")),
        format_path(("rules", index, "name")),
        f"rule {rule.name!r} has no when:, so it changes an earlier pack's rule of that "
        "name, and no earlier pack has one",
        (guess + " " if guess.startswith("did you mean") else "")
        + f"rules it can change: {', '.join(names) or 'none (list its pack after default)'}; "
        "or give it when: and priority: to make it a rule of its own",
    )


def _kinds_text(kinds: set[str]) -> str:
    return "the " + "/".join(sorted(kinds)) + " probe" if kinds else "any probe"


def _known_metrics(
    kinds: set[str],
    configured: Mapping[str, ProbeSpec],
    configured_kinds: set[str],
    *,
    restrict: bool,
) -> set[str] | None:
    """Metric and label names the selected probe kinds can produce; None if unknowable."""
    known: set[str] = set()
    for kind in kinds:
        cls = probes.probe_class(kind)
        known.update(cls.labels)
        if cls.metrics is not None:
            known.update(cls.metrics)
            continue
        specs = [s for s in configured.values() if s.kind == kind]
        if not restrict and not specs:
            continue  # a dynamic kind nobody configured adds no names
        for spec in specs:
            produced = (
                cls.produced_metrics(spec.config) if hasattr(cls, "produced_metrics") else None
            )
            if produced is None:
                return None
            known.update(produced)
        if not specs:
            return None
    return known
