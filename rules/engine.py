"""Applies rules to results: which rules look at a result, and what each says of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from probes.base import Result
from rules.condition import Truth
from rules.model import PriorityPolicy, Rule, render_template

__all__ = ["Evaluation", "RuleSet", "template_values"]


@dataclass(frozen=True)
class Evaluation:
    """One rule's verdict on one result: True, False, or None (cannot tell)."""

    rule: Rule
    value: Truth
    group: str


def template_values(
    result: Result, *, site: str, host: str | None, rule: Rule | None = None
) -> dict[str, Any]:
    values: dict[str, Any] = dict(result.metrics)
    values.update(result.labels)
    values.update(
        site=site,
        target=result.target,
        host=host or result.target,
        probe=result.probe,
        kind=result.kind,
        item=result.item,
        message=result.message,
        status=result.status,
        reason=result.reason,
    )
    if rule is not None:
        values.update(rule=rule.name, priority=rule.priority)
    return values


class RuleSet:
    """The merged rules of every configured pack, with their priorities."""

    def __init__(
        self,
        priorities: Mapping[str, PriorityPolicy],
        rules: Sequence[Rule],
        *,
        site: str,
        overrides: Sequence[str] = (),
    ) -> None:
        self.priorities = dict(priorities)
        # which site rules change which shipped ones, said by validate
        self.overrides = list(overrides)
        self.rules = [r for r in rules if r.enabled]
        self.site = site
        self._by_check: dict[tuple[str, str, str], list[Rule]] = {}

    @staticmethod
    def rank(priority: str) -> int:
        """Smaller is more urgent: P1 outranks P2."""
        return int(priority[1:])

    def highest(self, priorities: Sequence[str]) -> str:
        return min(priorities, key=self.rank)

    def policy(self, priority: str) -> PriorityPolicy:
        return self.priorities[priority]

    def matching(self, result: Result, target_labels: Mapping[str, str]) -> list[Rule]:
        key = (result.target, result.probe, result.kind)
        rules = self._by_check.get(key)
        if rules is None:
            rules = [r for r in self.rules if _selects(r, result, target_labels)]
            self._by_check[key] = rules
        return rules

    def evaluate(
        self, result: Result, target_labels: Mapping[str, str], host: str | None
    ) -> list[Evaluation]:
        evaluations = []
        values: dict[str, Any] | None = None
        for rule in self.matching(result, target_labels):
            if rule.group is None:
                group = default_group(result)
            else:
                values = values or template_values(result, site=self.site, host=host)
                group = render_template(rule.group, values)
            evaluations.append(Evaluation(rule, rule.when.evaluate(result), group))
        return evaluations


def default_group(result: Result) -> str:
    """One incident per check and item (``disk /var``) unless a rule groups otherwise."""
    return f"{result.probe} {result.item}" if result.item else result.probe


def _selects(rule: Rule, result: Result, target_labels: Mapping[str, str]) -> bool:
    if rule.probe and result.kind not in rule.probe and result.probe not in rule.probe:
        return False
    if rule.target and not any(fnmatchcase(result.target, pattern) for pattern in rule.target):
        return False
    return all(target_labels.get(k) == v for k, v in rule.labels.items())
