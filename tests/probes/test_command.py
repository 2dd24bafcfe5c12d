"""The command probe over SSH and locally: exit codes, expected output, regex metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.command import CommandConfig, CommandProbe
from tests.support.helpers import config_from
from tests.support.ssh_helpers import run_check, runner_for
from watcher.config.models import ConfigError


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


def test_regexes_turn_output_into_metrics(runner: CommandRunner) -> None:
    probe = CommandProbe(
        CommandConfig(
            run="echo 'users: 17'; echo 'queue=3.5'",
            metrics={"users": r"users: (\d+)", "queue": r"queue=([\d.]+)"},
        )
    )
    [result] = run_check(probe, runner)
    assert result.status == "ok"
    assert (
        result.metrics["users"] == 17
        and result.metrics["queue"] == 3.5
        and result.metrics["exit_code"] == 0
    )


def test_an_unexpected_exit_code_is_a_failure_with_the_output_as_evidence(
    runner: CommandRunner,
) -> None:
    [result] = run_check(
        CommandProbe(CommandConfig(run=["sh", "-c", "echo broken >&2; exit 4"])), runner
    )
    assert (result.status, result.reason, result.metrics["exit_code"]) == ("fail", "exit", 4)
    assert "broken" in result.message and "--- stderr ---" in result.evidence


def test_output_not_matching_expect_is_a_failure(runner: CommandRunner) -> None:
    [result] = run_check(
        CommandProbe(CommandConfig(run=["echo", "degraded"], expect="^healthy$")), runner
    )
    assert (result.status, result.reason) == ("fail", "content")


def test_an_argv_list_reaches_the_target_word_for_word(runner: CommandRunner) -> None:
    [result] = run_check(
        CommandProbe(CommandConfig(run=["printf", "%s\\n", "a b", "$(id)", "'"])), runner
    )
    assert result.status == "ok"
    assert result.evidence.split("\n")[2:5] == ["a b", "$(id)", "'"]


def test_rules_may_use_the_metrics_the_config_names(tmp_path: Path) -> None:
    base = """
        site: acme
        listen: null
        targets: [{name: box, probes: [{command: {run: "echo 5", metrics: {five: '(\\\\d+)'}}}]}]
        rules: [default, site.yml]
    """
    config_from(
        tmp_path,
        base,
        extra={"site.yml": "rules: [{name: r, probe: command, when: 'five > 4', priority: P3}]\n"},
    )
    with pytest.raises(ConfigError, match="'six' is not a metric that the command probe produces"):
        config_from(
            tmp_path,
            base,
            extra={
                "site.yml": "rules: [{name: r, probe: command, when: 'six > 4', priority: P3}]\n"
            },
        )
