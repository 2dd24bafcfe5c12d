"""The du audit probe: the largest directories under a path, and the files under a path
not modified for a while, over SSH and locally."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.du import DuConfig, DuProbe, OldFile, listed_old_files, old_files_of
from tests.servers.base import make_workdir
from tests.support.ssh_helpers import run_check, runner_for
from watcher.transports.local import LocalRunner


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


@pytest.fixture
def tree() -> Path:
    """big/ 3 MiB, medium/ 1 MiB, small/ 64 KiB of real (non-sparse) data."""
    root = make_workdir("du")
    for name, size in (("big", 3 << 20), ("medium", 1 << 20), ("small", 64 << 10)):
        (root / name).mkdir()
        (root / name / "data").write_bytes(os.urandom(size))
        os.chmod(root / name, 0o755)
    return root


def test_the_largest_directories_come_first_with_their_share(
    runner: CommandRunner, tree: Path
) -> None:
    results = run_check(DuProbe(DuConfig(paths=[str(tree)], top=2)), runner)
    summary, *dirs = results
    assert summary.labels == {"path": str(tree)} and summary.status == "ok"
    assert summary.metrics["total_bytes"] >= (4 << 20)
    assert summary.metrics["unreadable"] == 0
    assert [r.labels["dir"] for r in dirs] == [str(tree / "big"), str(tree / "medium")]
    assert dirs[0].metrics["size_bytes"] == pytest.approx(3 << 20, rel=0.05)
    assert dirs[0].metrics["share_percent"] == pytest.approx(
        100 * dirs[0].metrics["size_bytes"] / summary.metrics["total_bytes"], abs=0.01
    )
    assert (
        "big" in summary.evidence
        and "medium" in summary.evidence
        and "small" not in summary.evidence
    )


def test_directories_the_login_cannot_read_are_counted_not_hidden(sshd_factory, tree: Path) -> None:  # type: ignore[no-untyped-def]
    (tree / "secret").mkdir(mode=0o700)
    (tree / "secret" / "data").write_bytes(b"x" * 4096)
    with runner_for("ssh", sshd_factory) as runner:  # logs in as an unprivileged user
        summary, *_ = run_check(DuProbe(DuConfig(paths=[str(tree)])), runner)
    assert summary.status == "ok"
    assert summary.metrics["unreadable"] == 1
    assert "1 unreadable, not counted" in summary.message


def test_a_missing_path_is_an_error_for_that_path_alone(runner: CommandRunner, tree: Path) -> None:
    results = run_check(DuProbe(DuConfig(paths=["/no/such/dir", str(tree)], top=1)), runner)
    assert [(r.labels.get("path"), r.labels.get("dir"), r.status) for r in results] == [
        ("/no/such/dir", None, "error"),
        (str(tree), None, "ok"),
        (str(tree), str(tree / "big"), "ok"),
    ]


def test_it_runs_daily_with_a_long_timeout_unless_told_otherwise() -> None:
    cfg = DuConfig(paths=["/var"])
    assert cfg.interval is not None and cfg.interval.total_seconds() == 86400
    assert cfg.timeout is not None and cfg.timeout.total_seconds() == 300
    assert DuConfig(paths=["/var"], timeout="30s").timeout.total_seconds() == 30  # type: ignore[union-attr,arg-type]
    with pytest.raises(ValueError, match="absolute path"):
        DuConfig(paths=["var"])


# ------------------------------------------------------------------------ old files

DAY = 86400


def _aged(path: Path, size: int, days: float) -> Path:
    """A file of ``size`` bytes last modified ``days`` ago."""
    path.write_bytes(b"x" * size)
    path.chmod(0o644)
    moment = time.time() - days * DAY
    os.utime(path, (moment, moment))
    return path


@pytest.fixture
def logs() -> Path:
    """Five logs untouched for 40 to 400 days (one in a subdirectory) and two fresh ones."""
    root = make_workdir("old-files")
    (root / "nginx").mkdir(mode=0o755)
    _aged(root / "syslog.4", 50_000, 40.5)
    _aged(root / "syslog.5", 40_000, 70.5)
    _aged(root / "nginx" / "access.log.9", 30_000, 400.5)
    _aged(root / "auth.log.3", 20_000, 31.5)
    _aged(root / "kern.log.2", 10_000, 35.5)
    _aged(root / "syslog", 90_000, 0.1)
    _aged(root / "nginx" / "access.log", 80_000, 29.5)
    return root


def _old(du: Path | str = "/var", **settings: object) -> DuConfig:
    """A du probe measuring ``du`` (kept small in tests that run) and scanning for old files."""
    return DuConfig(paths=[str(du)], top=1, old_files=settings)  # type: ignore[arg-type]


def _old_results(probe: DuProbe, runner: CommandRunner) -> list:  # type: ignore[type-arg]
    """The old-files scans, one per path (not their per-file results)."""
    return [
        r for r in run_check(probe, runner) if "older_than" in r.labels and "file" not in r.labels
    ]


def test_the_largest_old_files_are_results_with_their_bytes_and_age(
    runner: CommandRunner, logs: Path
) -> None:
    results = run_check(DuProbe(_old(logs, paths=[str(logs)], older_than="30d", top=2)), runner)
    [old] = [r for r in results if "older_than" in r.labels and "file" not in r.labels]
    files = [r for r in results if "file" in r.labels]
    assert [(r.labels, r.metrics) for r in files] == [
        (
            {"path": str(logs), "older_than": "30d", "file": str(logs / "syslog.4")},
            {"file_bytes": 50_000.0, "age_days": 40.0},
        ),
        (
            {"path": str(logs), "older_than": "30d", "file": str(logs / "syslog.5")},
            {"file_bytes": 40_000.0, "age_days": 70.0},
        ),
    ]
    assert old_files_of(old, results) == listed_old_files(old.evidence)


def test_old_files_are_counted_and_summed_in_one_result_with_the_largest_listed(
    runner: CommandRunner, logs: Path
) -> None:
    [old] = _old_results(DuProbe(_old(logs, paths=[str(logs)], older_than="30d", top=3)), runner)
    assert old.status == "ok" and old.labels == {"path": str(logs), "older_than": "30d"}
    assert old.metrics == {"old_files": 5.0, "old_bytes": 150_000.0, "unreadable": 0.0}
    assert old.message == f"{logs}: 5 files not modified for over 30d, 0.1 MiB"
    assert listed_old_files(old.evidence) == [
        OldFile(50_000, 40, str(logs / "syslog.4")),
        OldFile(40_000, 70, str(logs / "syslog.5")),
        OldFile(30_000, 400, str(logs / "nginx" / "access.log.9")),
    ]
    assert old.evidence.startswith(f"5 files under {logs} not modified for over 30d: 150000 bytes")


def test_the_age_is_a_setting_and_each_path_gets_its_own_result(
    runner: CommandRunner, logs: Path, tree: Path
) -> None:
    results = _old_results(
        DuProbe(_old(logs, paths=[str(logs), str(tree)], older_than="60d")), runner
    )
    assert [
        (r.labels["path"], r.labels["older_than"], r.metrics["old_files"]) for r in results
    ] == [
        (str(logs), "60d", 2.0),
        (str(tree), "60d", 0.0),
    ]
    assert listed_old_files(results[1].evidence) == []


def test_a_name_with_spaces_a_newline_and_markup_stays_one_listed_file(
    runner: CommandRunner, logs: Path
) -> None:
    name = "old report\n<script>alert('x')<b>.log"
    _aged(logs / name, 900_000, 45.5)
    [old] = _old_results(DuProbe(_old(logs, paths=[str(logs)], top=1)), runner)
    assert old.metrics["old_files"] == 6 and old.metrics["old_bytes"] == 1_050_000
    shown = str(logs / "old report?<script>alert('x')<b>.log")
    assert listed_old_files(old.evidence) == [OldFile(900_000, 45, shown)]


def test_directories_the_login_cannot_read_are_counted_not_fatal(sshd_factory, logs: Path) -> None:  # type: ignore[no-untyped-def]
    secret = logs / "secret"
    secret.mkdir(mode=0o700)
    _aged(secret / "hidden.log", 5_000, 90.5)
    with runner_for("ssh", sshd_factory) as runner:  # logs in as an unprivileged user
        [old] = _old_results(DuProbe(_old(logs, paths=[str(logs)])), runner)
    assert old.status == "ok" and old.metrics["unreadable"] == 1
    assert old.metrics["old_files"] == 5 and "1 unreadable, not counted" in old.message
    assert "Permission denied" in old.evidence


def test_a_missing_old_files_path_is_an_error_for_that_path_alone(
    runner: CommandRunner, logs: Path
) -> None:
    results = _old_results(DuProbe(_old(logs, paths=["/no/such/dir", str(logs)])), runner)
    assert [(r.labels["path"], r.status) for r in results] == [
        ("/no/such/dir", "error"),
        (str(logs), "ok"),
    ]
    assert (
        results[0].message
        == "cannot list old files in /no/such/dir: no such directory: /no/such/dir"
    )


def test_a_find_without_printf_gives_a_clear_error_not_a_crash(logs: Path) -> None:
    """BusyBox find, say: no -printf, so nothing can be listed."""
    bin_dir = make_workdir("busybox-find")
    fake = bin_dir / "find"
    fake.write_text(
        '#!/bin/sh\nfor a; do [ "$a" = -printf ] && { echo "find: unrecognized: -printf" >&2; exit 1; }; done\n'
        'exec /usr/bin/find "$@"\n'
    )
    fake.chmod(0o755)
    runner = LocalRunner(env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    [old] = _old_results(DuProbe(_old(logs, paths=[str(logs)])), runner)
    assert old.status == "error" and old.metrics == {}
    assert old.message == (
        f"cannot list old files in {logs}: find has no -printf here: old files need GNU find"
    )


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"paths": ["var/log"]}, "'var/log' must be an absolute path"),
        ({"paths": []}, "list the directories, e.g. paths: [/var/log]"),
        ({"paths": ["/var/log"], "older_than": "12h"}, "older_than is 12h: give a day or more"),
        ({"paths": ["/var/log"], "older_than": "a month"}, "'a month' is not a duration"),
        ({"paths": ["/var/log"], "top": 0}, "greater than or equal to 1"),
        ({"paths": ["/var/log"], "age": "30d"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_old_files_settings_are_refused(settings: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        _old(**settings)


def test_old_files_default_to_a_month_and_the_ten_largest() -> None:
    old = _old(paths=["/var/log"]).old_files
    assert old is not None and old.older_than.days == 30 and old.top == 10
    assert _old(paths=["/var/log"], older_than="1w").old_files.older_than.days == 7  # type: ignore[union-attr]
    assert DuConfig(paths=["/var"]).old_files is None
