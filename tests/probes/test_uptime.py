"""The uptime probe reads /proc/uptime over SSH and locally and says it as a person would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.uptime import UptimeConfig, UptimeProbe, human_uptime
from tests.support.ssh_helpers import run_check, runner_for


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


def test_it_says_how_long_the_machine_is_up_with_the_seconds_as_a_metric(
    runner: CommandRunner,
) -> None:
    [result] = run_check(UptimeProbe(UptimeConfig()), runner)
    assert result.status == "ok", result.message
    up = float(Path("/proc/uptime").read_text().split()[0])  # the target is this machine
    assert abs(result.metrics["uptime_s"] - up) < 600
    assert result.message.startswith("up ") and "." not in result.message


def test_the_message_names_the_two_largest_units() -> None:
    assert human_uptime(3 * 86400 + 4 * 3600 + 59) == "up 3 days 4 h"
    assert human_uptime(86400 + 120) == "up 1 day 0 h"
    assert human_uptime(2 * 3600 + 5 * 60 + 7.9) == "up 2 h 5 min"
    assert human_uptime(125) == "up 2 min"
    assert human_uptime(42.7) == "up 42 s"
