"""The load probe, over SSH to a real sshd and on the watcher host."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from probes.base import CommandRunner
from probes.load import LoadConfig, LoadProbe, parse_load
from tests.support.ssh_helpers import run_check, runner_for


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


def test_it_reads_the_three_averages_and_divides_them_by_the_cores(runner: CommandRunner) -> None:
    [result] = run_check(LoadProbe(LoadConfig()), runner)
    assert result.status == "ok", result.message
    m = result.metrics
    assert m["cores"] == len(os.sched_getaffinity(0)) or m["cores"] == os.cpu_count()
    for span in ("1", "5", "15"):
        assert 0 <= m[f"load{span}"] < 10_000
        assert m[f"load{span}_per_core"] == pytest.approx(m[f"load{span}"] / m["cores"], abs=0.001)
    assert m["procs_total"] >= m["procs_running"] >= 1
    assert result.message.startswith("load ") and f"on {m['cores']:.0f} cores" in result.message


def test_a_configured_core_count_wins(runner: CommandRunner) -> None:
    [result] = run_check(LoadProbe(LoadConfig(cores=64)), runner)
    assert result.metrics["cores"] == 64
    assert result.metrics["load5_per_core"] == pytest.approx(
        result.metrics["load5"] / 64, abs=0.001
    )


def test_uptime_output_is_the_fallback_where_there_is_no_proc(runner: CommandRunner) -> None:
    real = runner.run("uptime; getconf _NPROCESSORS_ONLN", 10).stdout
    figures = parse_load(real)
    assert figures is not None and {"load1", "load5", "load15", "cores"} <= set(figures)
    bsd = parse_load("10:01  up 3 days,  2:03, 2 users, load averages: 1.52 1.20 0.98\n8\n")
    assert bsd == {"load1": 1.52, "load5": 1.2, "load15": 0.98, "cores": 8.0}


def test_output_without_load_averages_is_an_error_not_a_zero() -> None:
    assert parse_load("sh: 1: uptime: not found\n") is None
    assert parse_load("") is None
