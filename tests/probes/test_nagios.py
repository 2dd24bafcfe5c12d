"""Nagios plugins from Debian's monitoring-plugins, run over SSH and locally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.nagios import (
    NagiosConfig,
    NagiosProbe,
    metric_name,
    parse_perfdata,
    parse_plugin_output,
)
from tests.servers.base import require_binary
from tests.servers.disk import SmallFs
from tests.support.helpers import config_from
from tests.support.ssh_helpers import run_check, runner_for
from watcher.config.models import ConfigError

PLUGINS = Path("/usr/lib/nagios/plugins")


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    require_binary(str(PLUGINS / "check_load"))
    with runner_for(request.param, sshd_factory) as r:
        yield r


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [(0, "ok", ""), (1, "fail", "warning"), (2, "fail", "critical"), (3, "error", "unknown")],
)
def test_exit_codes_map_to_ok_warning_critical_and_could_not_tell(
    runner: CommandRunner, code: int, status: str, reason: str
) -> None:
    require_binary(str(PLUGINS / "check_dummy"))
    [result] = run_check(
        NagiosProbe(NagiosConfig(plugin="check_dummy", args=[str(code), "said so"])), runner
    )
    assert (result.status, result.reason, result.metrics["exit_code"]) == (status, reason, code)
    assert "said so" in result.message


def test_check_load_over_the_wire_gives_its_perfdata_as_metrics(runner: CommandRunner) -> None:
    probe = NagiosProbe(
        NagiosConfig(
            plugin="check_load", args=["-r", "-w", "1000,1000,1000", "-c", "2000,2000,2000"]
        )
    )
    [result] = run_check(probe, runner)
    assert result.status == "ok", result.message
    assert result.message.startswith("LOAD OK")
    assert {"load1", "load5", "load15", "scaled_load1", "scaled_load5", "scaled_load15"} <= set(
        result.metrics
    )
    assert "$ /usr/lib/nagios/plugins/check_load -r -w" in result.evidence


def test_check_disk_on_a_filesystem_filled_for_real(
    runner: CommandRunner, small_fs: SmallFs
) -> None:
    small_fs.fill_to(50)
    mount = str(small_fs.path)

    def check(warn: str, crit: str):  # type: ignore[no-untyped-def]
        [result] = run_check(
            NagiosProbe(
                NagiosConfig(plugin="check_disk", args=["-w", warn, "-c", crit, "-p", mount])
            ),
            runner,
        )
        return result

    ok, warning, critical = check("10%", "5%"), check("60%", "40%"), check("90%", "80%")
    assert (ok.status, warning.status, warning.reason, critical.status, critical.reason) == (
        "ok",
        "fail",
        "warning",
        "fail",
        "critical",
    )
    name = metric_name(mount)
    assert ok.metrics[f"{name}_max"] == pytest.approx(small_fs.total_bytes, rel=0.02)
    assert ok.metrics[name] == pytest.approx(small_fs.used_bytes(), rel=0.05)


def test_a_plugin_that_cannot_tell_is_an_error(runner: CommandRunner) -> None:
    [result] = run_check(
        NagiosProbe(NagiosConfig(plugin="check_load", args=["-w", "x", "-c", "y"])), runner
    )
    assert (result.status, result.reason) == ("error", "unknown")
    assert "Warning threshold must be float" in result.message


def test_a_mount_that_is_gone_is_critical_as_check_disk_says(runner: CommandRunner) -> None:
    [result] = run_check(
        NagiosProbe(
            NagiosConfig(
                plugin="check_disk", args=["-w", "10%", "-c", "5%", "-p", "/no/such/mount"]
            )
        ),
        runner,
    )
    assert (result.status, result.reason) == ("fail", "critical")
    assert "/no/such/mount is not accessible" in result.message


def test_a_missing_plugin_is_an_error_that_says_so(runner: CommandRunner) -> None:
    [result] = run_check(
        NagiosProbe(NagiosConfig(run="/usr/lib/nagios/plugins/check_nothing_here")), runner
    )
    assert result.status == "error"
    assert "not found" in result.message


def test_perfdata_follows_the_plugin_guidelines() -> None:
    text, long_text, metrics = parse_plugin_output(
        "DISK OK - free|/=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n"
        "| /boot=68MB;88;93;0;98\n'/home dir'=69357MB;253404;253409;0;253414 time=12ms;;;; 'it''s'=1c bad U=U\n"
    )
    assert text == "DISK OK - free"
    assert long_text == "/ 15272 MB (77%);\n/boot 68 MB (69%);"
    assert metrics["root"] == 2643 * 2**20 and metrics["root_max"] == 5968 * 2**20
    assert metrics["boot"] == 68 * 2**20
    assert metrics["home_dir"] == 69357 * 2**20
    assert metrics["time"] == pytest.approx(0.012)
    assert metrics["it_s"] == 1
    assert "bad" not in metrics and "u" not in metrics
    assert parse_perfdata("") == {}


def test_rules_on_declared_perfdata_are_checked_at_load(tmp_path: Path) -> None:
    base = """
        site: acme
        listen: null
        targets:
          - name: box
            probes:
              - nagios: {plugin: check_load, perfdata: [load1, load5, load15]}
        rules: [default, site.yml]
    """
    bad = {"site.yml": "rules: [{name: loady, probe: nagios, when: 'load7 > 1', priority: P3}]\n"}
    with pytest.raises(ConfigError, match="'load7' is not a metric that the nagios probe produces"):
        config_from(tmp_path, base, extra=bad)
    good = {
        "site.yml": "rules: [{name: loady, probe: nagios, when: 'load5 > 4 and exit_code == 0', priority: P3}]\n"
    }
    config_from(tmp_path, base, extra=good)
    # Without perfdata: names are unknowable, so rules are not refused for them.
    config_from(tmp_path, base.replace(", perfdata: [load1, load5, load15]", ""), extra=bad)


def test_the_config_takes_a_plugin_or_a_command_line() -> None:
    assert NagiosConfig(plugin="check_load", args=["-w", "1"]).command() == [
        "/usr/lib/nagios/plugins/check_load",
        "-w",
        "1",
    ]
    assert NagiosConfig(plugin="/opt/plugins/check_x").command() == ["/opt/plugins/check_x"]
    assert NagiosConfig(run="check_x -w 1").command() == "check_x -w 1"
    for bad in (
        {},
        {"plugin": "a", "run": "b"},
        {"run": "b", "args": ["-w"]},
        {"plugin": "a", "perfdata": ["Load 1"]},
    ):
        with pytest.raises(ValueError):
            NagiosConfig(**bad)
