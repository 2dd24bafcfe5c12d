"""The disk probe over SSH and locally, on a real tmpfs the test fills."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.disk import DiskConfig, DiskProbe
from tests.servers.disk import SmallFs
from tests.support.helpers import config_from
from tests.support.ssh_helpers import run_check, runner_for


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


def test_a_filesystem_filled_to_96_percent_reads_as_such_and_trips_the_critical_rule(
    runner: CommandRunner, small_fs: SmallFs, tmp_path: Path
) -> None:
    mount = str(small_fs.path)
    small_fs.fill_to(40)
    [low] = run_check(DiskProbe(DiskConfig(paths=[mount])), runner)
    small_fs.fill_to(96)
    [high] = run_check(DiskProbe(DiskConfig(paths=[mount])), runner)
    for result in (low, high):
        assert result.status == "ok" and result.labels == {"path": mount}
        assert result.metrics["size_bytes"] == small_fs.total_bytes
    assert high.metrics["used_percent"] == pytest.approx(small_fs.used_percent(), abs=1.0)
    assert low.metrics["used_percent"] == pytest.approx(40, abs=1.5)
    assert high.metrics["used_percent"] == pytest.approx(96, abs=1.5)
    assert high.metrics["free_bytes"] < 0.05 * small_fs.total_bytes
    assert 0 <= high.metrics["inodes_used_percent"] < 100
    # The shipped rules see the same figures: critical at 96%, only "high" at 40% is not.
    config = config_from(
        tmp_path, "site: acme\nlisten: null\ntargets: [{name: t, probes: [{disk: {paths: [/]}}]}]\n"
    )
    held = {e.rule.name for e in config.rules.evaluate(high, {}, None) if e.value is True}
    assert {"disk-critical", "disk-high"} <= held
    assert not {e.rule.name for e in config.rules.evaluate(low, {}, None) if e.value is True} & {
        "disk-critical",
        "disk-high",
    }


def test_one_result_per_path_even_when_a_path_is_missing(
    runner: CommandRunner, small_fs: SmallFs
) -> None:
    mount = str(small_fs.path)
    sub = small_fs.path / "sub dir"
    sub.mkdir()
    results = run_check(DiskProbe(DiskConfig(paths=["/no/such/path", str(sub), mount])), runner)
    assert [(r.labels["path"], r.status) for r in results] == [
        ("/no/such/path", "error"),
        (str(sub), "ok"),
        (mount, "ok"),
    ]
    assert "No such file or directory" in results[0].message
    assert f"(on {mount})" in results[1].message


def test_without_paths_every_real_mount_is_checked(runner: CommandRunner) -> None:
    results = run_check(DiskProbe(DiskConfig()), runner)
    paths = {r.labels.get("path") for r in results}
    assert "/" in paths
    assert all(r.status == "ok" for r in results)
