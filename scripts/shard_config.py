#!/usr/bin/env python3
"""Splits one watcher.yml into N shard configs, one watcher each, for sites too big for one.

Every shard keeps the same ``site:`` (it is part of every incident fingerprint, so tickets
stay one per incident across shards) and everything else, and gets its own ``state:``
file, its own ``listen:`` port (the given one plus the shard's number) and its share of
``targets:``. Targets that reach each other through ``via:`` or ``depends_on:`` stay in
one shard; groups are dealt out largest first to the shard with the fewest checks so far.
Check-ins and audits stay in shard 1 only.

    scripts/shard_config.py watcher.yml --shards 4

writes watcher-shard-1.yml ... watcher-shard-4.yml beside watcher.yml (so relative paths
in it still work); check each with ``watcher validate -c FILE`` and run one
``watcher run -c FILE`` per shard. ``${ENV}`` references are kept as they are, comments
are not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["shard", "main"]


def _groups(targets: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Targets linked by via: or depends_on:, in config order within each group."""
    parent = {t["name"]: t["name"] for t in targets}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for t in targets:
        for other in [t.get("via"), *(t.get("depends_on") or [])]:
            if other in parent:
                parent[root(other)] = root(t["name"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        groups.setdefault(root(t["name"]), []).append(t)
    return list(groups.values())


def _checks(group: list[dict[str, Any]]) -> int:
    return sum(max(1, len(t.get("probes") or [])) for t in group)


def shard(config: dict[str, Any], shards: int) -> list[dict[str, Any]]:
    """The ``shards`` configs, as data."""
    if shards < 1:
        raise ValueError("--shards must be 1 or more")
    targets = list(config.get("targets") or [])
    if any(not isinstance(t, dict) or "name" not in t for t in targets):
        raise ValueError("every target needs a name: run watcher validate on the file first")
    owned: list[list[dict[str, Any]]] = [[] for _ in range(shards)]
    load = [0] * shards
    for group in sorted(_groups(targets), key=_checks, reverse=True):
        lightest = min(range(shards), key=lambda i: (load[i], i))
        owned[lightest].extend(group)
        load[lightest] += _checks(group)
    order = {t["name"]: i for i, t in enumerate(targets)}
    state = Path(str(config.get("state", "watcher.db")))
    listen = config.get("listen", "127.0.0.1:9177")
    out = []
    for number in range(1, shards + 1):
        part = dict(config)
        part["targets"] = sorted(owned[number - 1], key=lambda t: order[t["name"]])
        part["state"] = str(state.with_name(f"{state.stem}-shard-{number}{state.suffix}"))
        if listen:
            host, _, port = str(listen).rpartition(":")
            part["listen"] = f"{host}:{int(port) + number - 1}"
        if number > 1:
            part.pop("checkins", None)
            part.pop("audits", None)
        out.append(part)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path)
    parser.add_argument("--shards", type=int, required=True)
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    if not isinstance(config, dict):
        print(f"{args.config}: not a watcher config (a mapping of settings)", file=sys.stderr)
        return 2
    try:
        parts = shard(config, args.shards)
    except ValueError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    for number, part in enumerate(parts, 1):
        path = args.config.with_name(f"{args.config.stem}-shard-{number}.yml")
        path.write_text(yaml.safe_dump(part, sort_keys=False, allow_unicode=True))
        checks = sum(max(1, len(t.get("probes") or [])) for t in part["targets"])
        print(
            f"{path}: {len(part['targets'])} targets, {checks} checks, state {part['state']}, listen {part.get('listen')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
