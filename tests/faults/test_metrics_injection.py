"""What a target says cannot forge series on /metrics: item labels and probe metric names
come from the target (paths, perfdata labels) and are escaped or renamed, never obeyed."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from probes.base import Result
from tests.servers.prometheus import promtool_check_metrics
from watcher.web.metrics import Metrics, parse_shard

FORGED = 'watcher_check_success{target="bank",check="http"} 1'
HOSTILE_ITEM = f'/x"}} 0\n{FORGED}\n# TYPE up gauge\nup 1\n\\'
HOSTILE_METRICS = {
    f"a}} 1\n{FORGED}\n": 1.0,
    "check_success": 2.0,  # would be watcher_probe_check_success, never watcher_check_success
    "runs_total": 3.0,  # watcher's own counter is watcher_probe_runs_total
    "up": 4.0,
    "": 5.0,
}


class _Detail:
    class metrics:  # noqa: N801 - mirrors the config's key
        detail = True

    targets: list[object] = []


def _results() -> list[Result]:
    at = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)
    return [
        Result("evil", "disk", "disk", "ok", "m", {"used_percent": 1.0}, {"path": HOSTILE_ITEM},
               "", 0.1, at),
        Result("evil", "nagios", "nagios", "ok", "m", HOSTILE_METRICS, {}, "", 0.1, at),
    ]  # fmt: skip


def test_hostile_item_labels_and_metric_names_forge_no_series() -> None:
    metrics = Metrics()
    metrics.watch_results(_results, lambda: _Detail)  # type: ignore[arg-type,return-value]
    for shard in (None, parse_shard("1/1")):
        text = metrics.exposition(shard=shard).decode()
        ok, output = promtool_check_metrics(text)
        assert ok, output
        samples = [
            (s.name, s.labels)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
        assert all(labels.get("target") in (None, "evil") for _, labels in samples)
        assert not any(name == "up" for name, _ in samples)
        checks = [name for name, labels in samples if name == "watcher_check_success"]
        assert len(checks) == 2  # disk and nagios, nothing else
        items = {labels["item"] for _, labels in samples if "item" in labels}
        assert items == {HOSTILE_ITEM}  # the label comes back whole, as the target said it
        detail = {name for name, labels in samples if name.startswith("watcher_probe_")}
        assert "watcher_probe_runs_total" not in detail
        assert {
            "watcher_probe_check_success",
            "watcher_probe_runs_value",
            "watcher_probe_up",
        } <= detail
