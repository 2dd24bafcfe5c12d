"""The du audit probe: the largest directories under a path, over SSH and locally."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.du import DuConfig, DuProbe
from tests.servers.base import make_workdir
from tests.ssh_helpers import run_check, runner_for


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
