"""The memory probe reads /proc/meminfo over SSH and locally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import CommandRunner
from probes.memory import MemoryConfig, MemoryProbe, memory_figures, parse_meminfo
from tests.support.ssh_helpers import run_check, runner_for


@pytest.fixture(params=["ssh", "local"])
def runner(request: pytest.FixtureRequest, sshd_factory) -> Iterator[CommandRunner]:  # type: ignore[no-untyped-def]
    with runner_for(request.param, sshd_factory) as r:
        yield r


def test_it_reports_memory_and_swap_in_use(runner: CommandRunner) -> None:
    [result] = run_check(MemoryProbe(MemoryConfig()), runner)
    assert result.status == "ok", result.message
    m = result.metrics
    info = parse_meminfo(Path("/proc/meminfo").read_text())  # the target is this machine
    assert m["total_bytes"] == info["MemTotal"]
    assert 0 < m["used_percent"] < 100
    assert m["used_bytes"] + m["available_bytes"] == m["total_bytes"]
    assert m["swap_total_bytes"] == info.get("SwapTotal", 0)
    assert 0 <= m["swap_used_percent"] <= 100
    assert "MemAvailable:" in result.evidence


def test_kernels_without_memavailable_count_cache_as_available() -> None:
    old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 350 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"
    figures = memory_figures(parse_meminfo(old))
    assert figures is not None
    assert figures["used_percent"] == 50.0
    assert figures["swap_used_percent"] == 0.0


def test_text_without_memtotal_gives_no_figures() -> None:
    assert memory_figures(parse_meminfo("cat: /proc/meminfo: No such file or directory\n")) is None
