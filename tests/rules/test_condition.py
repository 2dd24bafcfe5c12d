"""Rule conditions: parsed by a grammar, evaluated in three values, never eval'ed."""

from __future__ import annotations

import pytest

from rules.condition import ConditionError, parse_condition
from tests.support.helpers import result

DISK = result(
    "files1", "disk", metrics={"used_percent": 91.0, "free_bytes": 4e9}, labels={"path": "/var"}
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("used_percent >= 90 and free_bytes < 5e9", True),
        ("used_percent >= 90 and free_bytes < 5GB", True),
        ("used_percent >= 95 or free_bytes < 1GiB", False),
        ("not (used_percent < 90)", True),
        ("path == '/var' and used_percent > 90", True),
        ("path =~ '^/v'", True),
        ("path !~ '^/v'", False),
        ("path in ('/var', '/srv')", True),
        ("path not in ('/var', '/srv')", False),
        ("ok", True),
        ("failed", False),
        ("failing", False),
        ("error", False),
        ("status == 'ok'", True),
        ("(ok and used_percent > 50) or failed", True),
    ],
)
def test_conditions_evaluate_against_a_result(text: str, expected: bool) -> None:
    assert parse_condition(text).evaluate(DISK) is expected


def test_a_missing_metric_is_unknown_not_false() -> None:
    condition = parse_condition("inodes_used_percent > 90")
    assert condition.evaluate(DISK) is None
    assert parse_condition("not inodes_used_percent > 90").evaluate(DISK) is None
    assert parse_condition("ok or inodes_used_percent > 90").evaluate(DISK) is True
    assert parse_condition("failed and inodes_used_percent > 90").evaluate(DISK) is False


def test_a_probe_that_could_not_tell_is_neither_ok_nor_failed() -> None:
    broken = result("mail1", "smtp", status="error", message="auth refused")
    assert parse_condition("failed").evaluate(broken) is None
    assert parse_condition("ok").evaluate(broken) is None
    assert parse_condition("error").evaluate(broken) is True
    assert parse_condition("failing").evaluate(broken) is True


def test_units_on_durations() -> None:
    slow = result("web", "http", metrics={"latency_s": 0.7})
    assert parse_condition("latency_s > 500ms").evaluate(slow) is True
    assert parse_condition("latency_s > 1s").evaluate(slow) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("used_percent >> 90", "expected a number or a 'quoted string' after >"),
        ("used_percent = 90", "use == to compare"),
        ("used_percent", "alone is not a condition"),
        ("(failed", "missing ')'"),
        ("failed and", "expected a status word or a metric name"),
        ("failed used_percent > 3", "join conditions with and / or"),
        ("used_percent > 5XB", "unknown unit 'XB'"),
        ("__import__('os').system('id')", "unexpected"),
        ("", "the condition is empty"),
        ("ok > 3", "is a status word"),
    ],
)
def test_bad_conditions_are_refused_with_a_pointer(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(text)
    assert message in str(caught.value)
    assert "^" in str(caught.value)


def test_names_lists_the_metrics_a_condition_reads() -> None:
    assert parse_condition("failed or (used_percent > 3 and path == '/')").names == {
        "used_percent",
        "path",
    }
