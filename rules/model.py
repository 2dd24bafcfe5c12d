"""Rule packs as written in YAML: priorities with their SLA policy, and rules."""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    field_validator,
)

from rules.condition import Condition, parse_condition
from watcher.core.types import OptionalDuration
from watcher.engine.sla import Clock, Span, parse_span

__all__ = [
    "PriorityPolicy",
    "Rule",
    "RuleOverride",
    "RulePack",
    "template_fields",
    "render_template",
    "TEMPLATE_BASE_FIELDS",
]

SlaSpan = Annotated[Span | None, PlainValidator(parse_span)]
ConditionField = Annotated[Condition, PlainValidator(parse_condition)]

PRIORITY_NAME = re.compile(r"^P[1-9]$")
TEMPLATE_BASE_FIELDS = frozenset(
    {
        "site",
        "target",
        "host",
        "probe",
        "kind",
        "item",
        "message",
        "status",
        "reason",
        "rule",
        "priority",
    }
)


class PriorityPolicy(BaseModel):
    """What a priority means: its SLA clock and what watcher does on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    response: SlaSpan = None
    resolve: SlaSpan = None
    clock: Clock = "24x7"
    ticket: bool = False
    page: bool = False
    repage_every: OptionalDuration = None
    remind_every: OptionalDuration = None
    remind_max: int = Field(default=3, ge=0)
    escalate: bool = True


def _listify(value: Any) -> Any:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Rule(BaseModel):
    """Maps results to a priority: which results, what condition, how long it must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str | None = None
    enabled: bool = True
    probe: list[str] = []
    target: list[str] = []
    labels: dict[str, str] = {}
    when: ConditionField
    for_: OptionalDuration = Field(default=None, alias="for")
    after: int | None = Field(default=None, ge=1)
    priority: str
    summary: str = "{target}: {message}"
    group: str | None = None
    runbook: str | None = None

    @field_validator("probe", "target", mode="before")
    @classmethod
    def _many(cls, value: Any) -> Any:
        return _listify(value)

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: str) -> str:
        if not PRIORITY_NAME.match(value):
            raise ValueError(f"{value!r} is not a priority; write P1, P2, P3 or P4")
        return value

    @field_validator("summary", "group")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value


class RuleOverride(BaseModel):
    """A rule without ``when:``: it changes the fields it names (its hold, priority,
    summary...) of an earlier pack's rule of the same name, which keeps the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str | None = None
    enabled: bool | None = None
    probe: list[str] | None = None
    target: list[str] | None = None
    labels: dict[str, str] | None = None
    for_: OptionalDuration = Field(default=None, alias="for")
    after: int | None = Field(default=None, ge=1)
    priority: str | None = None
    summary: str | None = None
    group: str | None = None
    runbook: str | None = None

    @field_validator("probe", "target", mode="before")
    @classmethod
    def _many(cls, value: Any) -> Any:
        return _listify(value)

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: str | None) -> str | None:
        return None if value is None else Rule._priority(value)

    @field_validator("summary", "group")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return Rule._template(value)

    @property
    def changed(self) -> list[str]:
        """The fields it sets, as the YAML names them."""
        return [
            "for" if name == "for_" else name
            for name in type(self).model_fields
            if name in self.model_fields_set and name != "name"
        ]

    def apply(self, rule: Rule) -> Rule:
        """``rule`` with this override's fields in place of its own."""
        return rule.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})


def _rule_or_override(value: Any) -> str:
    # A rule that says when it fires stands on its own; without when: it changes another.
    if isinstance(value, dict) and "when" not in value and "name" in value:
        return "override"
    return "rule"


RuleEntry = Annotated[
    Union[Annotated[Rule, Tag("rule")], Annotated[RuleOverride, Tag("override")]],  # noqa: UP007
    Discriminator(_rule_or_override),
]


class RulePack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    priorities: dict[str, PriorityPolicy] = {}
    rules: list[RuleEntry] = []

    @field_validator("priorities")
    @classmethod
    def _names(cls, value: dict[str, PriorityPolicy]) -> dict[str, PriorityPolicy]:
        for name in value:
            if not PRIORITY_NAME.match(name):
                raise ValueError(f"priority {name!r} must be named P1 to P9")
        return value


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_fields(template: str) -> set[str]:
    """The names a summary or group template uses; refuses anything but plain names."""
    names = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"bad template {template!r}: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    for _, field, _, conversion in parsed:
        if field is None:
            continue
        if not _FIELD.match(field) or conversion:
            raise ValueError(
                f"template field {{{field}}} must be a plain name like {{target}} or {{used_percent:.0f}}"
            )
        names.add(field)
    return names


def render_template(template: str, values: dict[str, Any]) -> str:
    """Fills a template from ``values``; a missing name shows as ``?`` rather than failing."""
    out = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        if value is None:
            out.append("?")
            continue
        try:
            out.append(format(value, spec) if spec else _plain(value))
        except (ValueError, TypeError):
            out.append(_plain(value))
    return "".join(out)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"
    return str(value)
