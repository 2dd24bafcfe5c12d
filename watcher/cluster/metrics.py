"""The cluster's gauges on /metrics: members, leadership, this member's share, the lease,
whether the database answers, renewals and share changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["ClusterCollector"]


class ClusterCollector(Collector):
    def __init__(self, node: Any, targets: Callable[[], list[str]]) -> None:
        self.node = node
        self.targets = targets  # the config's target names

    def collect(self) -> Iterator[Any]:
        node = self.node
        yield _gauge(
            "watcher_cluster_members",
            "Members of the cluster, as this one last read.",
            len(node.members),
        )
        yield _gauge(
            "watcher_cluster_leader", "1 if this member leads the cluster.", int(node.is_leader)
        )
        held = sum(1 for t in self.targets() if node.owns(t))
        node.holding = held
        yield _gauge("watcher_cluster_targets_held", "Targets whose checks this member runs.", held)
        yield _gauge(
            "watcher_cluster_lease_held", "1 while this member holds its lease.", int(node.holds())
        )
        yield _gauge("watcher_cluster_lease_seconds", "The cluster's lease.", node.seconds)
        yield _gauge(
            "watcher_cluster_database_up",
            "1 if the last renewal reached the database.",
            int(node.connected),
        )
        renewals = CounterMetricFamily("watcher_cluster_renewals", "Lease renewals by this member.")
        renewals.add_metric([], node.renewals)
        yield renewals
        changes = CounterMetricFamily(
            "watcher_cluster_share_changes", "Times this member's share was recomputed."
        )
        changes.add_metric([], node.changes)
        yield changes


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family
