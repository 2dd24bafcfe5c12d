"""The service probe: processes by name or pattern, and systemd units, over SSH and locally."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.service import ServiceConfig, ServiceProbe
from tests.servers.base import make_workdir, wait_until
from tests.support.ssh_helpers import run_check, runner_for


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


@pytest.fixture
def daemon() -> Iterator[Path]:
    """A real long-running process with a long, distinctive name (a copy of sleep)."""
    path = make_workdir("svc") / "watcher-test-daemon-7"
    shutil.copy("/bin/sleep", path)
    procs = [subprocess.Popen([str(path), "3000.25"]) for _ in range(2)]
    wait_until(
        lambda: (
            subprocess.run(["pgrep", "-f", "3000.25"], capture_output=True).stdout.count(b"\n") == 2
        ),
        10,
        "the test daemons to start",
    )
    yield path
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_running_process_is_found_by_its_name_even_past_15_characters(
    runner: CommandRunner, daemon: Path
) -> None:
    [result] = run_check(ServiceProbe(ServiceConfig(process=daemon.name, min_count=2)), runner)
    assert (result.status, result.labels) == ("ok", {"service": daemon.name})
    assert result.metrics == {"processes": 2.0, "active": 1.0}


def test_too_few_processes_is_a_failure(runner: CommandRunner, daemon: Path) -> None:
    [result] = run_check(ServiceProbe(ServiceConfig(process=daemon.name, min_count=3)), runner)
    assert (result.status, result.reason) == ("fail", "not_running")
    assert "2 watcher-test-daemon-7 processes running, expected at least 3" in result.message


def test_each_listed_process_gets_its_own_result(runner: CommandRunner, daemon: Path) -> None:
    results = run_check(
        ServiceProbe(ServiceConfig(process=[daemon.name, "no-such-daemon"])), runner
    )
    assert [(r.labels["service"], r.status, r.metrics["processes"]) for r in results] == [
        (daemon.name, "ok", 2.0),
        ("no-such-daemon", "fail", 0.0),
    ]


def test_a_pattern_matches_whole_command_lines(runner: CommandRunner, daemon: Path) -> None:
    [result] = run_check(ServiceProbe(ServiceConfig(pattern=f"{daemon.name} 3000[.]25")), runner)
    assert result.status == "ok" and result.metrics["processes"] == 2.0
    [result] = run_check(ServiceProbe(ServiceConfig(pattern="^no such command line$")), runner)
    assert result.status == "fail" and result.metrics["processes"] == 0.0


def test_a_unit_is_judged_by_systemd_or_the_probe_says_it_cannot_tell(
    runner: CommandRunner,
) -> None:
    results = run_check(ServiceProbe(ServiceConfig(unit=["watcher-no-such-unit.service"])), runner)
    [result] = results
    assert result.labels == {"service": "watcher-no-such-unit.service"}
    if Path(
        "/run/systemd/system"
    ).is_dir():  # systemd runs here: a unit that does not exist is inactive
        assert (result.status, result.reason) == ("fail", "inactive")
    else:  # a container without systemd: systemctl answers, but cannot say
        assert result.status == "error"
        assert "could not tell" in result.message


@pytest.mark.parametrize(
    "options",
    [{}, {"unit": "a", "process": "b"}, {"process": "-x"}, {"unit": [""]}],
)
def test_the_config_names_exactly_one_kind_of_service(options: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match="exactly one of|is not a unit or process name"):
        ServiceConfig(**options)
