"""Rules: which results become incidents, at which priority. Shipped packs are ``rules/*.yml``."""

from rules.condition import Condition, ConditionError, parse_condition
from rules.engine import Evaluation, RuleSet
from rules.model import PriorityPolicy, Rule, RulePack

__all__ = [
    "Condition",
    "ConditionError",
    "Evaluation",
    "PriorityPolicy",
    "Rule",
    "RulePack",
    "RuleSet",
    "parse_condition",
]
