"""``watcher cluster [--json]``: the members of the site's cluster, how many targets each
runs, the age of each lease, who leads, and whether the database answers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from watcher.cluster.partition import owner

__all__ = ["register", "cluster_status"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cluster", parents=[common], help="list the cluster's members and shares")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cluster)


def cluster_status(config: Any) -> dict[str, Any]:
    """What ``watcher cluster`` prints, as data."""
    from watcher.store import Store, redact
    from watcher.store.cluster import ClusterTables

    if not config.state_is_database:
        return {
            "clustered": False,
            "state": str(config.state_path),
            "reason": "a SQLite state is run by one watcher; a cluster needs state: postgresql://...",
        }
    lease = config.model.cluster.lease.total_seconds()
    out: dict[str, Any] = {
        "clustered": True,
        "state": redact(config.state_location),
        "lease_seconds": lease,
    }
    try:
        store = Store(config.state_location)
    except Exception as exc:  # the database is away: say so, do not crash
        out.update(database="unreachable", error=" ".join(str(exc).split()), nodes=[])
        return out
    try:
        members = ClusterTables(store).members(lease)
    finally:
        store.close()
    live = [m.name for m in members if m.live]
    shares: dict[str, int] = dict.fromkeys(live, 0)
    for target in config.model.targets:
        name = owner(target.name, live)
        if name is not None:
            shares[name] += 1
    out["database"] = "reachable"
    out["leader"] = live[0] if live else None
    out["nodes"] = [
        {
            "name": m.name,
            "live": m.live,
            "epoch": m.epoch,
            "lease_age_seconds": round(m.age, 1),
            "listen": m.listen,
            "targets": shares.get(m.name, 0),
        }
        for m in members
    ]
    return out


def cmd_cluster(args: argparse.Namespace) -> int:
    from watcher.config.load import load_config

    status = cluster_status(load_config(args.config))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0 if status.get("database", "reachable") == "reachable" else 1
    if not status["clustered"]:
        print(f"no cluster: {status['reason']} (state {status['state']})")
        return 0
    print(f"state {status['state']}: database {status['database']}")
    if status["database"] != "reachable":
        print(f"  {status['error']}")
        return 1
    print(f"lease {status['lease_seconds']:g}s, leader {status['leader'] or '-'}")
    print(f"{'NODE':<24} {'LIVE':<5} {'EPOCH':>6} {'LEASE AGE':>10} {'TARGETS':>8}  LISTEN")
    for n in status["nodes"]:
        print(
            f"{n['name']:<24} {'yes' if n['live'] else 'no':<5} {n['epoch']:>6}"
            f" {n['lease_age_seconds']:>9.1f}s {n['targets']:>8}  {n['listen'] or '-'}"
        )
    return 0
